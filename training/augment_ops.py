"""Batch implementations of common albumentations ops, on float NCHW tensors in [0, 1], per-sample random.

Each follows the formula of the albumentations op it is named after (2.x): same parameters, same meaning.

No op makes the host wait for the GPU: every one only enqueues kernels. Random parameters are drawn on the
device, except the coin flips of the ops that work on a subset of the batch (flips, affine), which are drawn on
the host so that their indices are known without a device-to-host read; small constants are made once per
device and dtype (a tensor made from Python data each batch is a blocking copy). Either would stall the host
until the GPU had drained its queue, every batch (tests/training/test_no_host_sync.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["TENSOR_OPS", "apply_plan", "supports", "normalize_stats"]


class _Ops:
    def __init__(self) -> None:
        self._ops: dict[str, Callable] = {}

    def register(self, *names: str):
        def deco(fn):
            for n in names:
                if n in self._ops:
                    raise ValueError(f"tensor op '{n}' registered twice")
                self._ops[n] = fn
            return fn
        return deco

    def get_or_none(self, name: str) -> Callable | None:
        return self._ops.get(name)

    def names(self) -> list[str]:
        return sorted(self._ops)


TENSOR_OPS = _Ops()


def supports(name: str, args: dict) -> bool:
    """Arguments the tensor versions do not implement send the pipeline to the CPU path."""
    if name in ("Affine", "ShiftScaleRotate"):
        if args.get("border_mode", 0) != 0 or _nonzero(args.get("fill", 0)):
            return False
        if name == "Affine" and (_nonzero(args.get("shear")) or _nonzero(args.get("translate_px"))
                                 or args.get("fit_output") or args.get("balanced_scale")):
            return False
    if name == "CoarseDropout" and isinstance(args.get("fill", 0), str):
        return False
    if name == "RandomBrightnessContrast" and args.get("ensure_safe_range"):
        return False
    if name == "Normalize" and args.get("normalization", "standard") != "standard":
        return False
    return True


def _nonzero(v) -> bool:
    if v is None:
        return False
    if isinstance(v, dict):
        return any(_nonzero(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_nonzero(x) for x in v)
    return float(v) != 0.0


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _const(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """A small constant on ``like``'s device and dtype, shaped (1, C, 1, 1), made once."""
    key = (tuple(float(v) for v in values), like.device, like.dtype)
    if (t := _CONSTANTS.get(key)) is None:
        t = _CONSTANTS[key] = torch.tensor(key[0], device=like.device, dtype=like.dtype)[None, :, None, None]
    return t


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(n,) float32 parameters as (n, 1, 1, 1) in the batch's dtype (fp16 on CUDA: no promotion to fp32)."""
    return v.to(like.dtype)[:, None, None, None]


def _host_hit(n: int, p: float) -> torch.Tensor:
    return torch.rand(n) < p


