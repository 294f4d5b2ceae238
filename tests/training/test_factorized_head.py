"""model.head: factorized on the mask source: one backbone, three heads (mask 3, gender 2, age 3), the 18-class
probability their product, the loss the sum of the three configured losses; it learns on a generated mask tree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import imagegen
from training import ConfigError, batch_probe, fit, parse_config
from training.config import MASK_FACTORS
from training.data.sources import AGES, GENDERS, MASK_STATES, mask_class_names
from training.losses import FactorizedLoss, FocalLoss, build_factorized_loss
from training.models import FactorizedHead, build_model
from training.optim import param_groups
from training.parts import _factor_weights
from training.runtime import resolve_runtime

SHAPE = tuple(MASK_FACTORS.values())


def _cfg(tmp_path, root=None, model: dict | None = None, **sections):
    """A small CPU config on a mask tree (``root``; it need not exist to build models) with the factorized head."""
    data = {"source": "mask", "root": str(root or tmp_path / "images")}
    model = {"head": "factorized", **(model or {})}
    return parse_config(imagegen.base_config(data, tmp_path, model=model, **sections))


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    return msg


# ---------------------------------------------------------------- the model

def test_factors_are_the_mask_sources_class_index():
    assert SHAPE == (len(MASK_STATES), len(GENDERS), len(AGES)) == (3, 2, 3)
    names = mask_class_names()
    for m, g, a in np.ndindex(*SHAPE):
        assert np.ravel_multi_index((m, g, a), SHAPE) == m * 6 + g * 3 + a
        assert names[m * 6 + g * 3 + a].split("/")[1:] == [GENDERS[g], AGES[a]]


def test_the_18_class_output_is_the_product_of_the_heads_probabilities(tmp_path):
    model = build_model(_cfg(tmp_path, model={"out_features": 8, "dropout": 0.3}).model, 18)
    model.eval()
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
        feats = model.backbone(x)
        p_mask, p_gender, p_age = (F.softmax(h(feats), dim=1) for h in model.head.heads)
    assert out.shape == (5, 18)
    prob = F.softmax(out, dim=1)  # what argmax, the metrics and prediction see
    assert torch.allclose(prob, out.exp(), atol=1e-6)  # the outputs are log-probabilities already
    for m, g, a in np.ndindex(*SHAPE):
        assert torch.allclose(prob[:, m * 6 + g * 3 + a], p_mask[:, m] * p_gender[:, g] * p_age[:, a], atol=1e-6)
    # each head has the configured shape: dropout, hidden layer of out_features, dropout, classifier
    for head, k in zip(model.head.heads, SHAPE):
        linears = [mod for mod in head if isinstance(mod, torch.nn.Linear)]
        assert [(lin.in_features, lin.out_features) for lin in linears] == [(model.backbone.num_features, 8), (8, k)]
        assert [mod.p for mod in head if isinstance(mod, torch.nn.Dropout)] == [0.3, 0.3]


def test_the_three_heads_are_the_head_of_param_groups(tmp_path):
    model = build_model(_cfg(tmp_path).model, 18)
    assert isinstance(model.head, FactorizedHead) and len(model.head.heads) == 3
    groups = param_groups(model, model.head, lr=0.1, backbone_lr=0.01, weight_decay=0.05)
    head_lr = {id(p) for g in groups if g["lr"] == 0.1 for p in g["params"]}
    assert head_lr == {id(p) for p in model.head.parameters()}
    assert len(head_lr) == 6  # three Linear layers: weight and bias each
    backbone_lr = {id(p) for g in groups if g["lr"] == 0.01 for p in g["params"]}
    assert backbone_lr == {id(p) for p in model.backbone.parameters()}


def test_the_batch_probe_steps_the_real_factorized_model(tmp_path, monkeypatch):
    """The probe asks for 1000 outputs; the factorized model keeps its real 18 and trains a probe step."""
    shapes: list[tuple[int, ...]] = []
    build = batch_probe.build_model

    def spy(cfg, n):
        m = build(cfg, n)
        m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
        return m

    monkeypatch.setattr(batch_probe, "build_model", spy)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)  # the step itself runs on the CPU
    cfg = _cfg(tmp_path)
    assert batch_probe._fits(cfg, resolve_runtime(cfg.train), num_outputs=1000, batch=4)
    assert shapes == [(4, 18), (4, 18)]


# ---------------------------------------------------------------- the loss

def _heads_and_joint(n: int = 32, seed: int = 0):
    """Random head logits, the joint log-probabilities a FactorizedHead makes of them, and 18-class targets."""
    g = torch.Generator().manual_seed(seed)
    logits = [(torch.randn(n, k, generator=g) * 2).requires_grad_() for k in SHAPE]
    lm, lg, la = (F.log_softmax(z, dim=1) for z in logits)
    joint = (lm[:, :, None, None] + lg[:, None, :, None] + la[:, None, None, :]).flatten(1)
    target = torch.randint(0, 18, (n,), generator=g)
    return logits, joint, target


def _head_targets(target: torch.Tensor) -> list[torch.Tensor]:
    return [target // 6, (target // 3) % 2, target % 3]


WEIGHTS = [torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.7, 1.3]), torch.tensor([3.0, 1.0, 2.0])]


@pytest.mark.parametrize("name, gamma, smoothing, weights", [
    ("ce", 0.0, 0.0, None),
    ("ce", 0.0, 0.1, WEIGHTS),
    ("focal", 1.5, 0.0, None),
    ("focal", 0.8, 0.1, WEIGHTS),
], ids=["ce", "ce-smooth-weighted", "focal", "focal-smooth-weighted"])
def test_the_loss_is_the_sum_of_the_three_configured_losses(name, gamma, smoothing, weights):
    logits, joint, target = _heads_and_joint()
    loss = build_factorized_loss(name, SHAPE, gamma=gamma, label_smoothing=smoothing, weights=weights or [None] * 3)
    got = loss(joint, target)
    by_hand = torch.zeros(())
    for i, (z, t) in enumerate(zip(logits, _head_targets(target))):  # each head's own logits, not the joint
        w = weights[i] if weights else None
        if name == "ce":
            by_hand = by_hand + F.cross_entropy(z, t, weight=w, label_smoothing=smoothing)
        elif weights is None and not smoothing:  # focal written out: mean of -(1 - p_t)^gamma log p_t
            logp_t = F.log_softmax(z, dim=1).gather(1, t[:, None])[:, 0]
            by_hand = by_hand + (-(1 - logp_t.exp()) ** gamma * logp_t).mean()
        else:
            by_hand = by_hand + FocalLoss(gamma, w, smoothing)(z, t)
    assert float(got.detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)
    # the gradient of each head's logits is that of its own loss too: the marginals leak nothing across heads
    g_got = torch.autograd.grad(got, logits, retain_graph=True)
    g_hand = torch.autograd.grad(by_hand, logits)
    for a, b in zip(g_got, g_hand):
        assert torch.allclose(a, b, atol=1e-6)


def test_the_loss_of_a_perfect_prediction_is_zero():
    target = torch.tensor([0, 5, 7, 17])
    joint = torch.full((4, 18), -1e4)
    joint[torch.arange(4), target] = 0.0
    loss = FactorizedLoss(SHAPE, [torch.nn.CrossEntropyLoss()] * 3)(joint, target)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- class weights

def test_balanced_weights_are_per_head_from_the_train_counts(tmp_path):
    counts = np.arange(1, 19)  # class c has c + 1 training images
    n = int(counts.sum())
    grid = counts.reshape(SHAPE)
    heads = [grid.sum(axis=(1, 2)), grid.sum(axis=(0, 2)), grid.sum(axis=(0, 1))]
    assert [h.tolist() for h in heads] == [[21, 57, 93], [72, 99], [51, 57, 63]]
    got = _factor_weights(_cfg(tmp_path, loss={"class_weights": "balanced"}), counts, n)
    for w, c in zip(got, heads):
        assert torch.allclose(w, torch.tensor(n / (len(c) * c), dtype=torch.float32))


def test_listed_weights_are_the_heads_weights_one_after_another(tmp_path):
    listed = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    got = _factor_weights(_cfg(tmp_path, loss={"class_weights": listed}), np.ones(18, int), 18)
    assert [w.tolist() for w in got] == [[1.0, 2.0, 3.0], [4.0, 5.0], [6.0, 7.0, 8.0]]
    assert _factor_weights(_cfg(tmp_path), np.ones(18, int), 18) == [None, None, None]


def test_eighteen_class_weights_are_one_error_line_with_the_fix(tmp_path):
    with pytest.raises(ConfigError) as ei:
        _cfg(tmp_path, loss={"class_weights": [1.0] * 18})
    msg = _one_line(ei.value)
    assert "loss.class_weights has 18 values" in msg and "model.head: factorized" in msg
    assert "give 8 (mask 3, gender 2, age 3, in that order), or balanced" in msg


# ---------------------------------------------------------------- config and study

@pytest.mark.parametrize("data", [{"source": "digits"}, {"source": "imagefolder", "root": "photos"}])
def test_factorized_head_off_the_mask_source_is_one_error_line(data):
    with pytest.raises(ConfigError) as ei:
        parse_config({"data": data, "model": {"name": "test_resnet", "head": "factorized"}})
    msg = _one_line(ei.value)
    assert "model.head = 'factorized' needs data.source: mask" in msg
    assert f"data.source = '{data['source']}'" in msg and "use model.head: single" in msg


def test_a_mask_study_searches_the_head(tmp_path):
    from search.study import load_study

    study = {"name": "heads", "training": imagegen.base_config({"source": "mask", "root": str(tmp_path / "images")}),
             "search_space": {"model.head": {"choices": ["single", "factorized"]}}}
    path = tmp_path / "heads.yaml"
    path.write_text(yaml.safe_dump(study))
    loaded = load_study(str(path))
    assert loaded.default_params() == {"model.head": "single"}
    assert loaded.config_for({"model.head": "factorized"}, "trial").model.head == "factorized"


# ---------------------------------------------------------------- it learns

def test_the_factorized_head_learns_the_mask_tree(tmp_path):
    images, _ = imagegen.make_mask_tree(tmp_path, n_people=24, size=16)
    cfg = _cfg(tmp_path, images, loss={"name": "focal", "gamma": 1.0, "class_weights": "balanced"},
               train={"epochs": 6, "batch_size": 16})
    r = fit(cfg, tmp_path / "out")
    assert len(r["per_class_f1"]) == 18 and np.asarray(r["confusion_matrix"]).shape == (18, 18)
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in r["history"])
    # 1.0 by epoch 6 on seeds 0-2 (epoch 1: 0.33-0.52): the three heads together tell all 18 classes apart
    assert r["macro_f1"] >= 0.8, f"macro-F1 {r['macro_f1']:.3f} (chance: 1/18)"
    assert r["macro_f1"] > r["history"][0]["macro_f1"]
    assert r["history"][-1]["train_loss"] < r["history"][0]["train_loss"] / 3
