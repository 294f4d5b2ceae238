"""Focal loss stays finite at saturated logits for every gamma, and a non-finite epoch says what went
non-finite (loss or gradients) and at which step, blaming the lr only when the weights diverged."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training import NonFiniteLoss, fit, parse_config
from training.loop import NonFinite, train_one_epoch
from training.losses import FocalLoss
from training.runtime import Runtime

GAMMAS = [0.0, 0.1, 0.2, 0.5, 0.8, 0.999, 1.0, 1.5, 2.0, 5.0, 10.0]
WEIGHT = torch.tensor([0.5, 1.0, 2.0, 4.0])


def _saturated() -> tuple[torch.Tensor, torch.Tensor]:
    """Rows a confident model gives: the target at +40 (p_t is exactly 1 in fp32), at -40 (hopeless), and ties."""
    x = torch.full((6, 4), -40.0)
    x[0, 0] = x[1, 1] = x[2, 3] = 40.0  # right and certain
    x[3, 2] = 40.0                      # target 0: certain and wrong
    x[4] = torch.tensor([40.0, 40.0, -40.0, -40.0])
    x[5] = 0.0
    return x, torch.tensor([0, 1, 3, 0, 1, 2])


def _reference(x: torch.Tensor, y: torch.Tensor, gamma: float, weight, smoothing: float) -> torch.Tensor:
    """The formula as written before: (1 - exp(log p_t))^gamma * ce (its value is right; its gradient is not)."""
    logp = F.log_softmax(x.float(), dim=1)
    ce = F.nll_loss(logp, y, weight=weight, reduction="none")
    if smoothing:
        smooth = -(logp * weight).mean(dim=1) if weight is not None else -logp.mean(dim=1)
        ce = (1 - smoothing) * ce + smoothing * smooth
    pt = logp.gather(1, y[:, None]).squeeze(1).exp()
    loss = (1 - pt) ** gamma * ce
    return loss.sum() / weight[y].sum() if weight is not None else loss.mean()


@pytest.mark.parametrize("weight", [None, WEIGHT], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_focal_gradient_is_finite_at_saturated_logits(gamma, smoothing, weight):
    x, y = _saturated()
    x.requires_grad_()
    loss = FocalLoss(gamma, weight, smoothing)(x, y)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(x.grad).all(), x.grad
    # The value is the formula's wherever 1 - exp(log p_t) does not round to 0 (rows 3-5). Where it does (rows
    # 0-2), the other classes' true mass, 3e-35, is kept instead of 0: (3e-35)^gamma x smoothed ce is below 1e-9
    # for gamma >= 0.3, but for gamma 0.1 it is 3e-4 of a row's smoothed ce (the old value jumped from ce at
    # gamma 0 to none of it at gamma 0.01).
    x = x.detach()
    hard = FocalLoss(gamma, weight, smoothing)(x[3:], y[3:])
    assert float(hard) == pytest.approx(float(_reference(x[3:], y[3:], gamma, weight, smoothing)), rel=1e-6)
    ref = float(_reference(x, y, gamma, weight, smoothing))
    assert loss.item() == pytest.approx(ref, rel=1e-6 if gamma == 0 or gamma >= 0.3 else 1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("gamma", [0.2, 0.5, 0.8, 2.0])
def test_focal_gradient_is_finite_under_autocast(gamma, dtype):
    """A half-precision model hands the loss half-precision logits; under CPU autocast as on CUDA."""
    x, y = _saturated()
    x = x.to(dtype).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        loss = FocalLoss(gamma, WEIGHT, 0.1)(x, y)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("gamma", [0.3, 0.8, 2.0, 4.0])
def test_focal_value_and_gradient_match_the_formula_where_it_is_finite(gamma):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 5, generator=g) * 4, torch.randint(0, 5, (64,), generator=g)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    new, ref = FocalLoss(gamma, None, 0.05)(a, y), _reference(b, y, gamma, None, 0.05)
    new.backward()
    ref.backward()
    assert float(new) == pytest.approx(float(ref), rel=1e-5)
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def _digits(loss: dict, lr: float) -> dict:
    return parse_config({"seed": 0, "data": {"source": "digits", "image_size": 16, "limit": 400},
                         "model": {"name": "test_resnet"}, "loss": loss, "optimizer": {"name": "adamw", "lr": lr},
                         "train": {"epochs": 6, "batch_size": 32, "device": "cpu"}})


def test_focal_gamma_below_one_trains_at_a_high_lr_where_ce_does(tmp_path):
    """At lr 0.03 the model grows confident within 4 epochs: the old focal loss died there with NaN gradients."""
    ce = fit(_digits({"name": "ce"}, 0.03), tmp_path / "ce")
    focal = fit(_digits({"name": "focal", "gamma": 0.5}, 0.03), tmp_path / "focal")
    for r in (ce, focal):
        assert r["epochs_run"] == 6 and all(math.isfinite(h["train_loss"]) for h in r["history"])
        assert r["macro_f1"] > 0.3  # 10 classes: chance is about 0.1
        assert r["macro_f1"] > r["history"][0]["macro_f1"]


class _NanGradLoss(torch.nn.Module):
    """A finite loss whose gradient is NaN: |d|^0.5 at d = 0, as (1 - p_t)^gamma was at p_t = 1."""

    def forward(self, logits, target):
        d = logits - logits.detach()
        return F.cross_entropy(logits, target) + d.abs().pow(0.5).sum()


class _NanAtCall(torch.nn.Module):
    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, logits, target):
        self.calls += 1
        loss = F.cross_entropy(logits, target)
        return loss * float("nan") if self.calls >= self.at else loss


def _epoch(loss_fn, n_batches=5):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4,))) for _ in range(n_batches)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return train_one_epoch(model, batches, loss_fn, opt, sched, Runtime(torch.device("cpu"), None, False), None)


def test_train_one_epoch_names_what_went_non_finite_first_and_where():
    assert _epoch(torch.nn.CrossEntropyLoss())[2] is None
    assert _epoch(_NanGradLoss())[2] == NonFinite("gradients", 1, 5)
    assert _epoch(_NanAtCall(3))[2] == NonFinite("loss", 3, 5)


def test_nan_gradients_do_not_blame_the_lr(tmp_path, monkeypatch):
    import training.parts as parts

    monkeypatch.setattr(parts, "build_loss", lambda *a, **k: _NanGradLoss())
    with pytest.raises(NonFiniteLoss) as ei:
        fit(_digits({"name": "ce"}, 1e-3), tmp_path)
    msg = str(ei.value)
    assert "\n" not in msg and "gradients became non-finite at epoch 1, step 1/10" in msg, msg
    assert "lr" not in msg and "loss was still finite" in msg


def test_a_diverging_loss_names_its_step_and_the_lr():
    bad = _epoch(_NanAtCall(4))[2]
    msg = bad.message(epoch=2, precision="bf16", loss_name="ce", reduced=True)
    assert msg.startswith("the training loss became non-finite at epoch 2, step 4/5 (precision bf16)")
    assert "lower optimizer.lr or set train.precision: fp32" in msg