def _host_index(hit: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The indices of a host mask, page-locked when they go to a GPU (a copy from pageable memory blocks)."""
    idx = hit.nonzero().squeeze(1)
    return idx.pin_memory() if like.device.type == "cuda" else idx


def _device_index(hit: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The indices of a host mask on the batch's device, copied asynchronously."""
    return _host_index(hit, like).to(like.device, non_blocking=True)


def _on_subset(x: torch.Tensor, hit: torch.Tensor,
               fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """x with ``fn(x[idx], idx)`` written back at the hit indices (in place), or fn on the whole batch."""
    k = int(hit.sum())  # a host tensor: no device read
    if k == 0:
        return x
    if k == len(x):
        return fn(x, None)
    idx = _device_index(hit, x)
    return x.index_copy_(0, idx, fn(x.index_select(0, idx), idx))


def _u(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, device=like.device, dtype=torch.float32) * (hi - lo) + lo


def _hit(n: int, p: float, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, device=like.device) < p


def apply_plan(x: torch.Tensor, plan: list[tuple[str, dict]]) -> tuple[torch.Tensor, bool]:
    """Run the plan; returns (x, normalized) where normalized tells whether a Normalize op ran. ``x`` is the
    batch's own buffer: ops may write into it."""
    normalized = False
    for name, args in plan:
        x = TENSOR_OPS.get_or_none(name)(x, args)
        normalized |= name == "Normalize"
    return x, normalized


@TENSOR_OPS.register("HorizontalFlip")
def _hflip(x: torch.Tensor, a: dict) -> torch.Tensor:
    return _on_subset(x, _host_hit(len(x), a.get("p", 0.5)), lambda sub, _: sub.flip(3))


@TENSOR_OPS.register("VerticalFlip")
def _vflip(x: torch.Tensor, a: dict) -> torch.Tensor:
    return _on_subset(x, _host_hit(len(x), a.get("p", 0.5)), lambda sub, _: sub.flip(2))


@TENSOR_OPS.register("RandomBrightnessContrast")
def _brightness_contrast(x: torch.Tensor, a: dict) -> torch.Tensor:
    n = len(x)
    bl, cl = a.get("brightness_limit", (-0.2, 0.2)), a.get("contrast_limit", (-0.2, 0.2))
    alpha = 1.0 + _u(n, cl[0], cl[1], x)
    beta = _u(n, bl[0], bl[1], x)
    if not a.get("brightness_by_max", True):
        beta = beta * x.mean(dim=(1, 2, 3))
    m = _hit(n, a.get("p", 0.5), x)
    alpha, beta = torch.where(m, alpha, 1.0), torch.where(m, beta, 0.0)
    return torch.addcmul(_per_sample(beta, x), x, _per_sample(alpha, x)).clamp_(0, 1)


@TENSOR_OPS.register("GaussNoise")
def _gauss_noise(x: torch.Tensor, a: dict) -> torch.Tensor:
    n = len(x)
    sr, mr = a.get("std_range", (0.2, 0.44)), a.get("mean_range", (0.0, 0.0))
    std, mean = _u(n, sr[0], sr[1], x), _u(n, mr[0], mr[1], x)
    shape = x.shape if a.get("per_channel", True) else (n, 1, *x.shape[2:])
    noise = torch.randn(shape, device=x.device, dtype=x.dtype) * _per_sample(std, x) + _per_sample(mean, x)
    m = _hit(n, a.get("p", 0.5), x)[:, None, None, None]
    return torch.where(m, (x + noise).clamp(0, 1), x)


@TENSOR_OPS.register("CoarseDropout")
def _coarse_dropout(x: torch.Tensor, a: dict) -> torch.Tensor:
    n, _, h, w = x.shape
    lo, hi = a.get("num_holes_range", (1, 2))
    holes = torch.randint(int(lo), int(hi) + 1, (n,), device=x.device)
    hh, hw = a.get("hole_height_range", (0.1, 0.2)), a.get("hole_width_range", (0.1, 0.2))
    fill = float(a.get("fill", 0) if not isinstance(a.get("fill", 0), (list, tuple)) else a["fill"][0]) / 255.0
    hit = _hit(n, a.get("p", 0.5), x)
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    mask = torch.zeros(n, h, w, dtype=torch.bool, device=x.device)
    for k in range(int(hi)):
        size_h = _side(hh, h, n, x)
        size_w = _side(hw, w, n, x)
        y0 = (torch.rand(n, device=x.device) * (h - size_h + 1)).long()
        x0 = (torch.rand(n, device=x.device) * (w - size_w + 1)).long()
        inside = ((ys[None] >= y0[:, None]) & (ys[None] < (y0 + size_h)[:, None]))[:, :, None] & \
                 ((xs[None] >= x0[:, None]) & (xs[None] < (x0 + size_w)[:, None]))[:, None, :]
        mask |= inside & ((k < holes) & hit)[:, None, None]
    return x.masked_fill(mask[:, None], fill)


def _side(rng, full: int, n: int, like: torch.Tensor) -> torch.Tensor:
    lo, hi = rng
    if isinstance(lo, float) or isinstance(hi, float):  # fractions of the side, as albumentations
        return (_u(n, float(lo), float(hi), like) * full).long().clamp(1, full)
    return torch.randint(int(lo), int(hi) + 1, (n,), device=like.device).clamp(1, full)


def _range(v, default: tuple[float, float]) -> tuple[float, float]:
    if v is None:
        return default
    if isinstance(v, dict):
        v = v.get("x", default)
    if isinstance(v, (int, float)):
        return (-abs(v), abs(v))
    return (float(v[0]), float(v[1]))


def _scale_range(v, axis: str) -> tuple[float, float]:
    """Affine's ``scale`` for one axis: a number, a range, or {"x": ..., "y": ...} (as A.to_dict writes it)."""
    if isinstance(v, dict):
        v = v.get(axis, 1.0)
    if v is None:
        return (1.0, 1.0)
    if isinstance(v, (int, float)):
        return (float(v), float(v))
    return (float(v[0]), float(v[1]))


@TENSOR_OPS.register("Affine", "ShiftScaleRotate")
def _affine(x: torch.Tensor, a: dict) -> torch.Tensor:
    n, _, h, w = x.shape
    # albumentations draws the x and y scales independently (Affine's keep_ratio=False, always so for
    # ShiftScaleRotate) from the same range unless keep_ratio ties them
    if "scale_limit" in a:  # ShiftScaleRotate: scale = 1 + U(scale_limit), shift as a fraction of the side
        s_lo, s_hi = _range(a.get("scale_limit"), (-0.1, 0.1))
        sx, sy = 1.0 + _u(n, s_lo, s_hi, x), 1.0 + _u(n, s_lo, s_hi, x)
        t = _range(a.get("shift_limit_x") or a.get("shift_limit"), (-0.0625, 0.0625))
        ty_r = _range(a.get("shift_limit_y") or a.get("shift_limit"), (-0.0625, 0.0625))
        rot = _range(a.get("rotate_limit"), (-45, 45))
    else:
        sx = _u(n, *_scale_range(a.get("scale"), "x"), x)
        sy = sx if a.get("keep_ratio") else _u(n, *_scale_range(a.get("scale"), "y"), x)
        tp = a.get("translate_percent") or {"x": (0, 0), "y": (0, 0)}
        t = _range(tp.get("x") if isinstance(tp, dict) else tp, (0.0, 0.0))
        ty_r = _range(tp.get("y") if isinstance(tp, dict) else tp, (0.0, 0.0))
        rot = _range(a.get("rotate"), (0.0, 0.0))
    # albumentations shifts by whole pixels, int(fraction x side) (truncated toward zero)
    tx, ty = torch.trunc(_u(n, *t, x) * w) / w, torch.trunc(_u(n, *ty_r, x) * h) / h
    ang = _u(n, *rot, x) * (math.pi / 180)
    hit = _host_hit(n, a.get("p", 0.5))  # warp only the images the op hits: half the work at p=0.5
    # output pixel -> input pixel (the inverse map): in pixels about the centre, p_in = S^-1 R^-1 (p_out - t)
    # with albumentations' R and S = diag(sx, sy); shift t is a fraction of each side (tx x W, ty x H). The
    # grid's normalized [-1, 1] coordinates scale x by 2/W and y by 2/H, so on a non-square image the
    # off-diagonal terms carry the aspect ratio (without it a rotation would also shear)
    cos, sin, aspect = torch.cos(ang), torch.sin(ang), h / w
    theta = torch.stack([torch.stack([cos / sx, -sin / sx * aspect, -2 * tx], 1),
                         torch.stack([sin / sy / aspect, cos / sy, -2 * ty], 1)], 1)
    theta[:, :, 2] = torch.einsum("nij,nj->ni", theta[:, :, :2], theta[:, :, 2])

    def warp(sub: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        th = theta if idx is None else theta.index_select(0, idx)
        # in fp32 even for fp16 batches: an fp16 grid puts the warp's samples many uint8 levels off (worst at
        # the zero border), an fp32 one keeps the fp16 result within a fraction of a level
        # (benchmarks/ablation.py measures both; benchmarks/RESULTS.md has the figures)
        grid = F.affine_grid(th, list(sub.shape), align_corners=False)
        out = F.grid_sample(sub.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.to(sub.dtype)

    return _on_subset(x, hit, warp)


def normalize_stats(a: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """An albumentations Normalize's (mean, std) for pixels in [0, 1]: it computes (x * 255 / mpv - mean) / std,
    which is (x - mean * mpv / 255) / (std * mpv / 255). Scalar mean/std apply to every channel."""
    k = float(a.get("max_pixel_value", 255.0)) / 255.0
    mean, std = ((v,) * 3 if isinstance(v, (int, float)) else tuple(v)
                 for v in (a.get("mean", (0.485, 0.456, 0.406)), a.get("std", (0.229, 0.224, 0.225))))
    return tuple(float(m) * k for m in mean), tuple(float(d) * k for d in std)


@TENSOR_OPS.register("Normalize")
def _normalize(x: torch.Tensor, a: dict) -> torch.Tensor:
    mean, std = normalize_stats(a)
    shift = _const(tuple(-m / d for m, d in zip(mean, std)), x)
    out = torch.addcmul(shift, x, _const(tuple(1.0 / d for d in std), x))  # (x - mean) / std in one pass
    p = a.get("p", 1.0)
    return out if p >= 1.0 else torch.where(_hit(len(x), p, x)[:, None, None, None], out, x)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h in [0, 1) (fraction of a turn), s, v in [0, 1]; the formulas OpenCV uses."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v, _ = x.max(dim=1)
    mn, _ = x.min(dim=1)
    d = v - mn
    s = torch.where(v > 0, d / v.clamp_min(1e-8), torch.zeros_like(v))
    dd = d.clamp_min(1e-8)
    h = torch.where(v == r, (g - b) / dd, torch.where(v == g, 2.0 + (b - r) / dd, 4.0 + (r - g) / dd))
    h = torch.where(d > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return h, s, v


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    n = (_const((5.0, 3.0, 1.0), h) + h[:, None] * 6.0) % 6.0
    f = (torch.minimum(n, 4.0 - n)).clamp(0.0, 1.0)
    return v[:, None] - v[:, None] * s[:, None] * f


@TENSOR_OPS.register("HueSaturationValue")
def _hue_saturation_value(x: torch.Tensor, a: dict) -> torch.Tensor:
    """Shifts in albumentations' uint8 units: hue in OpenCV's 0..180 scale, saturation and value in 0..255.
    The HSV round trip runs in fp32 (in fp16 the hue arithmetic alone moves pixels by ~1.5 uint8 levels), and
    images the op does not pick come back untouched."""
    n = len(x)
    hl, sl, vl = (_range(a.get(k), d) for k, d in (("hue_shift_limit", (-20, 20)), ("sat_shift_limit", (-30, 30)),
                                                    ("val_shift_limit", (-20, 20))))
    hit = _hit(n, a.get("p", 0.5), x)
    dh, ds, dv = (_u(n, *r, x)[:, None, None] / unit for r, unit in ((hl, 180.0), (sl, 255.0), (vl, 255.0)))
    h, s, v = _rgb_to_hsv(x.float())
    grey = s == 0  # grey pixels stay grey, as in albumentations
    h = (h + dh) % 1.0
    s = torch.where(grey, s, (s + ds).clamp(0, 1))
    v = (v + dv).clamp(0, 1)
    return torch.where(hit[:, None, None, None], _hsv_to_rgb(h, s, v).to(x.dtype), x)


def _factor_range(v, center: float = 1.0) -> tuple[float, float]:
    if isinstance(v, (int, float)):
        return (max(0.0, center - v), center + v)
    return (float(v[0]), float(v[1]))


@TENSOR_OPS.register("ColorJitter")
def _color_jitter(x: torch.Tensor, a: dict) -> torch.Tensor:
    """torchvision-style jitter as albumentations does it: brightness x b, contrast around the grey mean,
    saturation as a blend with grey, hue as a turn of the colour wheel; the four in a random order. The hue
    turn runs in fp32, and images the op does not pick come back untouched."""
    n, x0 = len(x), x
    hit = _hit(n, a.get("p", 0.5), x)
    one = lambda lo, hi: _per_sample(torch.where(hit, _u(n, lo, hi, x), 1.0), x)  # noqa: E731
    b, c, s = (one(*_factor_range(a.get(k, 0.2))) for k in ("brightness", "contrast", "saturation"))
    hr = _factor_range(a.get("hue", 0.2), 0.0) if not isinstance(a.get("hue", 0.2), (int, float)) else \
        (-abs(a.get("hue", 0.2)), abs(a.get("hue", 0.2)))
    hue = torch.where(hit, _u(n, *hr, x), 0.0)[:, None, None]
    weights = _const((0.299, 0.587, 0.114), x)
    for op in torch.randperm(4).tolist():
        if op == 0:
            x = (x * b).clamp(0, 1)
        elif op == 1:
            mean = (x * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
            x = (mean + (x - mean) * c).clamp(0, 1)
        elif op == 2:
            grey = (x * weights).sum(1, keepdim=True)
            x = (grey + (x - grey) * s).clamp(0, 1)
        else:
            h, sat, v = _rgb_to_hsv(x.float())
            x = _hsv_to_rgb((h + hue) % 1.0, sat, v).to(x.dtype)
    return torch.where(hit[:, None, None, None], x, x0)
