"""Where a step's time goes beyond the model (GPU only), and what precision the affine warp needs.

    python benchmarks/ablation.py [--n-images 1024]   # a few minutes on an H100 (benchmarks/device.sh ablation)

Per model (batch 256 at 224 px, `precision: auto`, channels_last), img/s of the same training step fed by:
  model-only         one random batch already on the device (the limit); measured twice, as is `ours`
  ours               the loader `search` trials use (cache -> gather thread -> side-stream upload -> augment)
  normalize-only     the same loader with a pipeline of Normalize alone (no augmentation kernels)
  augment, no thread one uint8 batch already on the device, augmented every step (no gather thread, no upload)
  thread, no augment the gather thread and the upload run, but the step trains on a fixed batch
Then the fp16 affine warp against fp32 on smooth 224 px images, in uint8 levels: the grid built in fp16, built
in fp32 and rounded to fp16, and the sampling done in fp32 (what augment_ops does).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here), str(here.parent), str(here.parent / "tests" / "training")]

import throughput as T  # noqa: E402
from test_augment_agreement import _smooth  # noqa: E402
from training.data.cache import decode_cached  # noqa: E402
from training.data.sources import load_samples  # noqa: E402
from training.runtime import resolve_runtime  # noqa: E402

SIZE, BATCH, WARMUP = 224, 256, 8


def step_rows(name: str, root: Path, steps: int) -> dict[str, float]:
    cfg = T._cfg(name, SIZE, root, BATCH)
    rt = resolve_runtime(cfg.train)
    samples = load_samples(cfg.data)
    images = decode_cached(samples, cfg.data).images

    def loader(spec):
        return T._ours(cfg, rt, images, samples, spec)

    def rate(batches) -> float:
        m, opt = T._model(cfg, rt)
        return T._train_steps(m, opt, rt, batches, steps, WARMUP)

    x = torch.randn(BATCH, 3, SIZE, SIZE, device=rt.device, dtype=rt.input_dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,), device=rt.device)
    out = {}
    for rep in (1, 2):
        out[f"model-only {rep}"] = rate(T._forever([(x, y)]))
        out[f"ours {rep}"] = rate(T._forever(loader(T.PIPELINE)))
    out["normalize-only"] = rate(T._forever(loader([T.PIPELINE[-1]])))
    ld, xu = loader(T.PIPELINE), torch.from_numpy(np.array(images[:BATCH])).to(rt.device)
    out["augment, no thread"] = rate(((ld.augment(xu), y) for _ in itertools.count()))  # xu is only read
    ld = loader(T.PIPELINE)
    ld.augment = lambda xb: xb  # the thread and the upload still run; the step ignores their batch
    out["thread, no augment"] = rate(((x, y) for _ in T._forever(ld)))
    return out


def affine_rows(n: int = 16) -> dict[str, tuple[float, float, float]]:
    """(max, max two or more pixels inside the zero border, mean) |fp16 - fp32| in uint8 levels."""
    imgs = torch.from_numpy(_smooth(n, size=SIZE)).cuda().permute(0, 3, 1, 2).float() / 255
    g = torch.Generator(device="cuda").manual_seed(0)
    ang = (torch.rand(n, device="cuda", generator=g) - 0.5) * 0.5
    scale = 0.9 + 0.2 * torch.rand(n, device="cuda", generator=g)
    shift = (torch.rand(n, device="cuda", generator=g) - 0.5) * 0.1
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift], 1), torch.stack([sin, cos, shift], 1)], 1)
    shape = list(imgs.shape)

    def warp(img, grid):
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    ref = warp(imgs, F.affine_grid(theta, shape, align_corners=False))
    h = imgs.half()
    variants = {
        "fp16 grid, fp16 sampling": warp(h, F.affine_grid(theta.half(), shape, align_corners=False)),
        "fp32 grid rounded to fp16": warp(h, F.affine_grid(theta, shape, align_corners=False).half()),
        "fp32 grid, fp32 sampling": warp(h.float(), F.affine_grid(theta, shape, align_corners=False)).half(),
    }
    inside = -F.max_pool2d(-(ref > 0).all(1, keepdim=True).float(), 5, 1, 2) > 0
    rows = {}
    for k, v in variants.items():
        d = (v.float() - ref).abs() * 255
        rows[k] = (float(d.max()), float((d * inside).max()), float(d.mean()))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=1024, help="synthetic 512x384 JPEGs to decode and train on")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/ablation.py measures a GPU step; no CUDA device here")
    os.environ.setdefault("SEARCH_CACHE_DIR", tempfile.mkdtemp(prefix="bench-cache-"))
    root = T.make_jpegs(Path(tempfile.mkdtemp(prefix="bench-jpeg-")), args.n_images)
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}; {args.n_images} JPEGs 512x384, batch {BATCH} "
          f"at {SIZE} px, img/s after {WARMUP} warm-up steps")
    for name, steps in (("efficientnet_b0", 30), ("resnet18", 40)):
        rows = step_rows(name, root, steps)
        print(f"\n| {name} | img/s |\n|---|---|")
        for k, v in rows.items():
            print(f"| {k} | {v:.0f} |", flush=True)
    print("\n| affine warp, fp16 vs fp32 (uint8 levels) | max | max inside | mean |\n|---|---|---|---|")
    for k, (mx, inner, mean) in affine_rows().items():
        print(f"| {k} | {mx:.2f} | {inner:.2f} | {mean:.3f} |")


if __name__ == "__main__":
    main()
