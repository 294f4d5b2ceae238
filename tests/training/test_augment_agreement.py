"""The tensor (GPU-side) implementations mean what the albumentations ops they replace mean: same
parameters, same pixels (up to uint8 rounding and interpolation), same probabilities and distributions."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from training.augment import tensor_plan
from training.augment_ops import TENSOR_OPS


def _smooth(n: int = 1, size: int = 48, seed: int = 0, width: int | None = None) -> np.ndarray:
    """n smooth RGB images, size x size, or size x width (H x W) when ``width`` is given."""
    rng = np.random.default_rng(seed)
    w = size if width is None else width
    yy, xx = np.mgrid[0:size, 0:w]
    yy, xx = yy / size, xx / w
    out = []
    for _ in range(n):
        f = rng.uniform(1, 3, 3)
        ph = rng.uniform(0, 6, 3)
        img = np.stack([0.5 + 0.4 * np.sin(f[c] * 6 * xx + ph[c]) * np.cos(f[c] * 4 * yy) for c in range(3)], -1)
        out.append((img * 255).astype(np.uint8))
    return np.stack(out)


def _both(t: A.BasicTransform, imgs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same op through albumentations (per image, uint8) and through the tensor path (one batch)."""
    compose = A.Compose([t])
    compose.set_random_seed(0)
    cpu = np.stack([compose(image=i)["image"] for i in imgs]).astype(np.float32)
    spec = A.to_dict(compose)["transform"]["transforms"][0]
    name = spec["__class_fullname__"].rsplit(".", 1)[-1]
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)
    gpu = TENSOR_OPS.get_or_none(name)(x, spec).permute(0, 2, 3, 1).numpy() * 255
    return cpu, gpu


@pytest.mark.parametrize("t", [
    A.HorizontalFlip(p=1.0),
    A.VerticalFlip(p=1.0),
    A.RandomBrightnessContrast(brightness_limit=(0.1, 0.1), contrast_limit=(-0.2, -0.2), p=1.0),
    A.RandomBrightnessContrast(brightness_limit=(-0.15, -0.15), contrast_limit=(0.3, 0.3), brightness_by_max=False,
                               p=1.0),
    A.HueSaturationValue(hue_shift_limit=(12, 12), sat_shift_limit=(25, 25), val_shift_limit=(-20, -20), p=1.0),
    A.ColorJitter(brightness=(1.2, 1.2), contrast=(1, 1), saturation=(1, 1), hue=(0, 0), p=1.0),
    A.ColorJitter(brightness=(1, 1), contrast=(0.7, 0.7), saturation=(1, 1), hue=(0, 0), p=1.0),
    A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1.5, 1.5), hue=(0, 0), p=1.0),
    A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1), hue=(0.1, 0.1), p=1.0),
    A.Affine(rotate=(20, 20), scale=(1, 1), p=1.0),
    A.Affine(rotate=(0, 0), scale=(1.25, 1.25), p=1.0),
    A.Affine(rotate=(0, 0), scale=(1, 1), translate_percent={"x": (0.25, 0.25), "y": (-0.125, -0.125)}, p=1.0),
    A.ShiftScaleRotate(shift_limit_x=(0.125, 0.125), shift_limit_y=(0, 0), scale_limit=(0.1, 0.1),
                       rotate_limit=(-15, -15), p=1.0),
    A.Normalize(p=1.0),
], ids=lambda t: type(t).__name__)
def test_fixed_parameters_give_the_same_pixels(t):
    imgs = _smooth(4)
    cpu, gpu = _both(t, imgs)
    if isinstance(t, A.Normalize):  # albumentations returns normalized floats; _both scaled ours by 255
        assert np.abs(cpu - gpu / 255).max() < 1e-4
        return
    diff = np.abs(cpu - gpu)
    assert diff.mean() < 2.0, f"mean |cpu - tensor| = {diff.mean():.2f} of 255"
    assert np.abs(cpu - imgs).mean() > 3.0, "the op did something"


NON_SQUARE = [
    A.HorizontalFlip(p=1.0),
    A.VerticalFlip(p=1.0),
    A.Affine(rotate=(20, 20), scale=(1, 1), p=1.0),
    A.Affine(rotate=(0, 0), scale={"x": (1.25, 1.25), "y": (0.8, 0.8)}, p=1.0),
    A.Affine(rotate=(25, 25), scale={"x": (1.2, 1.2), "y": (0.9, 0.9)}, p=1.0),
    A.Affine(rotate=(-30, -30), scale=(1.1, 1.1), translate_percent={"x": (0.2, 0.2), "y": (-0.1, -0.1)}, p=1.0),
    A.ShiftScaleRotate(shift_limit_x=(0.125, 0.125), shift_limit_y=(-0.0625, -0.0625), scale_limit=(0.1, 0.1),
                       rotate_limit=(-15, -15), p=1.0),
    A.RandomBrightnessContrast(brightness_limit=(0.1, 0.1), contrast_limit=(-0.2, -0.2), p=1.0),
    A.HueSaturationValue(hue_shift_limit=(12, 12), sat_shift_limit=(25, 25), val_shift_limit=(-20, -20), p=1.0),
]


