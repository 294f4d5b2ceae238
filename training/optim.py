"""Optimizer registry, with an optional separate learning rate for the backbone (seed 004)."""

from __future__ import annotations

import torch
from torch import nn

from .registry import Registry

__all__ = ["OPTIMIZERS", "build_optimizer", "param_groups"]

OPTIMIZERS: Registry = Registry("optimizer")


def param_groups(model: nn.Module, head: nn.Module, lr: float, backbone_lr: float, weight_decay: float) -> list[dict]:
    """Backbone and head groups; norm and bias parameters get no weight decay."""
    head_ids = {id(p) for p in head.parameters()}
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        part = "head" if id(p) in head_ids else "backbone"
        groups.setdefault((part, p.ndim <= 1), []).append(p)
    return [
        {"params": ps, "lr": lr if part == "head" else backbone_lr, "weight_decay": 0.0 if no_decay else weight_decay}
        for (part, no_decay), ps in sorted(groups.items())
    ]


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], *, momentum: float, nesterov: bool, betas: tuple[float, float]) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, momentum=momentum, nesterov=nesterov and momentum > 0)


@OPTIMIZERS.register("adam")
def _adam(groups: list[dict], *, momentum: float, nesterov: bool, betas: tuple[float, float]) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, betas=betas)


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], *, momentum: float, nesterov: bool, betas: tuple[float, float]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, betas=betas)


def build_optimizer(name: str, groups: list[dict], *, momentum: float, nesterov: bool,
                    betas: tuple[float, float]) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(name)(groups, momentum=momentum, nesterov=nesterov, betas=betas)
