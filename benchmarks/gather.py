"""Host side of the tensor-path loader alone: uint8 batches from a memory-mapped cache into host memory the GPU
can copy from. No training, no GPU work; run it on the machine whose loader you suspect.

    python benchmarks/gather.py                      # 3072 images at 224 px, batch 256
    python benchmarks/gather.py --size 380 --batch 64

Rows, all reading the same memory-mapped file (built first, then read once so it sits in the page cache):
  fancy + pin     images[idx] (a new array) then a copy into page-locked memory (`pin_memory()` on CUDA, from
                  torch's cache of pinned blocks; on CPU a clone into fresh memory, which costs more than a cached
                  pinned block): what our loader did before, and what a hand-written memmap loader does
  take            np.take(images, idx, out=buffer) with numpy's default mode="raise" (numpy buffers `out`)
  ours            TensorBatches' producer: np.take(mode="clip") straight into reused (pinned) ring buffers
A row's img/s is the producer's ceiling: training can be no faster than it on that machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data.loader import make_loader  # noqa: E402


def _cache(folder: Path, n: int, size: int) -> np.memmap:
    path = folder / "cache.u8"
    rng = np.random.default_rng(0)
    mm = np.memmap(path, dtype=np.uint8, mode="w+", shape=(n, size, size, 3))
    for s in range(0, n, 256):
        mm[s:s + 256] = rng.integers(0, 256, (min(256, n - s), size, size, 3), dtype=np.uint8)
    mm.flush()
    ro = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, size, size, 3))
    ro.sum(axis=(1, 2, 3))  # every page read once: in the page cache and mapped, as after a first epoch
    return ro


def host_batches(loader):
    """The tensor-path loader's producer alone, epoch after epoch: (uint8 images, targets, slot) per batch."""
    while True:
        loader.epoch += 1
        yield from loader._gather(loader.ring)


def _rate(batches, n_batches: int, warmup: int) -> float:
    """img/s over ``n_batches`` after ``warmup`` (each generator yields (images, ...) per batch)."""
    for _ in range(warmup):
        next(batches)
    n, t0 = 0, time.perf_counter()
    for _ in range(n_batches):
        n += len(next(batches)[0])
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=3072)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=48)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gather-bench-") as tmp:
        run(args, _cache(Path(tmp), args.n_images, args.size))


def run(args, images: np.memmap) -> None:
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    n, b = len(images), args.batch
    rng = np.random.default_rng(1)

    def indices():
        while True:
            order = rng.permutation(n)
            for s in range(0, n - b + 1, b):
                yield np.sort(order[s:s + b])

    def fancy_pin():
        for idx in indices():
            x = torch.from_numpy(np.ascontiguousarray(images[idx]))
            yield (x.pin_memory() if cuda else x.clone()),

    def take_raise():
        out = torch.empty((b, *images.shape[1:]), dtype=torch.uint8, pin_memory=cuda)
        for idx in indices():
            yield np.take(images, idx, axis=0, out=out.numpy()),

    loader = make_loader(images, np.arange(n), np.zeros(n, np.int64), batch_size=b, spec=None, mean=(0, 0, 0),
                         std=(1, 1, 1), device=dev, channels_last=False, shuffle=True)

    mb = b * int(np.prod(images.shape[1:])) / 2**20
    warm = len(loader.ring.slots)  # every row: first uses allocate, then steady state
    print(f"# {time.strftime('%Y-%m-%d')} on {torch.cuda.get_device_name(0) if cuda else 'CPU'}, "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__}, numpy {np.__version__}; {n} images at "
          f"{args.size} px, batch {b} ({mb:.0f} MB), {args.batches} batches timed after {warm}")
    print("\n| gather | img/s | ms/batch |\n|---|---|---|")
    gathers = (("fancy + pin", fancy_pin), ("take (mode=raise)", take_raise), ("ours", lambda: host_batches(loader)))
    for name, gen in gathers:
        ips = _rate(gen(), args.batches, warm)
        print(f"| {name} | {ips:.0f} | {1000 * b / ips:.1f} |", flush=True)


if __name__ == "__main__":
    main()
