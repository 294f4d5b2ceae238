"""The bad-input corpus: every user mistake, through the real ``search`` CLI, ends with exit code != 0, no
traceback, and exactly one stderr line ``error: ...`` that names the problem and says what to do. Cases that
touch a study store check that the store is unchanged afterwards.

A `search` process imports torch (~6 CPU-seconds), so every case runs the real entry point ``search.cli._app.main()``
in this process (tests/incli.py: argv, working directory, environment, fd-level stdout/stderr, logging and
warnings as a fresh process has them; process-global state put back after each call). A representative few
(SUBPROCESS) also run as real `search` processes and must agree with their in-process run.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from incli import run_main

ROOT = Path(__file__).resolve().parents[3]
_BIN = Path(sys.executable).parent / "search"
SEARCH = str(_BIN if _BIN.exists() else ROOT / ".venv" / "bin" / "search")
TIMEOUT = 180
SECRET = "s3cretpw"

# ------------------------------------------------------------------ tiny inputs


def _png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


RED, BLUE = _png((200, 30, 30)), _png((30, 30, 200))

TRAIN = {
    "seed": 0,
    "data": {"source": "digits", "limit": 60, "image_size": 8},  # 12 val images >= 10 classes
    "model": {"name": "test_resnet"},
    "loss": {"name": "ce"},
    "optimizer": {"name": "adamw", "lr": 0.003},
    "scheduler": {"name": "none"},
    "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
}
SPACE = {"optimizer.lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True}}
STUDY = {"name": "tiny", "n_trials": 1, "workers": 1, "training": TRAIN, "search_space": SPACE,
         "sampler": {"name": "random", "seed": 0}}


def train_yaml(**sections) -> str:
    """TRAIN with sections merged in (``data`` and non-dict values replace)."""
    d = copy.deepcopy(TRAIN)
    for k, v in sections.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) and k != "data" else v
    return yaml.safe_dump(d, sort_keys=False)


def study_yaml(space: dict | None = None, training: dict | None = None, **top) -> str:
    """STUDY with ``space`` entries added to the search space, ``training`` sections merged, top keys set."""
    d = copy.deepcopy(STUDY)
    d["search_space"].update(space or {})
    for k, v in (training or {}).items():
        d["training"][k] = {**d["training"][k], **v} if isinstance(v, dict) and k in d["training"] else v
    d.update(top)
    return yaml.safe_dump(d, sort_keys=False)


def data(**kw) -> dict:
    return {"image_size": 8, **kw}


# ------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]                  # after `search`
    expect: tuple[str, ...]                # substrings of the one error line: the problem and the fix
    files: dict = field(default_factory=dict)  # relative path -> str | bytes (or a function that makes them);
                                               # a path ending in "/" is a folder
    store: bool = False                    # start from a copy of the template store (studies.db) and check it
    forbid: tuple[str, ...] = ()           # must appear nowhere in stdout/stderr
    absent: tuple[str, ...] = ()           # outputs that must not exist afterwards: nothing written half-way


TRAIN_ARGS = ("train", "--config", "cfg.yaml", "--output", "out")
RUN_ARGS = ("run", "--study", "study.yaml", "--no-wandb", "--output", "out")
DB = "sqlite:///studies.db"


def tcase(id: str, cfg: str, *expect: str, files: dict | None = None) -> Case:
    return Case(id, TRAIN_ARGS, expect, {"cfg.yaml": cfg, **(files or {})})


def scase(id: str, study: str, *expect: str) -> Case:
    return Case(id, RUN_ARGS, expect, {"study.yaml": study})


def folder(**classes: list[bytes]) -> dict:
    return {f"photos/{c}/{i}.png": b for c, imgs in classes.items() for i, b in enumerate(imgs)}


@functools.cache
def _checkpoint(n_classes: int) -> bytes:
    """best.pt of an untrained test_resnet (made on first use: it needs torch)."""
    import torch

    from training.config import ModelConfig
    from training.models import build_model

    buf = io.BytesIO()
    torch.save(build_model(ModelConfig(name="test_resnet"), n_classes).state_dict(), buf)
    return buf.getvalue()


def run_folder(name: str = "run", classes: tuple[str, ...] = tuple("0123456789"), without: str = "") -> dict:
    """A finished run's folder as `search train` leaves it (config.yaml, best.pt, metrics.json), less ``without``."""
    files = {"config.yaml": train_yaml(), "best.pt": lambda: _checkpoint(len(classes)),
             "metrics.json": json.dumps({"classes": list(classes), "multilabel": False})}
    return {f"{name}/{k}": v for k, v in files.items() if k != without}


def pcase(id: str, args: tuple[str, ...], *expect: str, run: dict | None = None, files: dict | None = None) -> Case:
    """`search predict ARGS --out pred.csv` beside a run folder ('run') and two test images ('test/'); the failed
    command must leave no pred.csv."""
    base = {**(run_folder() if run is None else run), "test/a.png": RED, "test/b.png": BLUE}
    return Case(id, ("predict", *args, "--out", "pred.csv"), expect, {**base, **(files or {})}, absent=("pred.csv",))


