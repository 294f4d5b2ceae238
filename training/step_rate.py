"""Training steps per second of a config's model on synthetic data: what one of K trials sharing a GPU gets.

A full step (forward, backward, AdamW) at the run's image size, batch, precision and memory format, timed
after a warm-up; the caller runs K of these at once (search/workers/_trials_per_gpu.py) and adds them up.
"""

from __future__ import annotations

import time

import torch

from .config import RunConfig
from .models import build_model
from .runtime import Runtime

__all__ = ["StepRate", "prepare_steps", "time_steps"]


class StepRate:
    """A model, optimizer and batch ready to step; :meth:`run` times ``steps`` steps and returns images/s."""

    def __init__(self, cfg: RunConfig, rt: Runtime, batch: int, num_outputs: int) -> None:
        self.rt, self.batch = rt, batch
        fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
        self.model = build_model(cfg.model.model_copy(update={"pretrained": False}), num_outputs).to(rt.device)
        self.model = self.model.to(memory_format=fmt).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-6)
        h, w = cfg.data.hw
        self.x = torch.randn(batch, 3, h, w, device=rt.device, dtype=rt.input_dtype).contiguous(memory_format=fmt)
        self.y = torch.randint(0, num_outputs, (batch,), device=rt.device)

    def _step(self) -> None:
        with self.rt.autocast():
            loss = torch.nn.functional.cross_entropy(self.model(self.x).float(), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def _sync(self) -> None:
        if self.rt.device.type == "cuda":
            torch.cuda.synchronize(self.rt.device)

    def run(self, steps: int) -> float:
        self._sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            self._step()
        self._sync()
        return steps * self.batch / (time.perf_counter() - t0)

    def run_for(self, seconds: float, chunk: int = 5) -> float:
        """Images/s over a wall-clock window (K processes measured over the same window add up): steps in chunks,
        each synchronised, until ``seconds`` have passed."""
        self._sync()
        t0, images = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            for _ in range(chunk):
                self._step()
            self._sync()
            images += chunk * self.batch
        return images / (time.perf_counter() - t0)


def prepare_steps(cfg: RunConfig, rt: Runtime, batch: int, num_outputs: int, warmup: int = 3) -> StepRate:
    rate = StepRate(cfg, rt, batch, num_outputs)
    rate.run(warmup)  # cuDNN autotuning, allocator growth, lazy init: not part of the rate
    return rate


def time_steps(cfg: RunConfig, rt: Runtime, batch: int, num_outputs: int, steps: int, warmup: int = 3) -> float:
    return prepare_steps(cfg, rt, batch, num_outputs, warmup).run(steps)
