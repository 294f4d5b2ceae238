"""Where and how a run computes: device, autocast precision, memory format, seeds."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .config import LoopConfig
from .errors import ConfigError

__all__ = ["Runtime", "Device", "resolve_runtime", "seed_everything", "describe_device", "recorded_kind"]


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype | None      # autocast dtype; None: full fp32
    channels_last: bool

    @property
    def precision(self) -> str:
        """The ``train.precision`` name of what runs: bf16, fp16 or fp32."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")

    @property
    def input_dtype(self) -> torch.dtype:
        """What the loaders hand the model. fp16 under CUDA autocast: the device-side augmentation moves half
        the bytes of fp32 with 11 significant bits (uint8 pixels have 8), and autocast casts the input for the
        first layer anyway. fp32 otherwise (CPU kernels are slower in half precision)."""
        return torch.float16 if self.device.type == "cuda" and self.dtype is not None else torch.float32

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def _device_of(cfg: LoopConfig) -> str:
    """The device ``train.device`` names here: ``auto`` is the GPU where one is visible, else the CPU."""
    return cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Device:
    """Where a run computes, described once: ``kind`` (CPU or GPU) for whoever counts hours, ``name`` as people
    name it (``cpu``, or ``cuda:N <GPU model>``) for whoever reads it. Nobody parses the name back."""
    kind: Literal["CPU", "GPU"]
    name: str


def recorded_kind(kind: str | None, name: str | None) -> str | None:
    """A run's recorded device kind. Records made before the kind was kept hold only the name: theirs is read
    from it (``cpu``, ``cuda:N ...``), the one place a name is read back, for those old records alone."""
    if kind:
        return kind
    if not name:
        return None
    return "CPU" if name == "cpu" else "GPU" if name.startswith("cuda") else None


def describe_device(cfg: LoopConfig) -> Device | None:
    """Where a run of ``cfg`` computes; None for a GPU this machine lacks (never raises: the run itself fails
    with resolve_runtime's error)."""
    device = torch.device(_device_of(cfg))
    if device.type != "cuda":
        return Device("CPU", device.type)
    if not torch.cuda.is_available():
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        return None
    return Device("GPU", f"cuda:{index} {torch.cuda.get_device_name(index)}")


def resolve_runtime(cfg: LoopConfig) -> Runtime:
    want = _device_of(cfg)
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device = '{cfg.device}' but no CUDA GPU is visible; use auto or cpu")
    device = torch.device(want)
    cuda = device.type == "cuda"
    if cfg.precision == "auto":
        dtype = _auto_dtype(device) if cuda else None
    elif cfg.precision == "fp32":
        dtype = None
    elif cfg.precision == "fp16" and not cuda:
        raise ConfigError("train.precision = 'fp16' needs a CUDA GPU; use auto, bf16 or fp32 on CPU")
    else:
        dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float16
    # auto: channels_last on CUDA, except under torch.compile: inductor's conv backward has failed a stride
    # assertion with channels_last weights, so a compiled model keeps the default layout (benchmarks/RESULTS.md)
    channels_last = (cuda and not cfg.compile) if cfg.channels_last == "auto" else bool(cfg.channels_last)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cuda:
        torch.backends.cudnn.benchmark = True  # shapes are fixed per run
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, dtype, channels_last)


def _auto_dtype(device: torch.device) -> torch.dtype | None:
    """What ``precision: auto`` means on this GPU: bf16 where it computes it natively (Ampere and newer, and
    ROCm); fp16 with loss scaling on Volta and Turing (T4, V100: they only emulate bf16, slower than fp32, while
    fp16 runs on their tensor cores); fp32 on older GPUs, whose fp16 is slow."""
    if torch.version.hip:
        return torch.bfloat16
    major = torch.cuda.get_device_capability(device)[0]
    return torch.bfloat16 if major >= 8 else torch.float16 if major == 7 else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