@pytest.mark.parametrize("hw", [(32, 56), (56, 32)], ids=["landscape", "portrait"])
@pytest.mark.parametrize("t", NON_SQUARE, ids=lambda t: type(t).__name__)
def test_fixed_parameters_give_the_same_pixels_on_non_square_images(t, hw):
    """data.image_size [H, W]: the warp rotates in pixels (a rotation in the grid's normalized coordinates
    would also shear a non-square image) and shifts and scales each side by its own length."""
    imgs = _smooth(4, size=hw[0], width=hw[1])
    cpu, gpu = _both(t, imgs)
    diff = np.abs(cpu - gpu)
    assert diff.mean() < 2.0, f"mean |cpu - tensor| = {diff.mean():.2f} of 255"
    assert np.abs(cpu - imgs).mean() > 3.0, "the op did something"


def _box_extent(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) the bright box covers in each image."""
    on = out.mean(-1) > 127
    return on.any(2).sum(1), on.any(1).sum(1)


@pytest.mark.parametrize("keep_ratio", [False, True])
def test_affine_draws_the_x_and_y_scales_as_albumentations(keep_ratio):
    """Affine draws the x and y scales independently unless keep_ratio (ShiftScaleRotate: always
    independently); measured as the height and width of a centred box after the warp, on a 48x64 image."""
    imgs = np.zeros((300, 48, 64, 3), np.uint8)
    imgs[:, 16:32, 20:44] = 255  # 16 x 24, centred on the image's centre ((H - 1) / 2, (W - 1) / 2)
    t = A.Affine(rotate=(0, 0), scale=(0.7, 1.3), keep_ratio=keep_ratio, p=1.0)
    for out in _both(t, imgs):
        rows, cols = _box_extent(out)
        sy, sx = rows / 16, cols / 24
        assert 0.65 < min(sx.min(), sy.min()) < 0.8 and 1.2 < max(sx.max(), sy.max()) < 1.35
        corr = np.corrcoef(sx, sy)[0, 1]
        assert (corr > 0.9) if keep_ratio else (abs(corr) < 0.25), corr


def test_coarse_dropout_holes_follow_each_side_on_non_square_images():
    """Hole heights are fractions of H, widths of W, and holes land anywhere on the image, as albumentations."""
    imgs = np.full((300, 32, 64, 3), 200, np.uint8)
    t = A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.5, 0.5), hole_width_range=(0.125, 0.125),
                        fill=0, p=1.0)
    starts = []
    for out in _both(t, imgs):
        hole = out[..., 0] == 0
        rows, cols = hole.any(2).sum(1), hole.any(1).sum(1)
        assert (rows == 16).all() and (cols == 8).all()  # 0.5 x 32 high, 0.125 x 64 wide
        starts.append((hole.any(2).argmax(1), hole.any(1).argmax(1)))
    (y_cpu, x_cpu), (y_gpu, x_gpu) = starts
    assert y_gpu.max() <= 16 and x_gpu.max() <= 56 and x_gpu.max() > 45  # anywhere along the long side
    assert abs(y_cpu.mean() - y_gpu.mean()) < 2.0 and abs(x_cpu.mean() - x_gpu.mean()) < 5.0


@pytest.mark.parametrize("t", [A.HorizontalFlip(p=0.3), A.VerticalFlip(p=0.7)], ids=["hflip", "vflip"])
def test_probabilities_agree(t):
    imgs = _smooth(1).repeat(600, axis=0)
    cpu, gpu = _both(t, imgs)
    changed = lambda out: (np.abs(out - imgs).reshape(len(imgs), -1).mean(1) > 1).mean()  # noqa: E731
    assert abs(changed(cpu) - t.p) < 0.07 and abs(changed(gpu) - t.p) < 0.07


def test_random_brightness_contrast_draws_from_the_same_range():
    imgs = _smooth(1).repeat(400, axis=0)
    cpu, gpu = _both(A.RandomBrightnessContrast(brightness_limit=(-0.2, 0.2), contrast_limit=(0, 0), p=1.0), imgs)
    dc = (cpu - imgs).reshape(len(imgs), -1).mean(1) / 255
    dg = (gpu - imgs).reshape(len(imgs), -1).mean(1) / 255
    for d in (dc, dg):
        assert -0.21 < d.min() < -0.15 and 0.15 < d.max() < 0.21 and abs(d.mean()) < 0.03


def test_gauss_noise_has_the_same_strength():
    imgs = np.full((64, 48, 48, 3), 128, np.uint8)
    cpu, gpu = _both(A.GaussNoise(std_range=(0.1, 0.1), p=1.0), imgs)
    assert abs((cpu - 128).std() / 255 - 0.1) < 0.01
    assert abs((gpu - 128).std() / 255 - 0.1) < 0.01


def test_coarse_dropout_cuts_the_same_area():
    imgs = np.full((300, 40, 40, 3), 200, np.uint8)
    t = A.CoarseDropout(num_holes_range=(2, 2), hole_height_range=(0.2, 0.2), hole_width_range=(0.25, 0.25),
                        fill=0, p=1.0)
    cpu, gpu = _both(t, imgs)
    area = lambda out: (out[..., 0] == 0).reshape(len(out), -1).mean(1)  # noqa: E731
    # two 8x10 holes per 40x40 image, overlapping sometimes: at most 0.1 of the image
    assert abs(area(cpu).mean() - area(gpu).mean()) < 0.01
    assert area(gpu).max() <= 0.1 + 1e-6 and area(gpu).mean() > 0.08


def test_pipelines_route_to_the_tensor_path_only_when_every_op_has_a_tensor_version():
    ops = ["HorizontalFlip", "VerticalFlip", "RandomBrightnessContrast", "HueSaturationValue", "ColorJitter",
           "Affine", "ShiftScaleRotate", "GaussNoise", "CoarseDropout", "Normalize"]
    assert set(ops) <= set(TENSOR_OPS.names())
    plan = tensor_plan([{"__class_fullname__": n} for n in ops])
    assert [name for name, _ in plan] == ops
    assert tensor_plan([{"__class_fullname__": "HorizontalFlip"}, {"__class_fullname__": "CLAHE"}]) is None
    # arguments the tensor versions don't implement go to the CPU path too
    assert tensor_plan([{"__class_fullname__": "Affine", "shear": 10}]) is None
    assert tensor_plan([{"__class_fullname__": "Affine", "border_mode": 2}]) is None
    assert tensor_plan([{"__class_fullname__": "Affine", "balanced_scale": True}]) is None
    assert tensor_plan([{"__class_fullname__": "Affine", "keep_ratio": True}]) is not None  # sy = sx


HALF_PIPELINE = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5),
                 A.HueSaturationValue(p=0.5), A.ColorJitter(p=0.5), A.CoarseDropout(p=0.5)]


def _fp16_vs_fp32(imgs: np.ndarray, pipeline: list, device: torch.device) -> torch.Tensor:
    from training.data.loader import make_loader

    out = {}
    for dtype in (torch.float32, torch.float16):
        ld = make_loader(imgs, np.arange(len(imgs)), np.zeros(len(imgs), np.int64), batch_size=len(imgs),
                         spec=A.to_dict(A.Compose(pipeline)), mean=(0, 0, 0), std=(1, 1, 1), device=device,
                         channels_last=False, shuffle=False, dtype=dtype)
        torch.manual_seed(3)
        out[dtype] = ld.augment(torch.from_numpy(imgs).to(device))
        assert out[dtype].dtype == dtype
    moved = (out[torch.float32].cpu() - torch.from_numpy(imgs).permute(0, 3, 1, 2) / 255).abs().mean()
    assert moved > 0.02, "the pipeline augmented"
    return (out[torch.float16].float() - out[torch.float32]).abs().cpu() * 255  # in uint8 levels


def test_half_precision_batches_mean_the_same_as_fp32():
    """Under CUDA autocast the loader augments in fp16 (Runtime.input_dtype): the same draws give the same
    pixels as fp32, up to fp16 rounding (at most ~1 uint8 level; HSV round trips run in fp32)."""
    diff = _fp16_vs_fp32(_smooth(16, size=32), HALF_PIPELINE, torch.device("cpu"))
    assert diff.mean() < 0.2 and diff.max() <= 1.5, (float(diff.mean()), float(diff.max()))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])
def test_half_precision_with_affine_at_224px(device):
    """The affine warp samples in fp32 even for fp16 batches: with an fp16 grid, the GPU's warp lands tens of
    uint8 levels off at the zero border (benchmarks/RESULTS.md), and torch 2.14's CPU fp16 grid_sample is
    wrong at this size."""
    pipeline = HALF_PIPELINE + [A.Affine(rotate=(-15, 15), scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), p=0.5)]
    diff = _fp16_vs_fp32(_smooth(16, size=224), pipeline, torch.device(device))
    assert diff.mean() < 0.3 and diff.max() <= 3.0, (float(diff.mean()), float(diff.max()))
