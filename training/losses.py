"""Loss registry: cross-entropy (with label smoothing), focal, and multi-label BCE; and the sum of one of them
per head of a factorized model (:class:`FactorizedLoss`).

Every loss takes hard targets (class indices; multi-hot rows for multi-label) and soft ones (float rows of class
probabilities, from mixup / CutMix: training/mix.py); label smoothing applies to both."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .registry import Registry

__all__ = ["LOSSES", "build_loss", "CrossEntropy", "soft_cross_entropy",
           "FocalLoss", "FactorizedLoss", "build_factorized_loss", "check_loss_fits"]

LOSSES: Registry = Registry("loss")
MULTILABEL_LOSSES = ("bce", "soft_margin")


class FocalLoss(nn.Module):
    """Lin et al. 2017: (1 - p_t)^gamma scaled cross-entropy; gamma=0 is plain cross-entropy."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        logp = F.log_softmax(logits, dim=1)
        if target.is_floating_point():
            return soft_cross_entropy(logp, target, self.weight, self.label_smoothing, self.gamma)
        ce = F.nll_loss(logp, target, weight=self.weight, reduction="none")
        if self.label_smoothing:  # the uniform part weighted per class, as F.cross_entropy does
            smooth = -(logp * self.weight).mean(dim=1) if self.weight is not None else -logp.mean(dim=1)
            ce = (1 - self.label_smoothing) * ce + self.label_smoothing * smooth
        loss = ce if self.gamma == 0 else _focal_weight(logits, target, self.gamma) * ce
        if self.weight is not None:  # normalised like weighted cross-entropy, so gamma=0 equals it exactly
            return loss.sum() / self.weight[target].sum()
        return loss.mean()



def soft_cross_entropy(logp: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                       label_smoothing: float, gamma: float = 0.0) -> torch.Tensor:
    """Soft targets (rows of class probabilities): each class's cross-entropy term, weighted by its class weight
    and by its own (1 - p)^gamma, normalised by the targets' weight before smoothing, as weighted cross-entropy
    is. For a one-hot row this is the hard-target loss exactly: ce with any smoothing, and focal without
    smoothing (with it, the hard focal loss weighs the whole term by the true class's (1 - p)^gamma, this one each
    class's term by its own)."""
    smoothed = target * (1 - label_smoothing) + label_smoothing / logp.shape[1] if label_smoothing else target
    per_class = -smoothed * logp
    if gamma:  # (1 - p)^gamma, with 1 - p kept >= 1e-7: a finite gradient for gamma < 1
        per_class = per_class * torch.exp(gamma * torch.log(-torch.expm1(logp.clamp(max=-1e-7))))
    if weight is not None:
        return (per_class * weight).sum() / (target * weight).sum()
    return per_class.sum(dim=1).mean()


class CrossEntropy(nn.CrossEntropyLoss):
    """torch's cross-entropy; soft targets normalised by their class weights, as hard ones are (torch's own
    soft-target path does not divide by them, so a mixed batch would weigh more than an unmixed one)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.is_floating_point() and self.weight is not None:
            return soft_cross_entropy(F.log_softmax(logits.float(), dim=1), target, self.weight, self.label_smoothing)
        return super().forward(logits, target)


def _focal_weight(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - p_t)^gamma with a finite gradient everywhere. Written as 1 - exp(log p_t), the derivative of x^gamma
    at x = 0 is infinite for gamma < 1, and a saturated fp32 logit gives exactly p_t = 1: NaN gradients. Here
    1 - p_t is the other classes' probability mass, log(1 - p_t) = logsumexp(others) - logsumexp(all), whose
    gradient is a difference of two softmaxes (bounded); it is also exact where 1 - exp(log p_t) cancels."""
    others = logits.scatter(1, target[:, None], float("-inf"))
    log_rest = torch.logsumexp(others, dim=1) - torch.logsumexp(logits, dim=1)
    return torch.exp(gamma * log_rest)


@LOSSES.register("ce")
def _ce(gamma: float, weight: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    return CrossEntropy(weight=weight, label_smoothing=label_smoothing)


@LOSSES.register("focal")
def _focal(gamma: float, weight: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    return FocalLoss(gamma, weight, label_smoothing)


@LOSSES.register("bce")
def _bce(gamma: float, weight: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    # weight per label acts as pos_weight: upweights the rare positives of each label
    return nn.BCEWithLogitsLoss(pos_weight=weight)


@LOSSES.register("soft_margin")
def _soft_margin(gamma: float, weight: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    return nn.MultiLabelSoftMarginLoss(weight=weight)


def build_loss(name: str, *, gamma: float, weight: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    return LOSSES.get(name)(gamma=gamma, weight=weight, label_smoothing=label_smoothing)


class FactorizedLoss(nn.Module):
    """The sum of one loss per factor, for a model whose outputs are the joint log-probabilities of a product
    distribution over ``shape`` (models.FactorizedHead), flattened row-major like the targets.

    Each factor's log-probabilities are the joint's marginal: logsumexp over the other axes. For a product
    distribution that is exactly the head's own log-softmax (the other factors sum to 1), and its gradient
    reaches only that head; being log-probabilities they are also valid logits for ce and focal."""

    def __init__(self, shape: tuple[int, ...], losses: list[nn.Module]) -> None:
        super().__init__()
        if len(shape) != len(losses):
            raise ValueError(f"{len(losses)} losses for {len(shape)} factors")
        self.shape = tuple(shape)
        self.losses = nn.ModuleList(losses)
        self.strides = tuple(math.prod(self.shape[i + 1:]) for i in range(len(self.shape)))

    def forward(self, joint_logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target``: joint class indices, or soft rows over the joint classes (each head then gets its
        marginal: the row summed over the other heads)."""
        grid = joint_logp.float().view(-1, *self.shape)
        soft = target.float().view(-1, *self.shape) if target.is_floating_point() else None
        total = grid.new_zeros(())
        for i, (k, stride, loss_fn) in enumerate(zip(self.shape, self.strides, self.losses)):
            others = tuple(1 + j for j in range(len(self.shape)) if j != i)
            marginal = torch.logsumexp(grid, dim=others) if others else grid
            head_target = torch.div(target, stride, rounding_mode="floor") % k if soft is None else \
                (soft.sum(dim=others) if others else soft)
            total = total + loss_fn(marginal, head_target)
        return total


def build_factorized_loss(name: str, shape: tuple[int, ...], *, gamma: float, weights: list[torch.Tensor | None],
                          label_smoothing: float) -> FactorizedLoss:
    """One ``name`` loss per factor, each with its own class weights (``weights[i]``: factor i's, or None)."""
    return FactorizedLoss(shape, [build_loss(name, gamma=gamma, weight=w, label_smoothing=label_smoothing)
                                  for w in weights])


def check_loss_fits(name: str, multilabel: bool) -> None:
    if (name in MULTILABEL_LOSSES) != multilabel:
        kind = "multi-label" if multilabel else "single-label"
        raise ConfigError(f"loss.name = '{name}' does not fit {kind} data; "
                          f"use {'bce or soft_margin' if multilabel else 'ce or focal'}")