CASES = [
    # -------- training config: unknown keys at every level, with the near name
    tcase("train-key-top-optimzer", train_yaml(optimzer={"lr": 0.01}),
          "cfg.yaml", "unknown key 'optimzer'", "did you mean 'optimizer'"),
    tcase("train-key-optimizer-lrr", train_yaml(optimizer={"lrr": 0.01}),
          "unknown key 'optimizer.lrr'", "did you mean 'lr'"),
    tcase("train-key-data-image_sise", train_yaml(data={**TRAIN["data"], "image_sise": 16}),
          "unknown key 'data.image_sise'", "did you mean 'image_size'"),
    tcase("train-key-model-dropuot", train_yaml(model={"dropuot": 0.1}),
          "unknown key 'model.dropuot'", "did you mean 'dropout'"),
    tcase("train-key-loss-label_smothing", train_yaml(loss={"label_smothing": 0.1}),
          "unknown key 'loss.label_smothing'", "did you mean 'label_smoothing'"),
    tcase("train-key-scheduler-step_sise", train_yaml(scheduler={"name": "step", "step_sise": 2}),
          "unknown key 'scheduler.step_sise'", "did you mean 'step_size'"),
    tcase("train-key-train-batch_sze", train_yaml(train={"batch_sze": 8}),
          "unknown key 'train.batch_sze'", "did you mean 'batch_size'"),
    tcase("train-key-augment-maen", train_yaml(augment={"maen": [0.5, 0.5, 0.5]}),
          "unknown key 'augment.maen'", "did you mean 'mean'"),
    # -------- training config: wrong types and values
    tcase("train-lr-string", train_yaml(optimizer={"lr": "fast"}),
          "optimizer.lr", "'fast'", "valid number"),
    tcase("train-epochs-list", train_yaml(train={"epochs": [1, 2]}),
          "train.epochs", "[1, 2]", "valid integer"),
    tcase("train-val_fraction-0", train_yaml(data={**TRAIN["data"], "val_fraction": 0}),
          "data.val_fraction = 0", "greater than 0"),
    tcase("train-val_fraction-1", train_yaml(data={**TRAIN["data"], "val_fraction": 1}),
          "data.val_fraction = 1", "less than 1"),
    tcase("train-val_fraction-leaves-train-empty",
          train_yaml(data={**TRAIN["data"], "limit": 20, "val_fraction": 0.99}),
          "data.val_fraction = 0.99 on 20 images", "leaves the train side empty", "use a val_fraction between"),
    tcase("train-config-wrapped-in-training", yaml.safe_dump({"training": TRAIN}, sort_keys=False),
          "looks like a study file without a 'name'", "training config wrapped in 'training:'",
          "add a top-level `name: cfg`", "remove the `training:` line"),
    tcase("train-batch_size-0", train_yaml(train={"batch_size": 0}),
          "train.batch_size = 0", "between 1 and"),
    tcase("train-dropout-negative", train_yaml(model={"dropout": -0.1}),
          "model.dropout = -0.1", "greater than or equal to 0"),
    tcase("train-image_size-three-sides", train_yaml(data={**TRAIN["data"], "image_size": [320, 256, 3]}),
          "data.image_size = [320, 256, 3]", "S or [H, W]", "from 8 to 4096"),
    tcase("train-center_crop-one-number", train_yaml(data={**TRAIN["data"], "center_crop": 450}),
          "data.center_crop = 450", "must be [H, W]", "e.g. [450, 360]"),
    tcase("train-age_bins-out-of-order", train_yaml(data=data(source="mask", root="images", age_bins=[60, 30])),
          "data.age_bins", "[60, 30]", "0 < first < second"),
    tcase("train-milestones-decreasing", train_yaml(scheduler={"name": "multistep", "milestones": [20, 10]}),
          "scheduler.milestones", "[20, 10]", "increasing", "[10, 20]"),
    tcase("train-precision-fp16-on-cpu", train_yaml(train={"precision": "fp16"}),
          "train.precision = 'fp16'", "needs a CUDA GPU", "bf16 or fp32"),
    tcase("train-device-cuda-no-gpu", train_yaml(train={"device": "cuda"}),
          "train.device = 'cuda'", "no CUDA GPU", "use auto or cpu"),
    tcase("train-pretrained-missing-file", train_yaml(model={"pretrained": "weights/resnet.pth"}),
          "model.pretrained", "weights/resnet.pth", "does not exist", "true/false"),
    tcase("train-loss-bce-on-single-label", train_yaml(loss={"name": "bce"}),
          "loss.name = 'bce'", "single-label", "use ce or focal"),
    tcase("train-factorized-head-not-mask", train_yaml(model={"head": "factorized"}),
          "model.head = 'factorized' needs data.source: mask", "data.source = 'digits'", "use model.head: single"),
    tcase("train-factorized-head-18-class-weights",
          train_yaml(data=data(source="mask", root="images"), model={"head": "factorized"},
                     loss={"class_weights": [1.0] * 18}),
          "loss.class_weights has 18 values", "model.head: factorized", "give 8 (mask 3, gender 2, age 3"),
    # -------- unknown registry names
    tcase("train-unknown-model", train_yaml(model={"name": "resnet999"}),
          "model.name", "unknown timm model 'resnet999'", "timm.list_models"),
    tcase("train-unknown-loss", train_yaml(loss={"name": "focall"}),
          "loss.name", "unknown loss 'focall'", "did you mean 'focal'", "valid: "),
    tcase("train-unknown-optimizer", train_yaml(optimizer={"name": "adamm"}),
          "optimizer.name", "unknown optimizer 'adamm'", "did you mean 'adam", "valid: "),
    tcase("train-unknown-scheduler", train_yaml(scheduler={"name": "cosin"}),
          "scheduler.name", "unknown scheduler 'cosin'", "did you mean 'cosine'", "valid: "),
    tcase("train-unknown-data-source", train_yaml(data=data(source="folder", root="photos")),
          "data.source = 'folder'", "not a data source", "valid: digits, imagefolder, csv, mask"),
    # -------- YAML files
    tcase("yaml-invalid-syntax", "data: {source: digits\nmodel: [resnet\n",
          "cfg.yaml", "not valid YAML", "fix the syntax"),
    tcase("yaml-top-level-list", "- data\n- model\n",
          "cfg.yaml", "top level must be a mapping", "got list"),
    Case("yaml-config-missing", ("train", "--config", "nope/cfg.yaml"),
         ("nope/cfg.yaml", "no such config file", "pass an existing YAML path")),
    # -------- data on disk
    tcase("data-imagefolder-root-missing", train_yaml(data=data(source="imagefolder", root="photos")),
          "data.root", "'photos' does not exist", "one sub-folder per class"),
    tcase("data-imagefolder-class-empty", train_yaml(data=data(source="imagefolder", root="photos")),
          "photos/dog", "holds no images", "add images or remove it",
          files={**folder(cat=[RED, RED]), "photos/dog/": None}),
    tcase("data-imagefolder-one-class", train_yaml(data=data(source="imagefolder", root="photos")),
          "'photos' has 1 class folder", "at least 2", files=folder(cat=[RED, RED, RED])),
    tcase("data-image-corrupt", train_yaml(data=data(source="imagefolder", root="photos", on_bad_image="fail")),
          "photos/dog/bad.png", "cannot read image", "data.on_bad_image: skip",
          files={**folder(cat=[RED, RED, RED], dog=[BLUE, BLUE]),
                 "photos/dog/bad.png": b"\x89PNG\r\n\x1a\nnot really"}),
    tcase("data-image-zero-bytes", train_yaml(data=data(source="imagefolder", root="photos", on_bad_image="fail")),
          "photos/cat/empty.png", "0 bytes", "data.on_bad_image: skip",
          files={**folder(cat=[RED, RED, RED], dog=[BLUE, BLUE, BLUE]), "photos/cat/empty.png": b""}),
    # a readable image smaller than the crop fails whatever data.on_bad_image says (skip is for unreadable files)
    tcase("data-center-crop-larger-than-image",
          train_yaml(data=data(source="imagefolder", root="photos", center_crop=[12, 6], on_bad_image="skip")),
          "photos/cat/0.png", "image is 8x8 (HxW)", "smaller than data.center_crop = [12, 6]", "6 of 6 images",
          "at most [8, 8]", "data.on_bad_image: skip does not drop them",
          files=folder(cat=[RED, RED, RED], dog=[BLUE, BLUE, BLUE])),
    tcase("data-csv-missing-column", train_yaml(data=data(source="csv", file="labels.csv", label_columns=["label"])),
          "labels.csv", "missing column(s) path", "file, label", "data.image_column",
          files={"labels.csv": "file,label\na.png,cat\nb.png,dog\n", "a.png": RED, "b.png": BLUE}),
    tcase("data-csv-label-not-in-classes",
          train_yaml(data=data(source="csv", file="labels.csv", label_columns=["label"], classes=["cat", "dog"])),
          "labels.csv", "row 4", "'bird'", "data.classes", "add it or fix the row",
          files={"labels.csv": "path,label\na.png,cat\nb.png,dog\nc.png,bird\n", "a.png": RED, "b.png": BLUE,
                 "c.png": RED}),
    tcase("data-csv-multilabel-not-0-1",
          train_yaml(data=data(source="csv", file="labels.csv", label_columns=["cat", "dog"]), loss={"name": "bce"}),
          "labels.csv", "row 3", "column 'dog' = '2'", "0 or 1",
          files={"labels.csv": "path,cat,dog\na.png,1,0\nb.png,0,2\n", "a.png": RED, "b.png": BLUE}),
    Case("cv-one-fold", ("cv", "--config", "cfg.yaml", "--folds", "1", "--output", "out"),
         ("--folds 1", "at least 2 folds"), {"cfg.yaml": train_yaml()}),
    Case("cv-more-folds-than-groups", ("cv", "--config", "cfg.yaml", "--folds", "3", "--output", "out"),
         ("data.folds = 3", "only 2 groups", "use at most 2 folds"),
         {"cfg.yaml": train_yaml(data=data(source="csv", file="labels.csv", label_columns=["label"],
                                           group_column="who")),
          "labels.csv": "path,label,who\n" + "".join(
              f"{i}.png,{'cat' if i % 2 else 'dog'},{'ann' if i < 4 else 'bob'}\n" for i in range(8)),
          **{f"{i}.png": RED if i % 2 else BLUE for i in range(8)}}),
    Case("train-seeds-not-integers", TRAIN_ARGS + ("--seeds", "0,one"), ("--seeds '0,one'", "e.g. 0,1,2"),
         {"cfg.yaml": train_yaml()}),
    scase("study-wilcoxon-too-few-folds", study_yaml(pruner={"name": "wilcoxon"}, cv={"folds": 3}),
          "cv.folds = 3 can never prune", "0.25, not below p_threshold 0.1", "use cv.folds >= 5"),
    scase("study-cv-warmup-covers-every-fold", study_yaml(pruner={"name": "median", "n_warmup_steps": 4},
                                                          cv={"folds": 5}),
          "pruner.n_warmup_steps = 4 with cv.folds = 5", "nothing can be pruned", "below 4"),
    scase("study-wilcoxon-without-cv", study_yaml(pruner={"name": "wilcoxon"}),
          "pruner.name = 'wilcoxon'", "add `cv: {folds: 5}`"),
    # -------- pruners, samplers, stopping (search/study/_pruners.py, _samplers.py, _stopping.py)
    scase("study-pruner-unknown", study_yaml(pruner={"name": "asha"}),
          "pruner.name = 'asha' is not a pruner", "valid: median, percentile, successive_halving, hyperband"),
    scase("study-pruner-other-pruners-key", study_yaml(pruner={"name": "successive_halving", "n_warmup_steps": 2}),
          "pruner.n_warmup_steps belongs to pruner median / percentile / wilcoxon, not 'successive_halving'",
          "successive_halving takes: min_early_stopping_rate, min_resource, reduction_factor"),
    scase("study-pruner-min-resource-over-epochs", study_yaml(training={"train": {"epochs": 3}},
                                                              pruner={"name": "hyperband", "min_resource": 5}),
          "pruner.min_resource = 5 is larger than the 3 epochs of a trial (training.train.epochs)",
          "use min_resource below 3"),
    scase("study-pruner-first-rung-at-last-epoch", study_yaml(training={"train": {"epochs": 3}},
                                                              pruner={"name": "successive_halving", "min_resource": 1,
                                                                      "min_early_stopping_rate": 1}),
          "pruner successive_halving can first prune at epoch 3", "its last is never pruned", "bring it below 3"),
    scase("study-pruner-patient-wraps-halving", study_yaml(pruner={"name": "patient", "patience": 1,
                                                                   "wrapped": {"name": "successive_halving"}}),
          "pruner.wrapped.name = 'successive_halving'", "would never prune", "wrap median or percentile"),
    scase("study-pruner-patient-wraps-wilcoxon-without-cv",
          study_yaml(training={"train": {"epochs": 5}},
                     pruner={"name": "patient", "patience": 1, "wrapped": {"name": "wilcoxon"}}),
          "pruner.wrapped.name = 'wilcoxon' compares fold scores", "add `cv: {folds: 5}`"),
    scase("study-pruner-reduction-factor", study_yaml(pruner={"name": "successive_halving", "reduction_factor": 1}),
          "pruner.reduction_factor = 1", "greater than or equal to 2"),
    scase("study-pruner-patient-needs-patience", study_yaml(pruner={"name": "patient", "wrapped": {"name": "median"}}),
          "missing required key 'pruner.patience'"),
    scase("study-pruner-patient-wrapped-unknown", study_yaml(pruner={"name": "patient", "patience": 2,
                                                                     "wrapped": {"name": "medain"}}),
          "pruner.wrapped.name = 'medain' is not a pruner", "did you mean 'median'"),
    scase("study-sampler-unknown", study_yaml(sampler={"name": "bayes"}),
          "sampler.name = 'bayes' is not a sampler", "valid: tpe, random, qmc, gp, cmaes"),
    scase("study-sampler-other-samplers-key", study_yaml(sampler={"name": "random", "n_startup_trials": 5}),
          "sampler.n_startup_trials belongs to sampler tpe / gp / cmaes, not 'random'", "random takes: seed"),
    scase("study-sampler-cmaes-categorical", study_yaml({"optimizer.name": {"choices": ["adamw", "sgd"]}},
                                                        sampler={"name": "cmaes"}),
          "sampler.name = 'cmaes' needs a numeric space", "search_space.optimizer.name is categorical",
          "use sampler.name: tpe"),
    scase("study-pruner-patient-in-patient", study_yaml(pruner={"name": "patient", "patience": 2,
                                                                "wrapped": {"name": "patient", "patience": 1}}),
          "pruner.wrapped.name = 'patient': a patient pruner inside a patient pruner", "wrap median or percentile"),
    scase("study-sampler-cmaes-conditional", study_yaml({"model.dropout": {"low": 0.0, "high": 0.5,
                                                                           "when": {"optimizer.name": "adamw"}}},
                                                        sampler={"name": "cmaes"}),
          "sampler.name = 'cmaes' needs an unconditional space", "search_space.model.dropout has `when`"),
    Case("run-trials-per-gpu-word", RUN_ARGS + ("--trials-per-gpu", "two"), ("--trials-per-gpu 'two'",
                                                                             "a whole number >= 1, or auto"),
         {"study.yaml": study_yaml()}),
    scase("study-stop-unknown-key", study_yaml(stop={"patience": 5}),
          "unknown key 'stop.patience'", "did you mean 'patience_trials'"),
    scase("study-stop-patience-zero", study_yaml(stop={"patience_trials": 0}),
          "stop.patience_trials = 0", "greater than or equal to 1"),
    tcase("data-mask-folder-bad-name", train_yaml(data=data(source="mask", root="images")),
          "folder 'person1'", "<id>_<male|female>_<race>_<age>", "rename or move it",
          files={"images/000001_female_Asian_45/mask1.png": RED, "images/person1/mask1.png": RED}),
    tcase("data-mask-file-bad-name", train_yaml(data=data(source="mask", root="images")),
          "mask_x", "mask1..mask5, incorrect_mask or normal", "rename or remove it",
          files={"images/000001_female_Asian_45/mask1.png": RED, "images/000001_female_Asian_45/mask_x.png": RED}),
    # -------- study files: unknown keys at every level, with the near name
    scase("study-key-top-n_trails", study_yaml(n_trails=3),
          "study.yaml", "unknown key 'n_trails'", "did you mean 'n_trials'"),
    scase("study-key-param-hgh", study_yaml({"model.dropout": {"low": 0.0, "hgh": 0.5}}),
          "unknown key 'search_space.model.dropout.hgh'", "did you mean 'high'"),
    scase("study-key-sampler", study_yaml(sampler={"name": "tpe", "n_startup_trails": 3}),
          "unknown key 'sampler.n_startup_trails'", "did you mean 'n_startup_trials'"),
    scase("study-key-pruner", study_yaml(pruner={"name": "median", "n_warmup_step": 2}),
          "unknown key 'pruner.n_warmup_step'", "did you mean 'n_warmup_steps'"),
    scase("study-key-wandb", study_yaml(wandb={"projet": "x"}),
          "unknown key 'wandb.projet'", "did you mean 'project'"),
    scase("study-key-reliability", study_yaml(reliability={"heartbeat_secs": 5}),
          "unknown key 'reliability.heartbeat_secs'", "did you mean 'heartbeat_seconds'"),
    scase("study-key-artifacts", study_yaml(artifacts={"keep_top": 2}),
          "unknown key 'artifacts.keep_top'", "did you mean 'keep_top_k'"),
    scase("study-artifacts-two-stores", study_yaml(artifacts={"path": "arts", "s3_bucket": "b"}),
          "study.yaml: artifacts:", "path = 'arts' and s3_bucket = 'b' name two stores", "keep one"),
    scase("study-key-training-optimzer", study_yaml(training={"optimzer": {"lr": 0.01}}),
          "unknown key 'training.optimzer'", "did you mean 'optimizer'"),
    scase("study-key-training-optimizer-lrr", study_yaml(training={"optimizer": {"lrr": 0.01}}),
          "unknown key 'training.optimizer.lrr'", "did you mean 'lr'"),
    # -------- study files: search-space values
    scase("space-low-above-high", study_yaml({"optimizer.lr": {"low": 0.1, "high": 0.001}}),
          "search_space.optimizer.lr", "low (0.1) > high (0.001)", "swap them"),
    scase("space-empty-choices", study_yaml({"optimizer.name": {"choices": []}}),
          "search_space.optimizer.name", "choices is empty", "list at least one value"),
    scase("space-log-low-zero", study_yaml({"optimizer.weight_decay": {"low": 0.0, "high": 0.1, "log": True}}),
          "search_space.optimizer.weight_decay", "log scale needs low > 0", "low=0.0"),
    scase("space-path-not-a-key", study_yaml({"optimizer.lrate": {"low": 0.001, "high": 0.1}}),
          "search_space.optimizer.lrate is not a training config key", "did you mean 'optimizer.lr'"),
    scase("space-default-outside-range", study_yaml({"model.dropout": {"low": 0.0, "high": 0.5, "default": 0.8}}),
          "search_space.model.dropout.default = 0.8", "outside [0.0, 0.5]", "inside the range"),
    scase("space-choice-unknown-optimizer", study_yaml({"optimizer.name": {"choices": ["adamw", "sgdd"]}}),
          "search_space.optimizer.name", "unknown optimizer 'sgdd'", "did you mean 'sgd'"),
    scase("space-choice-unknown-loss", study_yaml({"loss.name": {"choices": ["ce", "focall"]}}),
          "search_space.loss.name", "unknown loss 'focall'", "did you mean 'focal'"),
    scase("space-choice-unknown-scheduler", study_yaml({"scheduler.name": {"choices": ["cosine", "stepp"]}},
                                                      training={"scheduler": {"name": "cosine"}}),
          "search_space.scheduler.name", "unknown scheduler 'stepp'", "did you mean 'step'"),
    scase("space-choice-factorized-head-not-mask", study_yaml({"model.head": {"choices": ["single", "factorized"]}}),
          "search_space.model.head value 'factorized'", "model.head = 'factorized' needs data.source: mask",
          "data.source = 'digits'", "use model.head: single"),
    scase("space-when-unknown-path", study_yaml({"optimizer.momentum": {"low": 0.8, "high": 0.99,
                                                                         "when": {"optimizer.nmae": "sgd"}}}),
          "search_space.optimizer.momentum.when", "'optimizer.nmae'", "did you mean 'optimizer.name'"),
    Case("study-unknown-name", ("run", "--study", "dmeo", "--no-wandb"),
         ("no study 'dmeo'", "did you mean 'demo'", "pass a path")),
    # -------- predict and ensemble: inputs are checked before any image is decoded; no CSV is left behind
    pcase("predict-folder-without-images", ("--run", "run", "--images", "empty"),
          "--images empty", "no images under this folder", "give a folder of images",
          files={"empty/notes.txt": "not an image\n"}),
    pcase("predict-image-unreadable", ("--run", "run", "--images", "test"),
          "test/b.png", "cannot read image", "a prediction needs every image", "replace or remove the file",
          files={"test/b.png": b"\x89PNG\r\n\x1a\nnot really", "test/c.png": RED}),
    pcase("predict-info-csv-without-ImageID", ("--run", "run", "--images", "eval"),
          "eval/info.csv", "no 'ImageID' column", "the header has id, ans", "columns ImageID,ans",
          files={"eval/info.csv": "id,ans\na.png,\n", "eval/images/a.png": RED}),
    pcase("predict-info-csv-short-row", ("--run", "run", "--images", "eval"),
          "eval/info.csv", "row 3 has no ImageID", "remove the row",
          files={"eval/info.csv": "ans,ImageID\n0,a.png\n1\n", "eval/images/a.png": RED}),
    pcase("predict-run-without-checkpoint", ("--run", "run", "--images", "test"),
          "run folder 'run' has no checkpoint best.pt", "let it train, or pass a finished run",
          run=run_folder(without="best.pt")),
    pcase("predict-run-without-config", ("--run", "run", "--images", "test"),
          "run folder 'run' has no config.yaml", "pass a run folder that `search train` or a trial wrote",
          run=run_folder(without="config.yaml")),
    pcase("predict-runs-with-different-classes", ("--run", "a", "--run", "b", "--images", "test"),
          "runs to vote over have different class lists", "'a' has 10 classes", "'b' has 3 classes (cat, dog, bird)",
          "vote only over runs trained on the same classes",
          run={**run_folder("a"), **run_folder("b", ("cat", "dog", "bird"))}),
    pcase("predict-probabilities-with-hard-vote", ("--run", "run", "--images", "test", "--vote", "hard",
                                                   "--probabilities"),
          "--probabilities with --vote hard", "use --vote soft"),
    Case("predict-out-folder-missing", ("predict", "--run", "run", "--images", "test", "--out", "nofolder/pred.csv"),
         ("--out nofolder/pred.csv", "folder 'nofolder' does not exist", "create it"),
         {**run_folder(), "test/a.png": RED}, absent=("nofolder",)),
    Case("store-ensemble-top-k-above-completed", ("ensemble", "--study", "tiny", "--top-k", "3", "--storage", DB,
                                                  "--images", "test", "--out", "pred.csv"),
         ("--top-k 3 but study 'tiny' has 1 completed trial", "use --top-k 1 or less"),
         {"test/a.png": RED}, store=True, absent=("pred.csv",)),
    # -------- ranges checked before any work, and outputs that hold another run (issue: what a new user trips over)
    Case("run-timeout-zero", RUN_ARGS + ("--timeout", "0"), ("--timeout", "0 seconds", "give a time above 0"),
         {"study.yaml": study_yaml()}),
    Case("run-timeout-negative", RUN_ARGS + ("--timeout", "-5"), ("--timeout", "-5 seconds", "leave --timeout out"),
         {"study.yaml": study_yaml()}),
    Case("worker-timeout-zero", ("worker", "--study", "study.yaml", "--no-wandb", "--timeout", "0"),
         ("--timeout", "give a time above 0"), {"study.yaml": study_yaml()}),
    Case("run-trials-per-gpu-without-gpu", RUN_ARGS + ("--trials-per-gpu", "2"),
         ("--trials-per-gpu 2 shares GPUs, but this machine has none", "use --workers K"),
         {"study.yaml": study_yaml()}),
    Case("dashboard-port-zero", ("dashboard", "--port", "0"), ("--port", "0: give a whole number from 1 to 65535")),
    Case("train-threads-zero", TRAIN_ARGS + ("--threads", "0"), ("--threads", "0: give a whole number of at least 1"),
         {"cfg.yaml": train_yaml()}),
    Case("train-output-holds-a-run", TRAIN_ARGS, ("--output out already holds a finished run", "out/metrics.json",
                                                  "--overwrite"),
         {"cfg.yaml": train_yaml(), "out/metrics.json": "{}"}),
    Case("train-seeds-output-holds-a-run", TRAIN_ARGS + ("--seeds", "0,1"),
         ("--output out already holds a finished run", "out/seed-1/metrics.json"),
         {"cfg.yaml": train_yaml(), "out/seed-1/metrics.json": "{}"}),
    Case("train-output-is-a-file", TRAIN_ARGS, ("--output out is a file", "give a folder"),
         {"cfg.yaml": train_yaml(), "out": "notes"}),
    Case("cv-output-holds-a-run", ("cv", "--config", "cfg.yaml", "--folds", "2", "--output", "out"),
         ("--output out already holds a finished run", "out/fold-0/metrics.json", "--overwrite"),
         {"cfg.yaml": train_yaml(), "out/fold-0/metrics.json": "{}"}),
    Case("cv-more-folds-than-the-smallest-class", ("cv", "--config", "cfg.yaml", "--folds", "4", "--output", "out"),
         ("data.folds = 4", "class 'dog' has only 3 images", "use at most 3 folds", "add images of 'dog'"),
         {"cfg.yaml": train_yaml(data=data(source="imagefolder", root="photos")),
          **folder(cat=[RED] * 6, dog=[BLUE] * 3)}, absent=("out",)),
    Case("study-cv-more-folds-than-the-smallest-class", RUN_ARGS,
         ("study.yaml", "cv.folds = 4", "class 'dog' has only 3 images", "use at most 3 folds"),
         {"study.yaml": yaml.safe_dump({**STUDY, "training": {**TRAIN, "data": data(source="imagefolder",
                                                                                   root="photos")},
                                        "cv": {"folds": 4}}), **folder(cat=[RED] * 6, dog=[BLUE] * 3)}),
    tcase("train-warmup-not-below-epochs", train_yaml(scheduler={"name": "cosine", "warmup_epochs": 1}),
          "scheduler.warmup_epochs = 1 is not below train.epochs = 1", "use a warm-up below 1 epochs"),
    pcase("predict-many-images-unreadable", ("--run", "run", "--images", "test"),
          "cannot read images: 6 of 8 are unreadable", "test/c0.png", "all 6 are listed in pred.unreadable.txt",
          "replace or remove them",
          files={f"test/c{i}.png": b"\x89PNG\r\n\x1a\nnot really" for i in range(6)}),
    tcase("data-images-unreadable-counted",
          train_yaml(data=data(source="imagefolder", root="photos", on_bad_image="fail")),
          "cannot read images: 2 of 8 are unreadable", "photos/cat/bad.png", "photos/dog/bad.png",
          "data.on_bad_image: skip",
          files={**folder(cat=[RED, RED, RED], dog=[BLUE, BLUE, BLUE]), "photos/cat/bad.png": b"",
                 "photos/dog/bad.png": b"\x89PNG\r\n\x1a\nnot really"}),
    # -------- found by an adversarial sweep of the commands above
    Case("train-seeds-too-large", TRAIN_ARGS + ("--seeds", "99999999999999999999"),
         ("--seeds '99999999999999999999'", "from 0 to 4294967295"), {"cfg.yaml": train_yaml()}),
    tcase("train-seed-too-large", train_yaml(seed=99999999999999999999),
          "seed = 99999999999999999999", "less than or equal to 4294967295"),
    tcase("train-digits-limit-above-the-data", train_yaml(data=data(limit=100000)),
          "data.limit = 100000", "the built-in digits have 1797 images", "use at most 1797"),
    tcase("train-lr-not-a-number", train_yaml(optimizer={"lr": float("nan")}),
          "optimizer.lr = nan", "finite number"),
    tcase("train-loss-bce-leaves-no-run-folder", train_yaml(loss={"name": "bce"}), "loss.name = 'bce'",
          "single-label"),
    Case("train-default-folder-left-by-a-failure", ("train", "--config", "cfg.yaml"),
         ("loss.name = 'bce'", "single-label"), {"cfg.yaml": train_yaml(loss={"name": "bce"})}, absent=("runs",)),
    Case("yaml-not-utf8", ("train", "--config", "cfg.yaml"), ("cfg.yaml", "not UTF-8 text", "save the file as UTF-8"),
         {"cfg.yaml": b"seed: 0\n# caf\xe9\n"}),
    Case("yaml-duplicate-key", ("train", "--config", "cfg.yaml"),
         ("cfg.yaml", "line 3: key 'optimizer' is already set on line 1", "keep one of them"),
         {"cfg.yaml": "optimizer: {lr: 0.01}\nseed: 0\noptimizer: {lr: 0.1}\n"}),
    Case("train-config-empty", ("train", "--config", "cfg.yaml"), ("cfg.yaml", "the file is empty", "data and model"),
         {"cfg.yaml": ""}),
    Case("train-config-is-a-folder", ("train", "--config", "conf"), ("conf is a folder", "pass a YAML file"),
         {"conf/": None}),
    Case("cv-folds-name-the-rarest-class", ("cv", "--config", "cfg.yaml", "--folds", "8", "--output", "out"),
         ("data.folds = 8", "class '4' has only 4 images", "use at most 4 folds"), {"cfg.yaml": train_yaml()}),
    Case("cv-a-label-with-one-image", ("cv", "--config", "cfg.yaml", "--folds", "3", "--output", "out"),
         ("class 'dog' has only 1 image", "cross-validation needs 2 folds or more"),
         {"cfg.yaml": train_yaml(data=data(source="imagefolder", root="photos")),
          **folder(cat=[RED] * 6, dog=[BLUE])}),
    pcase("predict-run-is-a-file", ("--run", "run/config.yaml", "--images", "test"),
          "--run run/config.yaml is a file", "pass the run folder that holds it (run)"),
    pcase("predict-run-given-twice", ("--run", "run", "--run", "run", "--images", "test"),
          "--run run is given twice", "pass each folder once"),
    pcase("predict-metrics-not-json", ("--run", "run", "--images", "test"),
          "run/metrics.json: not valid JSON", "restore the folder", "or retrain the run",
          run={**run_folder(without="metrics.json"), "run/metrics.json": '{"classes": [1,'}),
    Case("storage-sqlite-is-a-folder", RUN_ARGS + ("--storage", "sqlite:///db"),
         ("'db' is a folder", "sqlite:///db/studies.db"), {"study.yaml": study_yaml(), "db/": None},
         absent=("db.schema.lock",)),
    Case("store-best-export-to-a-folder", ("best", "--study", "tiny", "--storage", DB, "--export", "exp"),
         ("--export exp is a folder", "exp/best.yaml"), {"exp/": None}, store=True),
    Case("store-dashboard-host-unknown", ("dashboard", "--storage", DB, "--host", "no-such-host.invalid"),
         ("--host no-such-host.invalid", "not an IPv4 address of this machine", "use 127.0.0.1"), store=True,
         forbid=("optuna-dashboard for",)),
    scase("study-sampler-seed-negative", study_yaml(sampler={"name": "random", "seed": -1}),
          "sampler.seed = -1", "greater than or equal to 0"),
    scase("study-stop-min-delta-above-one", study_yaml(stop={"patience_trials": 2, "min_delta": 5}),
          "stop.min_delta = 5", "less than 1"),
    Case("run-workers-zero-echoes-the-value", RUN_ARGS + ("--workers", "0"), ("--workers", "(got '0')"),
         {"study.yaml": study_yaml()}),
    # -------- why the model fails: explain, audit, data.exclude / data.relabel
    Case("explain-neither-run-nor-study", ("explain",), ("give one of --run DIR or --study NAME",)),
    Case("explain-unknown-method", ("explain", "--run", "run", "--method", "gradkam", "--out", "maps"),
         ("--method gradkam", "valid: gradcam, gradcam++, eigencam"), run_folder(), absent=("maps",)),
    Case("explain-run-without-mistakes-kept", ("explain", "--run", "run", "--out", "maps"),
         ("holds no val mistakes to explain", "pass --images"), run_folder(), absent=("maps",)),
    Case("audit-needs-folds", ("audit", "--config", "cfg.yaml"), ("--config and --folds K", "--from-cv"),
         {"cfg.yaml": train_yaml()}),
    Case("audit-from-cv-missing", ("audit", "--from-cv", "nocv"), ("--from-cv nocv: no such folder",)),
    Case("audit-from-cv-without-predictions", ("audit", "--from-cv", "cv", "--out", "aud"),
         ("not a cross-validation with kept predictions", "run `search cv`"),
         {**run_folder("cv/fold-0"), **run_folder("cv/fold-1")}, absent=("aud",)),
    Case("audit-from-cv-with-its-own-folds", ("audit", "--from-cv", "cv", "--folds", "3"),
         ("--from-cv reuses a cross-validation as it was trained", "leave out --config and --folds"),
         run_folder("cv/fold-0")),
    Case("audit-from-cv-without-folds", ("audit", "--from-cv", "empty"),
         ("--from-cv empty: no fold-i run folders in it", "a `search cv` output"), {"empty/notes.txt": "x"}),
    Case("audit-out-holds-an-earlier-audit", ("audit", "--from-cv", "cv", "--out", "aud"),
         ("--out aud already holds a finished run (aud/label_issues.csv)", "--overwrite"),
         {**run_folder("cv/fold-0"), "aud/label_issues.csv": "path,given,suggested,score\n"}),
    Case("explain-out-holds-earlier-maps", ("explain", "--run", "run", "--out", "maps"),
         ("--out maps already holds a finished run (maps/explain.png)", "--overwrite"),
         {**run_folder(), "maps/explain.png": "x"}),
    tcase("train-exclude-file-missing", train_yaml(data=data(exclude="issues.csv")),
          "data.exclude: file 'issues.csv' does not exist", "a CSV with a 'path' column"),
    tcase("train-exclude-path-not-in-the-data", train_yaml(data=data(source="imagefolder", root="photos",
                                                                     exclude="drop.txt")),
          "data.exclude: drop.txt line 3", "'photos/cat/9.png' is not an image of this data set", "fix the path",
          files={**folder(cat=[RED] * 3, dog=[BLUE] * 3), "drop.txt": "# from the sheet\n\nphotos/cat/9.png\n"}),
    tcase("train-relabel-unknown-class", train_yaml(data=data(source="imagefolder", root="photos",
                                                              relabel="fix.csv")),
          "data.relabel: fix.csv line 2", "label = 'bird' is not a class of this data set", "cat, dog",
          files={**folder(cat=[RED] * 3, dog=[BLUE] * 3), "fix.csv": "path,label\nphotos/cat/0.png,bird\n"}),
    # -------- command line
    Case("cli-missing-study-option", ("run", "--no-wandb"), ("Missing option '--study'", "search run --help")),
    Case("cli-unknown-command", ("trian", "--config", "cfg.yaml"), ("No such command 'trian'", "Did you mean 'train'")),
    # -------- storage URLs (the passwords in them must never be printed)
    Case("storage-unreachable", RUN_ARGS + ("--storage", "postgresql://postgres@127.0.0.1:1/x"),
         ("cannot open storage 'postgresql://postgres@127.0.0.1:1/x'", "database server is running"),
         {"study.yaml": study_yaml()}),
    Case("storage-password-redacted", ("status", "--study", "tiny", "--storage", f"postgresql://u:{SECRET}@127.0.0.1:1/db"),
         ("cannot open storage 'postgresql://u:***@127.0.0.1:1/db'", "check the URL"), forbid=(SECRET,)),
    Case("storage-malformed-url", ("dashboard", "--storage", "notaurl"),
         ("'notaurl' is malformed", "use sqlite:///file.db"), forbid=("http://127.0.0.1:8080",)),
    Case("storage-unsupported-scheme", ("status", "--study", "tiny", "--storage", "redis://127.0.0.1:6379/0"),
         ("scheme 'redis' is not supported", "use one of sqlite, postgresql")),
    Case("storage-sqlite-folder-missing", ("best", "--study", "tiny", "--storage", "sqlite:///nofolder/studies.db"),
         ("nofolder", "does not exist", "create it or change --storage")),
    # -------- an existing store: the command fails and the store is unchanged
    Case("store-study-clash-new-space", RUN_ARGS + ("--storage", DB),
         ("study 'tiny'", "different search space", "give the study a new name"),
         {"study.yaml": study_yaml({"model.dropout": {"low": 0.0, "high": 0.5}})}, store=True),
    Case("store-best-no-finished-trial", ("best", "--study", "nofinish", "--storage", DB),
         ("study 'nofinish' has no completed trial", "search run --study nofinish"), store=True),
    Case("store-best-export-missing-folder", ("best", "--study", "tiny", "--storage", DB, "--export", "out/best.yaml"),
         ("--export out/best.yaml", "folder 'out' does not exist", "create it"), store=True),
    Case("store-status-unknown-study", ("status", "--study", "tinny", "--storage", DB),
         ("no study 'tinny'", "did you mean 'tiny'", "it holds: nofinish, tiny"), store=True),
    Case("store-dashboard-artifacts-missing", ("dashboard", "--storage", DB, "--artifacts", "nope"),
         ("--artifacts nope: no such folder", "s3://BUCKET"), store=True, forbid=("http://127.0.0.1:8080",)),
]

