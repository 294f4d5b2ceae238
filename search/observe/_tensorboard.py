"""Each trial as a TensorBoard run (``search run --tensorboard DIR``, or ``tensorboard: DIR`` in the study file):
``DIR/<study>/trial-NNNN`` holds its per-epoch scalars (the keys the W&B mirror logs) and, at its end, an HParams
session (its searched parameters, its state, and its macro-F1: the completed value, or the best a pruned or
failed trial reported), so that TensorBoard's HParams view compares the trials. Never fails a trial.

    tensorboard --logdir DIR
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

from search.store import EndHook, Lease
from training.errors import one_line

__all__ = ["TrialBoard", "Mirrors"]

log = logging.getLogger(__name__)


class TrialBoard(EndHook):
    def __init__(self, folder: Path | None, params: dict[str, Any]) -> None:
        self.writer, self.params, self.best = None, params, math.nan
        if folder is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder))
        except Exception as e:  # tensorboard missing, disk full: the trial still runs
            log.warning("TensorBoard disabled for %s: %s", folder.name, one_line(e))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        try:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
        except Exception as e:
            log.warning("TensorBoard log failed: %s", one_line(e))
        if isinstance(metrics.get("macro_f1"), float):
            self.best = metrics["macro_f1"] if math.isnan(self.best) else max(self.best, metrics["macro_f1"])

    def update_config(self, values: dict[str, Any]) -> None:
        pass

    def after_tell(self, lease: Lease) -> None:
        if self.writer is None:
            return
        value = lease.outcome.value if lease.outcome.value is not None else self.best
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in self.params.items()}
        try:
            if lease.outcome.ended is not None:  # else the store never learned the end: no session to close
                self.writer.add_hparams({**hparams, "state": lease.outcome.state.name}, {"hparam/macro_f1": value},
                                        run_name=".")
        except Exception as e:
            log.warning("TensorBoard HParams left out: %s", one_line(e))
        finally:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None


class Mirrors:
    """Where a trial's epochs go besides the store: its W&B run and its TensorBoard run, each told the same."""

    def __init__(self, *mirrors) -> None:
        self.mirrors = mirrors

    def log(self, metrics: dict[str, Any], step: int) -> None:
        for m in self.mirrors:
            m.log(metrics, step)

    def update_config(self, values: dict[str, Any]) -> None:
        for m in self.mirrors:
            m.update_config(values)
