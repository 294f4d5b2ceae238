"""The predictions as a CSV, written atomically: a failed run leaves no file, a finished one a whole file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..files import atomic_path
from .inputs import Inputs

__all__ = ["check_output", "write_predictions"]


def check_output(path: str | Path) -> Path:
    """Fail before any work when the CSV could not be written."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--out {p}: is a folder; give the path of the CSV file to write")
    if not p.parent.is_dir():
        raise ConfigError(f"--out {p}: folder '{p.parent}' does not exist; create it or write elsewhere")
    return p


def _rows(inputs: Inputs, classes: list[str], multilabel: bool, decision: np.ndarray,
          probabilities: np.ndarray | None) -> tuple[list[str], list[list]]:
    ids = inputs.ids
    if probabilities is not None:  # one column per class (label), in the run's class order
        return [inputs.id_column, *classes], [[i, *(f"{v:.6f}" for v in row)] for i, row in zip(ids, probabilities)]
    if multilabel:  # one 0/1 column per label
        return [inputs.id_column, *classes], [[i, *(int(v) for v in row)] for i, row in zip(ids, decision)]
    if inputs.layout == "mask-eval":  # the competition's submission: ImageID,ans
        return ["ImageID", "ans"], [[i, int(k)] for i, k in zip(ids, decision)]
    return ["image", "class", "index"], [[i, classes[k], int(k)] for i, k in zip(ids, decision)]


def write_predictions(path: Path, inputs: Inputs, classes: list[str], multilabel: bool, decision: np.ndarray,
                      probabilities: np.ndarray | None = None) -> None:
    """One row per input image, in input order (see the README's ``search predict`` for the columns)."""
    header, rows = _rows(inputs, classes, multilabel, decision, probabilities)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
