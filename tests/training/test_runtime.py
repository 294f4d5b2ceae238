"""Where and how a run computes, as `train.device` / `precision` / `channels_last` resolve on each machine.
The GPU cases fake what torch reports about the GPU (no CUDA call is made for these settings)."""

from __future__ import annotations

import pytest
import torch

from training import ConfigError, runtime
from training.config import LoopConfig


@pytest.fixture(autouse=True)
def _backend_flags():
    """What resolving a GPU run sets globally, put back after each test."""
    flags = [(torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "allow_tf32"),
             (torch.backends.cuda.matmul, "allow_tf32")]
    saved = [getattr(m, n) for m, n in flags]
    yield
    for (m, n), v in zip(flags, saved):
        setattr(m, n, v)


def _resolve(monkeypatch, *, gpu: bool, native_bf16: bool = True, **train) -> runtime.Runtime:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(runtime, "_native_bf16", lambda: native_bf16)
    return runtime.resolve_runtime(LoopConfig.model_validate(train))


@pytest.mark.parametrize("native_bf16, dtype", [(True, torch.bfloat16), (False, torch.float16)],
                         ids=["ampere-or-newer", "t4-v100"])
def test_auto_precision_is_what_the_gpu_computes_natively(monkeypatch, native_bf16, dtype):
    rt = _resolve(monkeypatch, gpu=True, native_bf16=native_bf16)
    assert rt.device.type == "cuda" and rt.dtype == dtype and rt.channels_last
    assert rt.input_dtype == torch.float16  # the loaders' batches under autocast


def test_cpu_trains_in_fp32_with_fp32_batches(monkeypatch):
    rt = _resolve(monkeypatch, gpu=False)
    assert rt.device.type == "cpu" and rt.dtype is None and not rt.channels_last and rt.input_dtype == torch.float32
    assert _resolve(monkeypatch, gpu=False, precision="bf16").input_dtype == torch.float32  # CPU kernels: fp32 in
    with pytest.raises(ConfigError, match="fp16"):
        _resolve(monkeypatch, gpu=False, precision="fp16")


def test_explicit_precision_wins_over_auto(monkeypatch):
    assert _resolve(monkeypatch, gpu=True, native_bf16=False, precision="bf16").dtype == torch.bfloat16
    rt = _resolve(monkeypatch, gpu=True, precision="fp32")
    assert rt.dtype is None and rt.input_dtype == torch.float32
