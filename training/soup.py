"""Model soups (Wortsman et al. 2022): the weights of several runs of one architecture averaged into one model,
which costs one model's inference.

``cook(folders, out, greedy=True)`` takes finished run folders, best first, and writes a run folder (config.yaml,
split.json, best.pt, metrics.json with the soup's validation metrics, val_predictions.npz) that predict, ensemble
and explain accept like any run. It compares, on the runs' shared validation images, the best single run, the
uniform soup (every run averaged), the greedy soup (runs taken in order of validation macro-F1, each kept only if
the soup's macro-F1 does not drop) and the soft-vote ensemble of the same runs.

Runs must share the architecture (model, head, hidden layer, input size, classes), the eval path (crop, eval
pipeline, normalization) and the validation images; the caller skips the others. Everything is scored with the
first run's data and eval path on this machine's device; the soup's config.yaml is the first run's. After
averaging, BatchNorm's running statistics are those of no model that trained, so they are measured again: one
pass over the train images (as training saw them) in train mode, without gradients, with a cumulative average.
A soup of one run is that run's own weights and statistics, untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from .augment import eval_normalization
from .config import RunConfig, dump_config, load_config
from .data.prepare import prepare_data
from .errors import ConfigError, one_line
from .files import atomic_path, write_atomic
from .inference.runs import inference_runtime
from .loop import validate
from .parts import build_parts
from .run_folder import BEST_CHECKPOINT, CONFIG_FILE, METRICS_FILE, SPLIT_FILE, read_metrics, save_predictions
from .runtime import seed_everything

__all__ = ["Ingredient", "read_ingredient", "architecture", "eval_path", "mismatch", "average", "cook", "SoupResult"]


@dataclass(frozen=True)
class Ingredient:
    name: str            # how it is shown: "trial 12"
    folder: Path
    cfg: RunConfig
    macro_f1: float      # what its run recorded for its best epoch
    val: tuple[str, ...]  # its validation images (split.json)


def read_ingredient(folder: Path, name: str) -> Ingredient:
    """Raises ConfigError (one line) for a folder whose config, split or metrics cannot be read."""
    try:
        split = json.loads((folder / SPLIT_FILE).read_text())
        return Ingredient(name, folder, load_config(folder / CONFIG_FILE), float(read_metrics(folder)["macro_f1"]),
                          tuple(split["val"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{name}'s run folder {folder} cannot be read ({one_line(e, 200)})") from None


def architecture(cfg: RunConfig) -> dict:
    """What two runs must share for their weights to average: the model's shape and its input."""
    m = cfg.model
    return {"model.name": m.name, "model.head": m.head, "model.out_features": m.out_features,
            "data.image_size": list(cfg.data.hw)}


def eval_path(cfg: RunConfig) -> dict:
    """What two runs must share to be scored (and to predict) on one eval path: crop, eval pipeline, and the
    normalization val images get."""
    mean, std = eval_normalization(cfg.augment)
    return {"data.center_crop": cfg.data.center_crop and list(cfg.data.center_crop), "augment.eval": cfg.augment.eval,
            "normalization (mean, std)": [list(mean), list(std)]}


def mismatch(first: Ingredient, other: Ingredient) -> str | None:
    """Why ``other`` cannot go into ``first``'s soup (one phrase), or None."""
    a, b = architecture(first.cfg), architecture(other.cfg)
    diff = [f"{k} {b[k]} (the soup's: {a[k]})" for k in a if a[k] != b[k]]
    if diff:
        return "another architecture: " + ", ".join(diff)
    a, b = eval_path(first.cfg), eval_path(other.cfg)
    diff = [f"{k} {b[k]} (the soup's: {a[k]})" for k in a if a[k] != b[k]]
    if diff:
        return "another eval path: " + ", ".join(diff)
    if other.val != first.val:
        return "validated on other images (another split or data set): its scores do not compare"
    return None


@dataclass
class SoupResult:
    rows: list[dict]         # one per candidate: what, macro_f1, models, forward passes per image
    kept: list[str]          # the greedy soup's ingredients
    out: Path


