"""The largest batch that trains: grow by powers of two until CUDA runs out of memory.

Measures a full step (forward, backward, optimizer) at the run's image size, precision and memory format,
on synthetic data, so the answer matches the real out-of-memory boundary of that model on that GPU.
"""

from __future__ import annotations

import gc
import logging

import torch

from .config import RunConfig
from .models import build_model
from .runtime import Runtime

__all__ = ["probe_max_batch", "resolve_batch_size", "CPU_AUTO_BATCH"]

log = logging.getLogger(__name__)
CPU_AUTO_BATCH = 64  # no memory wall worth probing on CPU: 'auto' means this


def _fits(cfg: RunConfig, rt: Runtime, num_outputs: int, batch: int, *, heuristics: bool = True) -> bool:
    """Whether two training steps at ``batch`` fit. ``heuristics``: with cuDNN's heuristics instead of timing
    every algorithm for every new shape (the run's cudnn.benchmark): the same peak memory in a fraction of the
    time (benchmarks/RESULTS.md); training with benchmark on only picks algorithms whose workspace fits. The
    flag is restored afterwards."""
    model = opt = x = loss = None
    benchmark = torch.backends.cudnn.benchmark
    if heuristics:
        torch.backends.cudnn.benchmark = False
    try:
        model = build_model(cfg.model.model_copy(update={"pretrained": False}), num_outputs).to(rt.device)
        fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        h, w = cfg.data.hw
        x = torch.randn(batch, 3, h, w, device=rt.device, dtype=rt.input_dtype).contiguous(memory_format=fmt)
        for _ in range(2):  # the second step holds optimizer state too
            with rt.autocast():
                loss = model(x).float().logsumexp(1).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(rt.device)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        torch.backends.cudnn.benchmark = benchmark
        del model, opt, x, loss
        gc.collect()
        torch.cuda.empty_cache()


def probe_max_batch(cfg: RunConfig, rt: Runtime, num_outputs: int, start: int = 8, limit: int = 8192) -> int:
    """Largest power of two in [start, limit] whose training step fits; 0 when even ``start`` does not."""
    if rt.device.type != "cuda":
        return CPU_AUTO_BATCH
    best, b = 0, start
    while b <= limit and _fits(cfg, rt, num_outputs, b):
        best, b = b, b * 2
    log.info("batch ceiling for %s@%dx%dpx: %d", cfg.model.name, *cfg.data.hw, best)
    return best


def resolve_batch_size(requested: int | str, ceiling: int | None) -> int:
    """'auto' -> the ceiling; a number above the ceiling is capped to it."""
    if requested == "auto":
        return CPU_AUTO_BATCH if ceiling is None else ceiling
    return int(requested) if ceiling is None else min(int(requested), ceiling)
