"""Batch ceilings per GPU model, probed once and kept in the study so every worker and trial reuses them."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna
import torch

from training.batch_probe import probe_max_batch
from training.config import RunConfig
from training.runtime import resolve_runtime

from .locks import file_lock_if_possible

__all__ = ["batch_ceiling", "apply_gpu_share", "probed_once"]

log = logging.getLogger(__name__)


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
    h, w = cfg.data.hw
    key = (f"batch_ceiling:{torch.cuda.get_device_name(rt.device)}:{cfg.model.name}:{h}x{w}:"
           f"{rt.dtype}:{rt.channels_last}:x{gpu_share()}")
    props = torch.cuda.get_device_properties(rt.device)
    gpu = str(getattr(props, "uuid", "")) or f"{props.name}-{os.environ.get('CUDA_VISIBLE_DEVICES', '')}"
    return probed_once(study, key, lambda: probe_max_batch(cfg, rt, num_outputs=1000), lock=f"gpu-{gpu}")


def probed_once(study: optuna.Study, key: str, probe: Callable[[], int], lock: str) -> int:
    """The study's value for ``key``, probing it if missing. Probes on one GPU (``lock`` names it) run one at
    a time: K workers sharing a GPU that probed together would each run out of memory early, and the first
    (too small) answer would stick for the whole study. Later ones find the answer in the study and probe
    nothing. A probe that starts while other workers train on the GPU still shares it; each process stays
    within its 1/K memory cap."""
    if key in study.user_attrs:
        return int(study.user_attrs[key])
    path = Path(tempfile.gettempdir()) / f"imgsearch-probe-{hashlib.sha1(lock.encode()).hexdigest()[:16]}.lock"
    with file_lock_if_possible(path) as held:
        if not held:
            log.warning("cannot create the lock file %s; probing the batch ceiling without it", path)
        if key in study.user_attrs:  # read again (from the store): another worker may have probed while we waited
            return int(study.user_attrs[key])
        value = probe()
        if value > 0:  # "does not fit" fails this trial; it is not written down for every later one
            study.set_user_attr(key, value)
        return value