# ------------------------------------------------------------------ running
#
# Every case runs in-process: the real entry point ``search.cli._app.main()`` with the argv, working directory and
# environment a `search` process would get, its stdout/stderr read at the file-descriptor level (tests/incli.py).
# The cases in SUBPROCESS also run as real `search` processes (in the background, while the in-process cases run)
# and must give the same exit status and error line there: the real process boundary stays covered.

SUBPROCESS = ("study-key-top-n_trails", "storage-password-redacted", "data-image-corrupt",
              "store-best-no-finished-trial", "cli-unknown-command")
DROP = ("SEARCH_STORAGE", "WANDB_API_KEY")


def _env_set(cache: Path) -> dict[str, str]:
    return dict(WANDB_MODE="offline", WANDB_SILENT="true", SEARCH_CACHE_DIR=str(cache), SEARCH_NUM_THREADS="1",
                PYTHONUNBUFFERED="1")


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    env.update(_env_set(cache))
    return env


def _search(args, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([SEARCH, *args], cwd=cwd, env=_env(cache), capture_output=True, text=True,
                          timeout=TIMEOUT)


def _snapshot(db: Path) -> dict:
    """Every study, its attributes, trials, values, params and trial attributes: the store's whole content."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        q = {
            "studies": "SELECT study_id, study_name FROM studies",
            "study_attrs": "SELECT study_id, key, value_json FROM study_user_attributes",
            "trials": "SELECT trial_id, number, study_id, state, datetime_start, datetime_complete FROM trials",
            "values": "SELECT trial_id, objective, value FROM trial_values",
            "params": "SELECT trial_id, param_name, param_value FROM trial_params",
            "trial_attrs": "SELECT trial_id, key, value_json FROM trial_user_attributes",
            "steps": "SELECT trial_id, step, intermediate_value FROM trial_intermediate_values",
        }
        return {k: sorted(c.execute(v).fetchall(), key=repr) for k, v in q.items()}


# a study that holds only a failed trial, as a run whose every trial failed leaves it; in its own process, since
# the template is built on a background thread while in-process cases own this process's stderr and warnings
_NOFINISH = """
import sys
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(study_name="nofinish", storage=f"sqlite:///{sys.argv[1]}", direction="maximize")
t = study.ask({"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)})
t.set_user_attr("fail_reason", "training loss became nan at epoch 1; lower optimizer.lr or use bf16/fp32")
study.tell(t, state=TrialState.FAIL)
"""


def _make_template(root: Path, cache: Path) -> Path:
    """A real store: `search run` of a 1-trial study ('tiny', one COMPLETE trial), plus a study 'nofinish' that
    holds only a failed trial."""
    (root / "tiny.yaml").write_text(study_yaml())
    r = _search(("run", "--study", "tiny.yaml", "--storage", DB, "--no-wandb", "--output", "runs"), root, cache)
    assert r.returncode == 0, f"template `search run` failed:\n{r.stdout}\n{r.stderr}"
    r = subprocess.run([sys.executable, "-c", _NOFINISH, str(root / "studies.db")], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, f"template study 'nofinish' failed:\n{r.stdout}\n{r.stderr}"
    snap = _snapshot(root / "studies.db")
    assert len(snap["studies"]) == 2 and len(snap["trials"]) == 2 and len(snap["values"]) == 1, snap
    return root / "studies.db"


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    before: dict | None = None
    after: dict | None = None
    db_created: bool = False
    inputs_changed: list[str] = field(default_factory=list)
    outputs_left: list[str] = field(default_factory=list)


def _write_files(cwd: Path, files: dict) -> None:
    for rel, content in files.items():
        p = cwd / rel
        if rel.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        content = content() if callable(content) else content  # made when the case runs (e.g. a checkpoint)
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)


def _run_case(case: Case, cwd: Path, template: Future | None, run) -> Outcome:
    """Set up the case's files (and store) in ``cwd``, ``run(args, cwd)``, and record what changed."""
    _write_files(cwd, case.files)
    inputs = {rel: (cwd / rel).read_bytes() for rel in case.files if not rel.endswith("/")}
    before = None
    if case.store:
        shutil.copy(template.result(), cwd / "studies.db")
        before = _snapshot(cwd / "studies.db")
    had_db = (cwd / "studies.db").exists()
    t0 = time.perf_counter()
    r = run(case.args, cwd)
    out = Outcome(r.returncode, r.stdout, r.stderr, time.perf_counter() - t0, before)
    if case.store:
        out.after = _snapshot(cwd / "studies.db")
    out.db_created = not had_db and (cwd / "studies.db").exists()
    out.inputs_changed = [rel for rel, b in inputs.items()
                          if not (cwd / rel).is_file() or (cwd / rel).read_bytes() != b]
    out.outputs_left = [rel for rel in case.absent if (cwd / rel).exists()]
    return out


@dataclass
class Background:
    template: Future | None          # the template store (studies.db), when a selected case needs it
    runs: dict[str, Future]          # case id -> (cwd, Outcome) of its real `search` process
    cache: Path                      # the decode cache of the in-process runs


@pytest.fixture(scope="module")
def background(request, tmp_path_factory):
    """Starts, on one background thread, the template store and the selected SUBPROCESS cases, each a real
    `search` process; the in-process cases run meanwhile (one core each on this 2-core machine)."""
    selected = {(item.originalname, item.callspec.params["case"].id) for item in request.session.items
                if item.module is request.module and "case" in getattr(getattr(item, "callspec", None), "params", {})}
    by_id = {c.id: c for c in CASES}
    subs = [c for c in CASES if ("test_bad_input_subprocess", c.id) in selected]
    base = tmp_path_factory.mktemp("bad-input")
    cache = base / "decode-cache"
    pool = ThreadPoolExecutor(max_workers=1)
    template = None
    if any(by_id[cid].store for _, cid in selected):
        (base / "template").mkdir()
        template = pool.submit(_make_template, base / "template", cache)

    def sub(c: Case) -> tuple[Path, Outcome]:
        (base / c.id).mkdir()
        return base / c.id, _run_case(c, base / c.id, template, lambda args, cwd: _search(args, cwd, cache))

    runs = {c.id: pool.submit(sub, c) for c in sorted(subs, key=lambda c: c.store)}  # store cases after the template
    yield Background(template, runs, base / "decode-cache-inproc")
    pool.shutdown(wait=True, cancel_futures=True)


def _in_process(bg: Background, capfd, monkeypatch):
    def run(args, cwd: Path) -> subprocess.CompletedProcess:
        return run_main(args, cwd=cwd, capfd=capfd, monkeypatch=monkeypatch, env=_env_set(bg.cache), drop=DROP)
    return run


# ------------------------------------------------------------------ the assertions

_LOG = re.compile(r"^(INFO|DEBUG) [\w.]+: ")  # progress lines of the CLI's own logging format


def meaningful(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip() and not _LOG.match(ln)]


def check(case: Case, r: Outcome, how: str) -> None:
    shown = f"`search {' '.join(case.args)}` ({how}) -> rc {r.rc}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    assert r.rc != 0, f"a user mistake must fail\n{shown}"
    assert "Traceback" not in r.stdout + r.stderr, f"a traceback reached the user\n{shown}"
    lines = meaningful(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), f"want exactly one 'error: ' line\n{shown}"
    missing = [s for s in case.expect if s not in lines[0]]
    assert not missing, f"the error line lacks {missing}:\n  {lines[0]}"
    leaked = [s for s in case.forbid if s in r.stdout + r.stderr]
    assert not leaked, f"output leaks {leaked}\n{shown}"
    assert not r.inputs_changed, f"the command changed its input files {r.inputs_changed}\n{shown}"
    assert not r.outputs_left, f"a failed command wrote {r.outputs_left}\n{shown}"
    if case.store:
        assert r.after == r.before, f"the store changed:\n before {r.before}\n after  {r.after}\n{shown}"
        assert len(r.after["trials"]) == 2 and len(r.after["values"]) == 1
    else:
        assert not r.db_created, f"a failed command created studies.db\n{shown}"


def test_corpus_is_large_and_ids_unique():
    assert len(CASES) >= 55
    assert len({c.id for c in CASES}) == len(CASES)
    assert set(SUBPROCESS) <= {c.id for c in CASES}


def test_in_process_runner_sees_what_a_process_prints(tmp_path, capfd, monkeypatch) -> None:
    """The harness itself: log records (the root handler of main()'s basicConfig, optuna's own handler), warnings
    and raw fd-2 writes reach the captured stderr; the exit status and an uncaught traceback come back as a process
    gives them; the environment and the logging setup are put back."""
    import logging
    import warnings

    import optuna

    import search.cli._app

    root_handlers = logging.getLogger().handlers[:]
    # optuna's handler, as an earlier test in this session may leave it: bound to a capture file closed since
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    handler = optuna.logging._default_handler
    stale = open(tmp_path / "closed.txt", "w")
    stale.close()
    monkeypatch.setattr(handler, "stream", stale)

    def noisy(standalone_mode: bool, prog_name: str) -> int:
        logging.getLogger("search.fake").warning("via-root")
        optuna.logging.get_logger("optuna.fake").warning("via-optuna")
        warnings.warn("via-warnings", UserWarning)
        os.write(2, b"via-fd-2\n")
        print("via-stdout")
        os.environ["SEARCH_FAKE"] = "leaked"
        return 3

    def crash(standalone_mode: bool, prog_name: str) -> int:
        raise RuntimeError("boom")

    for _ in range(2):  # the second call sees the handlers the first one left
        monkeypatch.setattr(search.cli._app, "app", noisy)
        r = run_main(("x",), cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
        assert r.returncode == 3, r
        assert [s for s in ("via-root", "via-optuna", "via-warnings", "via-fd-2") if s not in r.stderr] == [], r
        assert r.stdout == "via-stdout\n" and "Logging error" not in r.stderr, r
        assert "SEARCH_FAKE" not in os.environ
        assert logging.getLogger().handlers == root_handlers and handler.stream is stale
    monkeypatch.setattr(search.cli._app, "app", crash)
    r = run_main(("x",), cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 1 and "Traceback" in r.stderr and "RuntimeError: boom" in r.stderr, r


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, background: Background, tmp_path, capfd, monkeypatch) -> None:
    check(case, _run_case(case, tmp_path, background.template, _in_process(background, capfd, monkeypatch)),
          "in-process")


SUB_CASES = [c for c in CASES if c.id in SUBPROCESS]


@pytest.mark.slow  # end to end, with processes or several trials: not in `make test-fast`
@pytest.mark.parametrize("case", SUB_CASES, ids=[c.id for c in SUB_CASES])
def test_bad_input_subprocess(case: Case, background: Background, tmp_path, capfd, monkeypatch) -> None:
    """The real `search` process: the same checks, and the same exit status and error line as in-process."""
    cwd, r = background.runs[case.id].result()
    check(case, r, "subprocess")
    mine = _run_case(case, tmp_path, background.template, _in_process(background, capfd, monkeypatch))

    def seen(o: Outcome, d: Path) -> tuple:
        return o.rc, [ln.replace(str(d.resolve()), "<cwd>").replace(str(d), "<cwd>") for ln in meaningful(o.stderr)]

    assert seen(mine, tmp_path) == seen(r, cwd), "in-process and subprocess runs of the same case differ"
