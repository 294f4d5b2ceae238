"""The parts a run trains with, built from its config and its data: the model (in its memory format), the loss
(with class weights from the train side's counts; one loss per head for the factorized head), the optimizer over
its parameter groups (head and backbone lr, no weight decay on norms and biases), the per-batch schedule, the fp16
loss scaler, the step function (``torch.compile`` when asked), and the recipes: mixup / CutMix of the batches
(training/mix.py), an EMA of the weights (training/ema.py), gradient accumulation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import MASK_FACTORS, RunConfig
from .ema import Ema, build_ema
from .errors import ConfigError
from .losses import build_factorized_loss, build_loss
from .mix import BatchMix, build_mix
from .models import build_model
from .optim import build_optimizer, param_groups
from .runtime import Runtime
from .schedules import build_scheduler

__all__ = ["Parts", "build_parts"]


@dataclass
class Parts:
    model: nn.Module
    step_fn: nn.Module            # the model, or its compiled form: what trains and validates
    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    mix: BatchMix | None = None    # mixes each training batch (augment.mix)
    ema: Ema | None = None         # the weights' average, what validates and is saved (train.ema)
    accumulate: int = 1            # batches per optimizer step (train.accumulate)

    @property
    def evaluated(self) -> nn.Module:
        """What validates and what best.pt holds: the EMA when there is one, else the step function."""
        return self.ema.model if self.ema is not None else self.step_fn

    @property
    def kept(self) -> nn.Module:
        """What best.pt holds (uncompiled): the EMA when there is one, else the model."""
        return self.ema.model if self.ema is not None else self.model


def build_parts(cfg: RunConfig, rt: Runtime, data) -> Parts:
    """``data``: the prepared data (training/data/prepare.py), whose train side sizes the class weights and the
    schedule's steps per epoch."""
    s = data.samples
    model = build_model(cfg.model, len(s.classes)).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = _loss(cfg, s, data.train_index).to(rt.device)
    o, bs, acc = cfg.optimizer, cfg.train.batch_size, cfg.train.accumulate
    lr_scale = bs * acc / 256 if o.scale_lr_with_batch else 1.0  # the effective batch
    groups = param_groups(model, model.head, o.lr * lr_scale, (o.backbone_lr or o.lr) * lr_scale, o.weight_decay)
    opt = build_optimizer(o.name, groups, momentum=o.momentum, nesterov=o.nesterov, betas=o.betas)
    sched = build_scheduler(opt, cfg.scheduler, cfg.train.epochs, -(-len(data.train) // acc))  # optimizer steps
    scaler = torch.amp.GradScaler(rt.device.type) if rt.dtype == torch.float16 else None
    step_fn = torch.compile(model) if cfg.train.compile else model
    mix = build_mix(cfg.augment.mix, len(s.classes), s.multilabel, cfg.seed)
    return Parts(model, step_fn, loss_fn, opt, sched, scaler, mix, build_ema(model, cfg.train.ema), acc)


def _loss(cfg: RunConfig, s, train_index: np.ndarray) -> nn.Module:
    counts = np.bincount(s.targets[train_index], minlength=len(s.classes)) if not s.multilabel \
        else s.targets[train_index].sum(axis=0)
    if cfg.model.head == "factorized":  # the sum of one configured loss per head
        return build_factorized_loss(cfg.loss.name, tuple(MASK_FACTORS.values()), gamma=cfg.loss.gamma,
                                     label_smoothing=cfg.loss.label_smoothing,
                                     weights=_factor_weights(cfg, counts, len(train_index)))
    weight = _class_weights(cfg, counts, len(train_index), s.multilabel)
    return build_loss(cfg.loss.name, gamma=cfg.loss.gamma, label_smoothing=cfg.loss.label_smoothing, weight=weight)


def _class_weights(cfg: RunConfig, counts: np.ndarray, n: int, multilabel: bool) -> torch.Tensor | None:
    return _weights(cfg.loss.class_weights, counts, n, multilabel)


def _factor_weights(cfg: RunConfig, counts: np.ndarray, n: int) -> list[torch.Tensor | None]:
    """The factorized head's class weights, one tensor per head: balanced from that head's own train counts (the
    18 classes' counts summed over the other heads), a list split into the heads' parts in MASK_FACTORS order."""
    shape = tuple(MASK_FACTORS.values())
    grid, cw, start, out = counts.reshape(shape), cfg.loss.class_weights, 0, []
    for i, k in enumerate(shape):
        head_counts = grid.sum(axis=tuple(j for j in range(len(shape)) if j != i))
        out.append(_weights(cw[start:start + k] if isinstance(cw, list) else cw, head_counts, n, False))
        start += k
    return out


def _weights(cw: str | list[float] | None, counts: np.ndarray, n: int, multilabel: bool) -> torch.Tensor | None:
    if cw is None:
        return None
    if cw == "balanced":
        w = (n - counts) / np.maximum(counts, 1) if multilabel else n / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(w, dtype=torch.float32)
    if len(cw) != len(counts):
        raise ConfigError(f"loss.class_weights has {len(cw)} values but the data has {len(counts)} classes")
    return torch.tensor(cw, dtype=torch.float32)
