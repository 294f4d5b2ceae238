"""The seeds' training recipes: mixup / CutMix (soft targets through ce, focal and bce), an EMA of the weights,
gradient accumulation. Each learns in a real run; each survives a resume; the parts do what they say."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import imagegen
from training import fit, parse_config, train_one_epoch
from training.checkpoint import load_checkpoint
from training.config import MixConfig
from training.losses import build_factorized_loss, build_loss
from training.mix import BatchMix
from training.runtime import resolve_runtime

DIGITS = {"source": "digits", "image_size": 16, "limit": 400}


def _fit(tmp_path, data: dict = DIGITS, epochs: int = 4, train: dict | None = None, **sections) -> dict:
    cfg = imagegen.base_config(data, tmp_path, train={"epochs": epochs, "batch_size": 32, **(train or {})},
                               **sections)
    return fit(parse_config(cfg), tmp_path / "run")


@pytest.mark.parametrize("name,sections", [
    ("mixup, focal gamma 0.5", {"augment": {"mix": {"name": "mixup", "mixup_alpha": 0.4}},
                                "loss": {"name": "focal", "gamma": 0.5}}),
    ("cutmix, ce with smoothing and class weights", {"augment": {"mix": {"name": "cutmix", "prob": 0.8}},
                                                      "loss": {"name": "ce", "label_smoothing": 0.1,
                                                               "class_weights": "balanced"}}),
    ("ema", {"train": {"ema": {"decay": 0.95}}}),
    ("accumulate 2", {"train": {"batch_size": 16, "accumulate": 2}}),
])
def test_each_recipe_learns_on_digits(tmp_path, name, sections):
    r = _fit(tmp_path, **sections)
    f1 = [h["macro_f1"] for h in r["history"]]
    assert r["macro_f1"] >= 0.75 and r["macro_f1"] > f1[0] + 0.2, f"{name}: {f1}"


def test_mix_learns_multilabel_with_bce(tmp_path):
    csv = imagegen.make_csv_multilabel(tmp_path / "ml", n=96, size=16)
    data = {"source": "csv", "file": str(csv), "label_columns": ["red", "green", "blue"]}
    r = _fit(tmp_path, data, epochs=6, loss={"name": "bce"}, augment={"mix": {"name": "both"}},
             optimizer={"lr": 1e-2})
    f1 = [h["macro_f1"] for h in r["history"]]
    assert r["macro_f1"] >= 0.7 and r["macro_f1"] > f1[0], f1


def test_a_resumed_run_with_mix_ema_and_accumulation_repeats_the_uninterrupted_one(tmp_path):
    """last.pt holds the EMA (and its step count); mixing draws from (seed, epoch): the resumed epochs train and
    validate exactly as the uninterrupted run's did."""
    cfg = parse_config(imagegen.base_config(DIGITS, tmp_path, train={"epochs": 4, "batch_size": 16, "accumulate": 3,
                                                                     "ema": {"decay": 0.9}},
                                            augment={"mix": {"name": "both"}}, scheduler={"name": "cosine"}))
    full = fit(cfg, tmp_path / "full")

    class Stop(Exception):
        pass

    def stop_after_2(epoch, m):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(cfg, tmp_path / "part", stop_after_2)
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    assert ck["ema"]["steps"] == ck["scheduler"]["_step_count"] - 1  # one average per optimizer step
    resumed = fit(cfg, tmp_path / "part", resume_from=tmp_path / "part" / "last.pt")
    for a, b in zip(full["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["macro_f1"] == pytest.approx(b["macro_f1"])


def test_best_pt_holds_the_ema_weights_that_validated(tmp_path):
    r = _fit(tmp_path, epochs=3, train={"ema": {"decay": 0.9}})
    run = tmp_path / "run"
    best, last = torch.load(run / "best.pt", weights_only=True), load_checkpoint(run / "last.pt")
    name = next(k for k in best if k.endswith("weight") and best[k].dtype == torch.float32)
    if r["best_epoch"] == 3:  # the last epoch's average is both
        assert torch.equal(best[name], last["ema"]["weights"][name])
    assert not torch.equal(best[name], last["model"][name])  # not the raw weights
    assert json.loads((run / "metrics.json").read_text())["macro_f1"] == r["macro_f1"]


def test_accumulation_steps_as_one_batch_of_the_effective_size():
    """Two batches of 8 accumulated = one batch of 16 (a model without BatchNorm, SGD): the same weights; the
    schedule steps once per optimizer step; scale_lr_with_batch uses the effective batch (test_lr_scale)."""
    rt = resolve_runtime(parse_config({"train": {"device": "cpu", "precision": "fp32"}}).train)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 6, generator=g), torch.randint(0, 3, (48,), generator=g)

    def run(batch: int, accumulate: int):
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, 48, batch)]
        train_one_epoch(model, batches, torch.nn.CrossEntropyLoss(), opt, sched, rt, None, accumulate=accumulate)
        return model.weight.detach(), sched.last_epoch

    (w16, steps16), (w8, steps8) = run(16, 1), run(8, 2)
    assert torch.allclose(w16, w8, atol=1e-6) and steps16 == steps8 == 3
    w_rest, steps_rest = run(8, 4)  # 6 batches in steps of 4: the last step takes the 2 left
    assert steps_rest == 2 and not torch.allclose(w_rest, w16)


