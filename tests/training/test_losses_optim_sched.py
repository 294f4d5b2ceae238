"""Losses, optimizers (incl. a separate backbone lr and lr scaling with batch), schedules with warm-up,
and the weighted sampler: as functions, and wired through fit."""

from __future__ import annotations

import math
from typing import get_args

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import imagegen
from training import ConfigError, fit, parse_config
from training.checkpoint import load_checkpoint
from training.config import LossName, ModelConfig, OptimizerName, SchedulerConfig, SchedulerName
from training.data.prepare import prepare_data
from training.losses import LOSSES, FocalLoss, build_loss
from training.models import build_model
from training.optim import OPTIMIZERS, build_optimizer, param_groups
from training.parts import _class_weights
from training.schedules import SCHEDULES, build_scheduler, lr_factor


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 imbalanced classes (12/8/8/4) at 16px, shared by the short fits of this module."""
    root = tmp_path_factory.mktemp("imgs")
    imgs, classes = imagegen.make_imagefolder(root / "data", n_classes=4, n_per_class=[12, 8, 8, 4], size=16)
    return {"source": "imagefolder", "root": str(imgs), "cache_dir": str(root / "cache")}


def _fit(folder, tmp_path, **sections):
    cfg = parse_config(imagegen.base_config(folder, **sections))
    return cfg, fit(cfg, tmp_path / "out")


def _logits(n=32, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.randint(0, c, (n,), generator=g)


# ---------------------------------------------------------------- losses as functions

def test_each_config_name_literal_holds_its_registrys_names():
    """config.py checks loss, optimizer and scheduler names against Literals (reading a config imports no
    torch); each must name exactly what its registry holds."""
    for names, registry in ((LossName, LOSSES), (OptimizerName, OPTIMIZERS), (SchedulerName, SCHEDULES)):
        assert sorted(get_args(names)) == registry.names(), registry.kind


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_focal_gamma_0_equals_cross_entropy(label_smoothing):
    x, y = _logits()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ce = build_loss("ce", gamma=0.0, weight=None, label_smoothing=label_smoothing)(x1, y)
    fo = build_loss("focal", gamma=0.0, weight=None, label_smoothing=label_smoothing)(x2, y)
    assert fo.item() == pytest.approx(ce.item(), rel=1e-6)
    assert ce.item() == pytest.approx(F.cross_entropy(x, y, label_smoothing=label_smoothing).item(), rel=1e-6)
    ce.backward()
    fo.backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-7)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_focal_gamma_0_equals_weighted_cross_entropy(label_smoothing):
    """Weights and smoothing together (the mask task's setting): still exactly weighted, smoothed CE, and the
    loss does not change when every weight is scaled."""
    x, y = _logits()
    w = torch.tensor([0.5, 1.0, 2.0, 4.0, 1.5])
    ce = build_loss("ce", gamma=0.0, weight=w, label_smoothing=label_smoothing)(x, y)
    fo = build_loss("focal", gamma=0.0, weight=w, label_smoothing=label_smoothing)(x, y)
    fo10 = build_loss("focal", gamma=0.0, weight=10 * w, label_smoothing=label_smoothing)(x, y)
    assert float(fo) == pytest.approx(float(ce), rel=1e-5)
    assert float(fo10) == pytest.approx(float(fo), rel=1e-5)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_loss_formula(gamma):
    x, y = _logits()
    logp = F.log_softmax(x, 1)
    pt = logp.gather(1, y[:, None]).squeeze(1).exp()
    want = ((1 - pt) ** gamma * -logp.gather(1, y[:, None]).squeeze(1)).mean()
    got = FocalLoss(gamma)(x, y)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert float(got) < float(F.cross_entropy(x, y))


def test_focal_downweights_easy_examples():
    easy = torch.tensor([[8.0, 0.0, 0.0]])
    hard = torch.tensor([[0.0, 0.5, 0.0]])
    y = torch.tensor([0])
    f, ce = FocalLoss(2.0), torch.nn.CrossEntropyLoss()
    # the focal/ce ratio is (1 - p_t)^2: tiny for an easy example, large for a hard one
    assert float(f(easy, y)) / float(ce(easy, y)) < 1e-5
    assert float(f(hard, y)) / float(ce(hard, y)) > 0.4


def test_label_smoothing_changes_ce_as_defined():
    x, y = _logits()
    eps = 0.2
    got = build_loss("ce", gamma=0.0, weight=None, label_smoothing=eps)(x, y)
    logp = F.log_softmax(x, 1)
    want = ((1 - eps) * -logp.gather(1, y[:, None]).squeeze(1) + eps * -logp.mean(1)).mean()
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_multilabel_losses():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, generator=g), (torch.rand(16, 3, generator=g) < 0.5).float()
    bce = build_loss("bce", gamma=0.0, weight=None, label_smoothing=0.0)
    sm = build_loss("soft_margin", gamma=0.0, weight=None, label_smoothing=0.0)
    assert float(bce(x, y)) == pytest.approx(float(F.binary_cross_entropy_with_logits(x, y)), rel=1e-6)
    assert float(sm(x, y)) == pytest.approx(float(F.multilabel_soft_margin_loss(x, y)), rel=1e-6)
    pw = torch.tensor([1.0, 3.0, 0.5])
    wb = build_loss("bce", gamma=0.0, weight=pw, label_smoothing=0.0)
    assert float(wb(x, y)) == pytest.approx(float(F.binary_cross_entropy_with_logits(x, y, pos_weight=pw)), rel=1e-6)


def test_balanced_class_weights():
    cfg = parse_config({"loss": {"name": "ce", "class_weights": "balanced"}})
    w = _class_weights(cfg, np.array([30, 10, 20]), 60, multilabel=False)
    assert torch.allclose(w, torch.tensor([60 / 90, 60 / 30, 60 / 60]))
    # multi-label: negatives / positives per label (BCE's pos_weight)
    w = _class_weights(cfg, np.array([10, 40]), 50, multilabel=True)
    assert torch.allclose(w, torch.tensor([4.0, 0.25]))
    assert _class_weights(parse_config({}), np.array([3, 3]), 6, False) is None
    listed = parse_config({"loss": {"class_weights": [1.0, 2.0]}})
    assert torch.equal(_class_weights(listed, np.array([3, 3]), 6, False), torch.tensor([1.0, 2.0]))
    with pytest.raises(ConfigError) as ei:
        _class_weights(listed, np.array([3, 3, 3]), 9, False)
    msg = str(ei.value)
    assert "\n" not in msg and "loss.class_weights has 2 values" in msg and "3 classes" in msg


# ---------------------------------------------------------------- losses through fit

@pytest.mark.parametrize("loss", [
    {"name": "ce"},
    {"name": "ce", "label_smoothing": 0.1},
    {"name": "ce", "class_weights": "balanced"},
    {"name": "ce", "class_weights": [1.0, 1.5, 1.5, 3.0]},
    {"name": "focal", "gamma": 2.0},
    {"name": "focal", "gamma": 0.5, "class_weights": "balanced", "label_smoothing": 0.05},
], ids=["ce", "ce-smooth", "ce-balanced", "ce-listed", "focal", "focal-balanced-smooth"])
def test_every_single_label_loss_trains(folder, tmp_path, loss):
    cfg, r = _fit(folder, tmp_path, loss=loss)
    assert r["epochs_run"] == 2
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in r["history"])
    assert r["history"][1]["train_loss"] < r["history"][0]["train_loss"] * 1.5
    assert 0.0 <= r["macro_f1"] <= 1.0 and len(r["per_class_f1"]) == 4


def test_focal_train_loss_is_below_ce_in_fit(folder, tmp_path):
    _, ce = _fit(folder, tmp_path / "ce", loss={"name": "ce"})
    _, fo = _fit(folder, tmp_path / "focal", loss={"name": "focal", "gamma": 3.0})
    assert fo["history"][0]["train_loss"] < 0.7 * ce["history"][0]["train_loss"]


def test_class_weights_of_wrong_length_fail_in_fit(folder, tmp_path):
    with pytest.raises(ConfigError) as ei:
        _fit(folder, tmp_path, loss={"name": "ce", "class_weights": [1.0, 2.0]})
    assert "\n" not in str(ei.value) and "4 classes" in str(ei.value)


# ---------------------------------------------------------------- optimizers

def test_param_groups_split_backbone_head_and_decay():
    model = build_model(ModelConfig(name="test_resnet"), 4)
    groups = param_groups(model, model.head, lr=0.1, backbone_lr=0.01, weight_decay=0.05)
    head = {id(p) for p in model.head.parameters()}
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    for g in groups:
        in_head = {id(p) in head for p in g["params"]}
        assert len(in_head) == 1
        assert g["lr"] == (0.1 if in_head.pop() else 0.01)
        ndims = {p.ndim for p in g["params"]}
        assert g["weight_decay"] == (0.0 if max(ndims) <= 1 else 0.05)
    assert {g["lr"] for g in groups} == {0.1, 0.01}


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_build_optimizer(name, cls):
    p = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer(name, [{"params": [p], "lr": 0.1}], momentum=0.8, nesterov=True, betas=(0.7, 0.9))
    assert type(opt) is cls
    g = opt.param_groups[0]
    if name == "sgd":
        assert g["momentum"] == 0.8 and g["nesterov"] is True
    else:
        assert g["betas"] == (0.7, 0.9)


def _groups_from_checkpoint(out):
    ck = load_checkpoint(out / "last.pt")
    return ck["optimizer"]["param_groups"]


@pytest.mark.parametrize("opt", [
    {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "backbone_lr": 0.005, "weight_decay": 1e-4},
    {"name": "adam", "lr": 0.003, "betas": [0.8, 0.99], "backbone_lr": 0.001},
    {"name": "adamw", "lr": 0.004, "weight_decay": 0.05},
], ids=["sgd-nesterov", "adam", "adamw"])
def test_optimizer_groups_in_fit(folder, tmp_path, opt):
    cfg, r = _fit(folder, tmp_path, optimizer=opt)
    assert all(math.isfinite(h["train_loss"]) for h in r["history"])
    groups = _groups_from_checkpoint(tmp_path / "out")
    assert len(groups) == 4  # backbone/head x decay/no-decay
    backbone, head = groups[:2], groups[2:]
    assert len(head[0]["params"]) + len(head[1]["params"]) == 2  # the head's Linear weight + bias
    for g in backbone:
        assert g["initial_lr"] == pytest.approx(opt.get("backbone_lr", opt["lr"]))
    for g in head:
        assert g["initial_lr"] == pytest.approx(opt["lr"])
    assert [g["weight_decay"] for g in groups] == [cfg.optimizer.weight_decay, 0.0] * 2
    if opt["name"] == "sgd":
        assert all(g["momentum"] == 0.9 and g["nesterov"] is True for g in groups)
    if opt["name"] == "adam":
        assert all(tuple(g["betas"]) == (0.8, 0.99) for g in groups)
        assert all(g.get("decoupled_weight_decay", False) is False for g in groups)
    if opt["name"] == "adamw":
        assert all(g.get("decoupled_weight_decay", True) for g in groups)


def test_scale_lr_with_batch(folder, tmp_path):
    opt = {"name": "sgd", "lr": 0.064, "backbone_lr": 0.032, "scale_lr_with_batch": True}
    _, r = _fit(folder, tmp_path, optimizer=opt, train={"batch_size": 16})
    groups = _groups_from_checkpoint(tmp_path / "out")
    assert [g["initial_lr"] for g in groups] == pytest.approx([0.002, 0.002, 0.004, 0.004])
    assert all(h["lr"] == pytest.approx(0.004) for h in r["history"])  # scheduler none: constant
    # without the flag the lr is taken as given
    _, r2 = _fit(folder, tmp_path / "plain", optimizer={**opt, "scale_lr_with_batch": False})
    assert all(h["lr"] == pytest.approx(0.064) for h in r2["history"])


# ---------------------------------------------------------------- schedules

def _s(**kw) -> SchedulerConfig:
    return SchedulerConfig(**kw)


def test_lr_factor_none_and_step():
    for e in (0.0, 0.5, 3.0, 9.99):
        assert lr_factor(_s(name="none"), 10, e) == 1.0
    step = _s(name="step", step_size=2, gamma=0.5)
    assert [lr_factor(step, 6, e) for e in (0, 1.99, 2, 3.5, 4, 5.9)] == pytest.approx([1, 1, .5, .5, .25, .25])


def test_lr_factor_multistep():
    ms = _s(name="multistep", milestones=[2, 5], gamma=0.1)
    assert [lr_factor(ms, 8, e) for e in (0, 1.99, 2, 4.99, 5, 7.5)] == pytest.approx([1, 1, .1, .1, .01, .01])


def test_lr_factor_cosine():
    c = _s(name="cosine")
    assert [lr_factor(c, 10, e) for e in (0, 2.5, 5, 7.5, 10)] == pytest.approx(
        [1, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5, 0.5 - 0.5 * math.cos(math.pi / 4), 0], abs=1e-9)
    floor = _s(name="cosine", min_lr_ratio=0.1)
    assert lr_factor(floor, 10, 10) == pytest.approx(0.1) and lr_factor(floor, 10, 5) == pytest.approx(0.55)
    curve = [lr_factor(c, 10, e / 10) for e in range(101)]
    assert all(a >= b for a, b in zip(curve, curve[1:]))


@pytest.mark.parametrize("name", ["none", "step", "multistep", "cosine"])
def test_warmup_ramps_linearly_then_hands_over(name):
    cfg = _s(name=name, warmup_epochs=2.0, step_size=3, milestones=[3, 4], gamma=0.5)
    epochs = 6
    base = {"none": lambda e: 1.0, "step": lambda e: 0.5 ** (e // 3),
            "multistep": lambda e: 0.5 ** sum(e >= m for m in (3, 4)),
            "cosine": lambda e: 0.5 * (1 + math.cos(math.pi * max(e - 2, 0) / 4))}[name]
    ramp = [lr_factor(cfg, epochs, e) for e in (0.0, 0.5, 1.0, 1.5)]
    assert ramp[0] < 0.01
    assert all(b > a for a, b in zip(ramp, ramp[1:]))
    assert ramp[2] == pytest.approx(2 * ramp[1], rel=0.01) and ramp[3] == pytest.approx(3 * ramp[1], rel=0.01)
    assert lr_factor(cfg, epochs, 1.999) == pytest.approx(base(2.0), abs=2e-3)  # continuous at the hand-over
    for e in (2.0, 2.5, 3.0, 4.5, 5.9):
        assert lr_factor(cfg, epochs, e) == pytest.approx(base(e), abs=1e-9)
    assert max(lr_factor(cfg, epochs, e / 20) for e in range(121)) <= 1.0 + 1e-9


def test_scheduler_steps_per_batch():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 0.2}])
    cfg = _s(name="cosine", warmup_epochs=1.0)
    sched = build_scheduler(opt, cfg, epochs=4, steps_per_epoch=5)
    for k in range(1, 21):
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * lr_factor(cfg, 4, k / 5), rel=1e-9, abs=1e-12)
    state = sched.state_dict()
    assert state["last_epoch"] == 20


@pytest.mark.parametrize("sched", [
    {"name": "none", "warmup_epochs": 1.0},
    {"name": "step", "step_size": 1, "gamma": 0.5, "warmup_epochs": 1.0},
    {"name": "multistep", "milestones": [2], "gamma": 0.2, "warmup_epochs": 0.5},
    {"name": "cosine", "warmup_epochs": 1.0, "min_lr_ratio": 0.05},
], ids=["none", "step", "multistep", "cosine"])
def test_schedule_in_fit_follows_lr_factor(folder, tmp_path, sched):
    cfg, r = _fit(folder, tmp_path, scheduler=sched, train={"epochs": 3},
                  optimizer={"name": "sgd", "lr": 0.02, "momentum": 0.9})
    # the scheduler steps once per batch; at the end of epoch e it has made e epochs' worth of steps
    got = [h["lr"] for h in r["history"]]
    want = [0.02 * lr_factor(cfg.scheduler, 3, e) for e in (1, 2, 3)]
    assert got == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert all(math.isfinite(h["train_loss"]) for h in r["history"])


# ---------------------------------------------------------------- weighted sampler

def _label_shares(loader, epochs: int, n_classes: int) -> np.ndarray:
    counts = np.zeros(n_classes)
    for _ in range(epochs):
        for _, y in loader:
            counts += np.bincount(y.numpy(), minlength=n_classes)
    return counts / counts.sum()


def test_weighted_sampler_balances_the_classes(folder):
    cpu = torch.device("cpu")
    plain = prepare_data(parse_config(imagegen.base_config(folder)), cpu, False, 8)
    weighted = prepare_data(parse_config(imagegen.base_config({**folder, "weighted_sampler": True})), cpu, False, 8)
    assert np.array_equal(plain.train_index, weighted.train_index)
    n_train = np.bincount(plain.samples.targets[plain.train_index], minlength=4)
    assert n_train[0] >= 2 * n_train[3]
    p = _label_shares(plain.train, 5, 4)
    w = _label_shares(weighted.train, 40, 4)
    assert p == pytest.approx(n_train / n_train.sum(), abs=1e-9)  # every image once per epoch
    assert np.all(np.abs(w - 0.25) < 0.07), w
    assert w[3] > 2 * p[3]


def test_weighted_sampler_in_fit(folder, tmp_path):
    _, r = _fit({**folder, "weighted_sampler": True}, tmp_path, train={"epochs": 2})
    assert r["epochs_run"] == 2 and all(math.isfinite(h["train_loss"]) for h in r["history"])
