"""The batch-ceiling probe's step (`_fits`): a real training step at the asked batch, run with cuDNN's
heuristics (benchmark off: timing every algorithm for every new shape makes the probe several times slower,
for the same peak memory; benchmarks/RESULTS.md) and the run's own benchmark setting restored afterwards,
whatever happened. Its GPU behaviour (the ceiling is the real out-of-memory boundary) is measured by
`bash benchmarks/device.sh ceiling` (benchmarks/RESULTS.md)."""

from __future__ import annotations

import pytest
import torch

from training import batch_probe
from training.config import RunConfig
from training.runtime import resolve_runtime


def _cfg() -> RunConfig:
    return RunConfig.model_validate({"data": {"source": "digits", "image_size": 16},
                                     "model": {"name": "test_resnet"}, "train": {"device": "cpu"}})


@pytest.fixture(params=[True, False], ids=["benchmark-on", "benchmark-off"])
def before(request, monkeypatch) -> bool:
    """The run's cudnn.benchmark setting before the probe (resolve_runtime turns it on for CUDA runs)."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", request.param)
    return request.param


@pytest.fixture
def seen(before, monkeypatch):
    """The cudnn.benchmark flag in force during each forward pass of the probed model; CUDA-only calls made
    harmless so the step itself runs on the CPU."""
    flags: list[bool] = []
    build = batch_probe.build_model

    def spy_build(cfg, n):
        m = build(cfg, n)
        m.register_forward_pre_hook(lambda *_: flags.append(torch.backends.cudnn.benchmark))
        return m

    monkeypatch.setattr(batch_probe, "build_model", spy_build)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    return flags


def test_the_step_trains_with_benchmark_off_and_restores_it(seen, before):
    cfg = _cfg()
    assert batch_probe._fits(cfg, resolve_runtime(cfg.train), num_outputs=10, batch=4)
    assert seen == [False, False]  # two real steps (the second holds optimizer state), both with heuristics
    assert torch.backends.cudnn.benchmark is before


def test_the_step_runs_at_the_configured_height_and_width(monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)  # the step itself runs on the CPU
    shapes: list[tuple[int, ...]] = []
    build = batch_probe.build_model

    def spy_build(cfg, n):
        m = build(cfg, n)
        m.register_forward_pre_hook(lambda _, args: shapes.append(tuple(args[0].shape)))
        return m

    monkeypatch.setattr(batch_probe, "build_model", spy_build)
    cfg = RunConfig.model_validate({"data": {"source": "digits", "image_size": [24, 16]},
                                    "model": {"name": "test_resnet"}, "train": {"device": "cpu"}})
    assert batch_probe._fits(cfg, resolve_runtime(cfg.train), num_outputs=10, batch=4)
    assert shapes == [(4, 3, 24, 16)] * 2  # data.image_size [H, W]: a portrait batch, not a square


def test_out_of_memory_is_a_no_and_still_restores_the_flag(seen, before, monkeypatch):
    def oom(*_):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    build = batch_probe.build_model

    def failing(cfg, n):
        m = build(cfg, n)
        m.register_forward_pre_hook(oom)
        return m

    monkeypatch.setattr(batch_probe, "build_model", failing)
    cfg = _cfg()
    assert batch_probe._fits(cfg, resolve_runtime(cfg.train), num_outputs=10, batch=4) is False
    assert seen == [False]
    assert torch.backends.cudnn.benchmark is before


def test_any_other_error_propagates_and_still_restores_the_flag(seen, before, monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    cfg = _cfg()
    with pytest.raises(RuntimeError, match="boom"):
        batch_probe._fits(cfg, resolve_runtime(cfg.train), num_outputs=10, batch=4)
    assert torch.backends.cudnn.benchmark is before
