"""Learning-rate schedules as factor(epoch_float) functions, stepped every batch, with linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch

from .config import SchedulerConfig
from .registry import Registry

__all__ = ["SCHEDULES", "build_scheduler", "lr_factor"]

SCHEDULES: Registry = Registry("scheduler")
Factor = Callable[[float], float]


@SCHEDULES.register("none")
def _none(cfg: SchedulerConfig, epochs: int, e: float) -> float:
    return 1.0


@SCHEDULES.register("step")
def _step(cfg: SchedulerConfig, epochs: int, e: float) -> float:
    return cfg.gamma ** math.floor(e / cfg.step_size)


@SCHEDULES.register("multistep")
def _multistep(cfg: SchedulerConfig, epochs: int, e: float) -> float:
    return cfg.gamma ** sum(e >= m for m in cfg.milestones)


@SCHEDULES.register("cosine")
def _cosine(cfg: SchedulerConfig, epochs: int, e: float) -> float:
    span = max(epochs - cfg.warmup_epochs, 1e-8)
    t = min(max(e - cfg.warmup_epochs, 0.0) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def lr_factor(cfg: SchedulerConfig, epochs: int, e: float) -> float:
    f = SCHEDULES.get(cfg.name)(cfg, epochs, e)
    if cfg.warmup_epochs > 0 and e < cfg.warmup_epochs:
        f *= (e + 1e-3) / cfg.warmup_epochs
    return f


def build_scheduler(opt: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per batch; its state is just the step count, so it checkpoints cleanly."""
    fn = partial(_by_step, cfg, epochs, max(steps_per_epoch, 1))
    return torch.optim.lr_scheduler.LambdaLR(opt, fn)


def _by_step(cfg: SchedulerConfig, epochs: int, steps_per_epoch: int, step: int) -> float:
    return lr_factor(cfg, epochs, step / steps_per_epoch)