class _Kitchen:
    """The first ingredient's data (its split), model and loss, on this machine's device: scores weights."""

    def __init__(self, cfg: RunConfig) -> None:
        # every weight comes from the runs' best.pt (no download), on this machine's device, nothing trains
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": False}),
                                     "train": cfg.train.model_copy(update={"ema": None, "compile": False})})
        self.cfg = cfg
        self.rt = inference_runtime(cfg)
        seed_everything(cfg.seed)
        self.data = prepare_data(cfg, self.rt.device, self.rt.channels_last, cfg.train.batch_size,
                                 self.rt.input_dtype)
        self.parts = build_parts(cfg, self.rt, self.data)
        self.model = self.parts.model

    def score(self, weights: dict, recalibrate: bool) -> dict:
        self.model.load_state_dict(weights)
        if recalibrate:
            self._recalibrate()
        return validate(self.model, self.data, self.parts.loss_fn, self.rt, self.cfg.train.threshold)

    @torch.no_grad()
    def _recalibrate(self) -> None:
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 and m.track_running_stats]
        if not norms:
            return
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the pass
        self.model.train()
        seed_everything(self.cfg.seed)
        self.data.train.epoch = 0
        for x, _ in self.data.train:
            with self.rt.autocast():
                self.model(x)
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def average(weights: list[dict]) -> dict:
    """The element-wise mean of floating-point tensors; integer ones (BatchNorm's batch counts) from the first."""
    out = {}
    for key, first in weights[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([w[key].float() for w in weights]).mean(0).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def cook(ingredients: list[Ingredient], out: Path, greedy: bool = True, log=print) -> SoupResult:
    """``ingredients``: best first, one architecture, eval path and validation set (``mismatch`` is None for
    each)."""
    kitchen = _Kitchen(ingredients[0].cfg)
    weights = [_weights(i, kitchen) for i in ingredients]
    singles = []
    for ing, w in zip(ingredients, weights):
        singles.append(kitchen.score(w, recalibrate=False))
        log(f"  {ing.name}: val macro-F1 {singles[-1]['macro_f1']:.4f} (its run recorded {ing.macro_f1:.4f})")
    order = sorted(range(len(ingredients)), key=lambda i: -singles[i]["macro_f1"])  # re-scored here: the order
    uniform = kitchen.score(average(weights), recalibrate=len(weights) > 1)
    uniform_state = _copy(kitchen.model.state_dict())
    kept, soup, soup_state = [order[0]], singles[order[0]], weights[order[0]]
    for i in order[1:]:
        trial = kitchen.score(average([weights[j] for j in kept + [i]]), recalibrate=True)
        verdict = "kept" if trial["macro_f1"] >= soup["macro_f1"] else "left out"
        log(f"  + {ingredients[i].name}: soup macro-F1 {trial['macro_f1']:.4f} -> {verdict}")
        if trial["macro_f1"] >= soup["macro_f1"]:
            kept, soup, soup_state = kept + [i], trial, _copy(kitchen.model.state_dict())
    vote = _soft_vote(singles, kitchen)
    chosen, state, idx = (soup, soup_state, kept) if greedy else (uniform, uniform_state, list(range(len(weights))))
    _write(out, kitchen, chosen, state, ingredients, idx, "greedy" if greedy else "uniform")
    k, best = len(ingredients), singles[order[0]]
    rows = [{"what": f"best single ({ingredients[order[0]].name})", "macro_f1": best["macro_f1"], "passes": 1},
            {"what": f"uniform soup of {k}", "macro_f1": uniform["macro_f1"], "passes": 1},
            {"what": f"greedy soup ({len(kept)} of {k})", "macro_f1": soup["macro_f1"], "passes": 1},
            {"what": f"soft-vote ensemble of {k}", "macro_f1": vote, "passes": k}]
    return SoupResult(rows, [ingredients[j].name for j in kept], out)


def _weights(ingredient: Ingredient, kitchen: _Kitchen) -> dict:
    path = ingredient.folder / BEST_CHECKPOINT
    try:
        return torch.load(path, map_location=kitchen.rt.device, weights_only=True)
    except Exception as e:  # a damaged file: torch raises several kinds
        raise ConfigError(f"{ingredient.name}: {path} cannot be read ({one_line(e, 200)}); restore it, or lower "
                          "--top-k to leave the trial out") from None


def _copy(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


def _soft_vote(singles: list[dict], kitchen: _Kitchen) -> float:
    from .metrics import classification_metrics

    p = np.mean([s["probabilities"] for s in singles], axis=0)
    s = kitchen.data.samples
    scores = np.log(np.clip(p, 1e-12, 1)) if not s.multilabel else np.log(p / np.clip(1 - p, 1e-12, None))
    return classification_metrics(scores, singles[0]["targets"], s.classes, s.multilabel,
                                  kitchen.cfg.train.threshold)["macro_f1"]


def _write(out: Path, kitchen: _Kitchen, m: dict, state: dict, ingredients: list[Ingredient], idx: list[int],
           how: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    first = ingredients[0]
    write_atomic(out / CONFIG_FILE, yaml.safe_dump(dump_config(kitchen.cfg), sort_keys=False))
    write_atomic(out / SPLIT_FILE, (first.folder / SPLIT_FILE).read_text())
    with atomic_path(out / BEST_CHECKPOINT) as tmp:
        torch.save(state, tmp)
    save_predictions(out, m["probabilities"], m["targets"])
    d, s = kitchen.data, kitchen.data.samples
    result = {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "best_epoch": None, "epochs_run": 0,
              "per_class_f1": m["per_class_f1"], "confusion_matrix": m["confusion_matrix"], "output_dir": str(out),
              "classes": list(s.classes), "multilabel": s.multilabel, "batch_size": d.train.batch_size,
              "n_train": len(d.train_index), "n_val": len(d.val_index), "skipped_images": len(d.skipped),
              "history": [], "soup": {"how": how, "ingredients": [
                  {"name": ingredients[j].name, "folder": str(ingredients[j].folder),
                   "macro_f1": ingredients[j].macro_f1} for j in idx]}}
    write_atomic(out / METRICS_FILE, json.dumps(result, indent=1))
