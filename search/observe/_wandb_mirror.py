"""Mirror each trial to one W&B run: config = the full resolved training config (dotted keys) with the searched
parameters named, per-epoch metrics with per-class F1, and at the end the best epoch's confusion matrix and
per-class F1 table and the state (with its prune or fail reason). Never fails a trial."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from search.store import EndHook, Lease, redact
from training.errors import one_line
from training.mistakes import MAX_SHOWN, mistakes, run_images
from training.run_folder import best_epoch_result

__all__ = ["TrialMirror", "wandb_mode", "run_config", "per_class_metrics"]

log = logging.getLogger(__name__)


def wandb_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def run_config(training: dict[str, Any], params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The W&B config of a trial: every field of its resolved training config as a dotted key (the notation of
    the search space, so ``augment.train.0.p`` names a list item), ``searched``: the names of the searched
    parameters among them, and ``extra`` (trial, study). W&B filters and groups runs by these keys."""
    return {**_flatten(training), **params, "searched": sorted(params), **extra}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dicts and lists of dicts become dotted keys; a list of plain values (milestones, mean) stays one value."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, v in items:
        out.update(_flatten(v, f"{prefix}.{key}" if prefix else str(key)))
    return out


def per_class_metrics(per_class_f1: dict[str, float | None] | None) -> dict[str, float]:
    """An epoch's per-class F1 as W&B keys (one chart section, ``per_class_f1/``); a class with no F1 (absent
    from val, never predicted) is left out rather than drawn as 0."""
    return {f"per_class_f1/{c}": v for c, v in (per_class_f1 or {}).items() if v is not None}


@contextlib.contextmanager
def _redacted_argv():
    saved = sys.argv
    sys.argv = [redact(a) for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


class TrialMirror(EndHook):
    """A W&B run per trial; every call swallows W&B errors (logged once) so training goes on. One of the lease's
    end hooks: the run is finished with the trial's outcome, however the trial ended."""

    def __init__(self, enabled: bool, *, project: str, group: str, name: str, config: dict[str, Any],
                 mode: str, directory: Path, entity: str | None = None, output_dir: Path | None = None) -> None:
        self.run = None
        self.output_dir = output_dir  # the trial's run folder: the end of the run reads its best epoch
        self._step = 0
        if not enabled:
            return
        try:
            import wandb

            directory.mkdir(parents=True, exist_ok=True)
            with _redacted_argv():  # W&B records the command line: --storage may carry a password
                self.run = wandb.init(project=project, group=group, name=name, entity=entity, config=config,
                                      mode=wandb_mode(mode), dir=str(directory), reinit="create_new",
                                      settings=wandb.Settings(silent=True, console="off"))
        except Exception as e:  # no network, bad key, disk full: the trial still runs
            log.warning("W&B disabled for %s: %s", name, redact(one_line(e, with_type=False)))
            self.run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(metrics, step=step)
            self._step = max(self._step, step)
        except Exception as e:
            log.warning("W&B log failed: %s", e)

    def update_config(self, values: dict[str, Any]) -> None:
        """Values known only once training ran (``train.batch_size: auto`` resolved)."""
        if self.run is None:
            return
        try:
            self.run.config.update(values, allow_val_change=True)
        except Exception as e:
            log.warning("W&B config update failed: %s", e)

    def after_tell(self, lease: Lease) -> None:
        if lease.outcome.ended is not None:  # else the store never learned the end: the run stays open (crashed)
            self.finish(lease.outcome.state.name, lease.outcome.summary)

    def finish(self, state: str, summary: dict[str, Any]) -> None:
        """Once, when the lease ends the trial: the best epoch's tables, then the state (and ``reason``, for a
        pruned or failed trial) in the summary."""
        if self.run is None:
            return
        try:
            self._log_result()
        except Exception as e:  # missing or half-written metrics cost the tables, not the state
            log.warning("W&B result tables failed: %s", e)
        try:
            self.run.summary.update({**summary, "state": state})
            self.run.finish(exit_code=0 if state in ("COMPLETE", "PRUNED") else 1)
        except Exception as e:
            log.warning("W&B finish failed: %s", e)
        self.run = None

    def _log_result(self) -> None:
        import wandb

        result = best_epoch_result(self.output_dir)
        if result is None:
            return
        classes, matrix = result["classes"], result["confusion_matrix"]
        f1 = result["per_class_f1"]
        tables = {"per_class_f1_table": wandb.Table(columns=["class", "f1"], data=[[c, f1[c]] for c in classes])}
        if result["multilabel"]:  # one 2 x 2 matrix per label
            tables["confusion_matrix_table"] = wandb.Table(
                columns=["label", "tn", "fp", "fn", "tp"],
                data=[[c, m[0][0], m[0][1], m[1][0], m[1][1]] for c, m in zip(classes, matrix)])
        else:
            # W&B's chart wants (true, predicted) pairs, which we don't keep; the matrix's counts give them back
            # exactly, in some order, and the chart only counts them
            pairs = [(i, j) for i, row in enumerate(matrix) for j, n in enumerate(row) for _ in range(n)]
            where = f"best epoch {result['best_epoch']}" if result["best_epoch"] else "folds summed"
            tables["confusion_matrix"] = wandb.plot.confusion_matrix(
                y_true=[i for i, _ in pairs], preds=[j for _, j in pairs], class_names=classes,
                title=f"{self.run.name}: validation, {where}")
        try:  # the best epoch's most confident val mistakes, captioned as errors.png is; the tables go anyway
            shown = mistakes(self.output_dir, MAX_SHOWN)
            if shown:
                tables["errors"] = [wandb.Image(image, caption=m.caption.replace("\n", " | "))
                                    for image, m in zip(run_images(self.output_dir, [m.name for m in shown]), shown)]
        except Exception as e:
            log.warning("W&B errors images left out: %s", one_line(e))
        self.run.log(tables, step=self._step)
