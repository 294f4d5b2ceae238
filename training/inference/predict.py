"""``predict``: one or more finished runs on a set of images -> one CSV row per image."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .inputs import Inputs, read_inputs
from .output import check_output, write_predictions
from .passes import TTA, run_probabilities
from .runs import check_same_classes, inference_batch, inference_runtime, load_model, read_run
from .vote import VOTES, vote

__all__ = ["Prediction", "predict"]

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    inputs: Inputs
    classes: list[str]
    multilabel: bool
    decision: np.ndarray            # [N] class index, or [N, C] 0/1 for multi-label runs
    probabilities: np.ndarray       # [N, C] the runs' mean (after TTA)
    per_run: list[np.ndarray]       # each run's [N, C] (after TTA)


def _check_options(tta: str | None, how: str, probabilities: bool) -> None:
    if tta is not None and tta not in TTA:
        raise ConfigError(f"--tta {tta}: unknown test-time augmentation; valid: {', '.join(TTA)}")
    if how not in VOTES:
        raise ConfigError(f"--vote {how}: unknown vote; valid: {', '.join(VOTES)}")
    if probabilities and how == "hard":
        raise ConfigError("--probabilities with --vote hard: a hard vote gives classes, not probabilities; "
                          "use --vote soft (the default) to write the runs' mean probabilities")


def predict(runs: list[str | Path], images: str | Path, out: str | Path | None = None, *, tta: str | None = None,
            how: str = "soft", probabilities: bool = False, batch_size: int | None = None) -> Prediction:
    """Predict ``images`` (a folder, a list or the mask eval layout: inputs.read_inputs) with the runs' best.pt
    and vote (``how``: soft | hard); ``out``: write the CSV there. Every input is checked (the output folder, the
    image list, the run folders and their class lists) before any image is decoded; nothing is written unless
    every image was predicted. ``batch_size``: images per forward pass (default: runs.inference_batch)."""
    if not runs:
        raise ConfigError("no run to predict with; pass at least one --run folder")
    _check_options(tta, how, probabilities)
    path = check_output(out) if out is not None else None
    inputs = read_inputs(images)
    loaded = [read_run(r) for r in runs]
    check_same_classes(loaded)
    first = loaded[0]
    if inputs.layout == "mask-eval" and first.multilabel:
        raise ConfigError(f"--images {images}: the mask eval layout's 'ans' is one class per image, but run "
                          f"'{first.folder}' is multi-label; predict a folder or a list instead")
    runtimes = [inference_runtime(r.cfg) for r in loaded]
    models = [load_model(r, rt) for r, rt in zip(loaded, runtimes)]
    sizes = [batch_size or inference_batch(r.cfg, rt) for r, rt in zip(loaded, runtimes)]
    log.info("predicting %d images with %d run(s) on %s", len(inputs), len(loaded), runtimes[0].device)
    per_run = run_probabilities(inputs.paths, loaded, models, runtimes, sizes, tta,
                                unreadable_list=path.with_suffix(".unreadable.txt") if path is not None else None)
    decision = vote(per_run, how, first.multilabel, [r.cfg.train.threshold for r in loaded])
    result = Prediction(inputs, first.classes, first.multilabel, decision, np.stack(per_run).mean(axis=0), per_run)
    if path is not None:
        write_predictions(path, inputs, result.classes, result.multilabel, decision,
                          result.probabilities if probabilities else None)
    return result