def test_lr_scale_follows_the_effective_batch(tmp_path):
    opt = {"lr": 1e-3, "scale_lr_with_batch": True}
    one = _fit(tmp_path / "a", epochs=1, optimizer=opt, train={"batch_size": 16})
    two = _fit(tmp_path / "b", epochs=1, optimizer=opt, train={"batch_size": 16, "accumulate": 4})
    assert two["history"][0]["lr"] == pytest.approx(4 * one["history"][0]["lr"])


def test_soft_targets_equal_hard_ones_for_one_hot_rows():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 5, generator=g), torch.randint(0, 5, (16,), generator=g)
    t = F.one_hot(y, 5).float()
    for name, gamma, smoothing in (("ce", 0.0, 0.0), ("ce", 0.0, 0.1), ("focal", 0.5, 0.0), ("focal", 2.0, 0.0)):
        for weight in (None, torch.rand(5, generator=g) + 0.5):  # the same scale with class weights and smoothing
            loss = build_loss(name, gamma=gamma, weight=weight, label_smoothing=smoothing)
            assert float(loss(x, t)) == pytest.approx(float(loss(x, y)), rel=1e-5), (name, gamma, weight)
    fact = build_factorized_loss("focal", (3, 2, 3), gamma=0.5, weights=[None] * 3, label_smoothing=0.0)
    joint = torch.randn(8, 18, generator=g).log_softmax(1)
    y18 = torch.randint(0, 18, (8,), generator=g)
    assert float(fact(joint, F.one_hot(y18, 18).float())) == pytest.approx(float(fact(joint, y18)), rel=1e-5)
    focal = build_loss("focal", gamma=0.5, weight=None, label_smoothing=0.1)  # a saturated logit: finite gradient
    logits = torch.tensor([[60.0, 0.0, 0.0]], requires_grad=True)
    focal(logits, torch.tensor([[0.7, 0.3, 0.0]])).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_a_mixed_batch_mixes_images_and_targets_by_the_same_share(name):
    x = torch.zeros(4, 3, 10, 10)
    x[1], x[3] = 1.0, 1.0  # partners (the batch's reverse): 0 <-> 3 and 1 <-> 2, each pair a 0 and a 1 image
    y = torch.tensor([0, 1, 2, 1])
    mix = BatchMix(MixConfig(name=name, mixup_alpha=1.0), num_classes=3, multilabel=False, seed=0)
    mix.start_epoch(1)
    xm, t = mix(x, y)
    assert t.shape == (4, 3) and torch.allclose(t.sum(1), torch.ones(4))
    partner_share = t[0, 1]  # image 0 (class 0, zeros) took its partner's (image 3, class 1, ones) share
    assert float(xm[0].mean()) == pytest.approx(float(partner_share), abs=1e-6)
    mix.start_epoch(1)
    assert torch.equal(mix(x, y)[0], xm)  # (seed, epoch) fixes the draws


def test_the_recipes_are_searchable_and_a_search_of_an_unset_ema_says_how(tmp_path):
    from search import load_study
    from search.errors import StudyConfigError
    from studygen import write_study

    space = {"augment.mix.name": {"choices": ["none", "mixup", "cutmix"]},
             "train.ema.decay": {"choices": [0.99, 0.999]}, "train.accumulate": {"choices": [1, 2]}}
    path = write_study(tmp_path, "recipes", space=space, extra_training={"train": {"ema": {"decay": 0.99}}})
    sc = load_study(str(path))
    cfg = sc.config_for({"augment.mix.name": "cutmix", "train.ema.decay": 0.999, "train.accumulate": 2}, "t")
    assert (cfg.augment.mix.name, cfg.train.ema.decay, cfg.train.accumulate) == ("cutmix", 0.999, 2)
    plain = write_study(tmp_path, "plain", space={"train.ema.decay": {"choices": [0.99, 0.999]}})
    with pytest.raises(StudyConfigError, match=r"training.train.ema is off \(null\), so it has no decay to search"):
        load_study(str(plain))
