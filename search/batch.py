"""Batch ceilings per GPU model, probed once and kept in the study so every worker and trial reuses them."""

from __future__ import annotations

import os

import optuna
import torch

from training.batch_probe import probe_max_batch
from training.config import RunConfig
from training.runtime import resolve_runtime

__all__ = ["batch_ceiling", "apply_gpu_share"]


def gpu_share() -> int:
    return int(os.environ.get("SEARCH_GPU_SHARE", "1"))


def apply_gpu_share() -> None:
    """Several trials per GPU: cap this process at 1/K of the GPU's memory."""
    k = gpu_share()
    if k > 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(1.0 / k)


def batch_ceiling(study: optuna.Study, cfg: RunConfig) -> int | None:
    """None on CPU (no ceiling); else the largest power-of-two batch that trains, cached per
    (GPU model, model, image size, precision, memory format, trials per GPU)."""
    rt = resolve_runtime(cfg.train)
    if rt.device.type != "cuda":
        return None
    key = (f"batch_ceiling:{torch.cuda.get_device_name(rt.device)}:{cfg.model.name}:{cfg.data.image_size}:"
           f"{rt.dtype}:{rt.channels_last}:x{gpu_share()}")
    if key in study.user_attrs:
        return int(study.user_attrs[key])
    value = probe_max_batch(cfg, rt, num_outputs=1000)
    if value > 0:  # "does not fit" fails this trial; it is not written down for every later one
        study.set_user_attr(key, value)
    return value

