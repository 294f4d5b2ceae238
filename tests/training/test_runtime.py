"""Where and how a run computes, as `train.device` / `precision` / `channels_last` resolve on each machine.
The GPU cases fake what torch reports about the GPU (no CUDA call is made for these settings)."""

from __future__ import annotations

import pytest
import torch

from training import ConfigError, runtime
from training.config import LoopConfig


@pytest.fixture(autouse=True)
def _backend_flags():
    """What resolving a GPU run sets globally, put back after each test (the TF32 switches first: setting them
    rewrites the newer fp32_precision settings, which are restored after)."""
    flags = [(torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "allow_tf32"),
             (torch.backends.cuda.matmul, "allow_tf32")]
    modes = [(m, "fp32_precision") for m in (torch.backends, torch.backends.cuda.matmul, torch.backends.cudnn,
                                             torch.backends.cudnn.conv, torch.backends.cudnn.rnn)
             if hasattr(m, "fp32_precision")]
    saved = [getattr(m, n) for m, n in flags + modes]
    yield
    for (m, n), v in zip(flags + modes, saved):
        setattr(m, n, v)
    assert [getattr(m, n) for m, n in flags + modes] == saved


def _resolve(monkeypatch, *, gpu: bool, capability: tuple[int, int] = (9, 0), **train) -> runtime.Runtime:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    return runtime.resolve_runtime(LoopConfig.model_validate(train))


@pytest.mark.parametrize("capability, dtype, batches", [
    ((9, 0), torch.bfloat16, torch.float16),   # H100
    ((8, 6), torch.bfloat16, torch.float16),   # RTX 30xx / A10
    ((7, 5), torch.float16, torch.float16),    # T4: bf16 only emulated, fp16 on its tensor cores
    ((7, 0), torch.float16, torch.float16),    # V100
    ((6, 1), None, torch.float32),             # GTX 10xx: slow fp16, so fp32
], ids=["h100", "ampere", "t4", "v100", "pascal"])
def test_auto_precision_is_what_the_gpu_computes_well(monkeypatch, capability, dtype, batches):
    rt = _resolve(monkeypatch, gpu=True, capability=capability)
    assert rt.device.type == "cuda" and rt.dtype == dtype and rt.channels_last
    assert rt.input_dtype == batches  # the loaders' batches: fp16 under autocast


def test_cpu_trains_in_fp32_with_fp32_batches(monkeypatch):
    rt = _resolve(monkeypatch, gpu=False)
    assert rt.device.type == "cpu" and rt.dtype is None and not rt.channels_last and rt.input_dtype == torch.float32
    assert _resolve(monkeypatch, gpu=False, precision="bf16").input_dtype == torch.float32  # CPU kernels: fp32 in
    with pytest.raises(ConfigError, match="fp16"):
        _resolve(monkeypatch, gpu=False, precision="fp16")


def test_explicit_precision_wins_over_auto(monkeypatch):
    assert _resolve(monkeypatch, gpu=True, capability=(7, 5), precision="bf16").dtype == torch.bfloat16
    rt = _resolve(monkeypatch, gpu=True, precision="fp32")
    assert rt.dtype is None and rt.input_dtype == torch.float32


@pytest.mark.parametrize("gpus,device,expected", [
    (0, "auto", "cpu"), (0, "cpu", "cpu"), (0, "cuda", None),
    (1, "auto", "cuda:0 Fake GPU 0"), (2, "cuda:1", "cuda:1 Fake GPU 1"), (2, "cpu", "cpu"),
    (1, "cuda:3", None),
])
def test_a_run_names_the_device_it_computes_on_and_never_raises_for_one_it_lacks(monkeypatch, gpus, device,
                                                                               expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Fake GPU {i}")
    described = runtime.describe_device(LoopConfig(device=device))
    assert (described and described.name) == expected
    assert described is None or described.kind == ("CPU" if expected == "cpu" else "GPU")
