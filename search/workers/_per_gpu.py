"""What is measured once per GPU model and kept in the study, so that every worker and trial reuses it: the batch
ceiling of a model at a size, and (search run --trials-per-gpu auto) how many trials share a GPU; and the share
itself, each worker's 1/K of its GPU's memory."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import optuna
import torch

from training.batch_probe import probe_max_batch
from training.config import RunConfig
from training.files import file_lock_if_possible
from training.runtime import resolve_runtime

__all__ = ["batch_ceiling", "apply_gpu_share", "gpu_share", "gpu_key", "measured_once"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def gpu_share() -> int:
    return int(os.environ.get("SEARCH_GPU_SHARE", "1"))


def apply_gpu_share() -> None:
    """Several trials per GPU: cap this process at 1/K of the GPU's memory."""
    k = gpu_share()
    if k > 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(1.0 / k)


def gpu_key(what: str, gpu_name: str, cfg: RunConfig, *settings) -> str:
    """The study attribute that keeps a per-GPU answer: what it is, the GPU model, the model, its input size,
    and the settings the answer depends on (``what:GPU:model:HxW:settings...``)."""
    h, w = cfg.data.hw
    return ":".join([what, gpu_name, cfg.model.name, f"{h}x{w}", *map(str, settings)])


def batch_ceiling(study: optuna.Study, cfg: RunConfig) -> int | None:
    """None on CPU (no ceiling); else the largest power-of-two batch that trains, cached per
    (GPU model, model, image size, precision, memory format, trials per GPU)."""
    rt = resolve_runtime(cfg.train)
    if rt.device.type != "cuda":
        return None
    key = gpu_key("batch_ceiling", torch.cuda.get_device_name(rt.device), cfg, rt.dtype, rt.channels_last,
                  f"x{gpu_share()}")
    props = torch.cuda.get_device_properties(rt.device)
    gpu = str(getattr(props, "uuid", "")) or f"{props.name}-{os.environ.get('CUDA_VISIBLE_DEVICES', '')}"
    value, _ = measured_once(study, key, lambda: probe_max_batch(cfg, rt, num_outputs=1000), lock=f"gpu-{gpu}",
                             keep=lambda v: v > 0)  # "does not fit" fails this trial, not every later one
    return int(value)


def measured_once(study: optuna.Study, key: str, measure: Callable[[], T], lock: str,
                  keep: Callable[[T], bool] = lambda value: True) -> tuple[T, bool]:
    """The study's value for ``key`` (and False), or ``measure()`` kept there (and True) when it is missing and
    ``keep`` accepts it. Measurements on one GPU (``lock`` names it) run one at a time: K workers sharing a GPU
    that probed together would each run out of memory early, and the first (too small) answer would stick for
    the whole study. Later ones find the answer in the study and measure nothing. One that starts while other
    workers train on the GPU still shares it; each process stays within its 1/K memory cap."""
    if key in study.user_attrs:
        return study.user_attrs[key], False
    path = Path(tempfile.gettempdir()) / f"imgsearch-probe-{hashlib.sha1(lock.encode()).hexdigest()[:16]}.lock"
    with file_lock_if_possible(path) as held:
        if not held:
            log.warning("cannot create the lock file %s; measuring %s without it", path, key.split(":")[0])
        if key in study.user_attrs:  # read again (from the store): another worker may have measured while we waited
            return study.user_attrs[key], False
        value = measure()
        if keep(value):
            study.set_user_attr(key, value)
        return value, True
