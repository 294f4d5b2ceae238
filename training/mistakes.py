"""A finished run's validation mistakes at its best epoch, most confident first, and the sheet that shows them.

From the run folder's val predictions (training/run_folder.py): a single-label mistake is an image whose most
probable class is not its label, ranked by that class's probability (a confident mistake first: a wrong label,
or what the model has learned wrong); a multi-label mistake is an image with at least one label wrong at the
run's threshold, ranked by how many, then by how far the probabilities lie from the labels. A cross-validated
run's folds are taken together: each image is validated in exactly one fold. The images are shown as the model
saw them (the run's crop and resize), read through its data config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import load_config
from .data.images import fit_image
from .data.sources import load_samples
from .files import atomic_path
from .run_folder import CONFIG_FILE, ValPredictions, model_folders, read_predictions
from .sheets import contact_sheet

__all__ = ["Mistake", "mistakes", "errors_png", "run_images", "short_name", "MAX_SHOWN"]

MAX_SHOWN = 32


@dataclass(frozen=True)
class Mistake:
    name: str                # the image as split.json names it
    true: str                # its label (multi-label: the labels on, joined by ';')
    predicted: str           # what the model said (multi-label: the labels over the threshold)
    probability: float       # of the predicted class (multi-label: the mean distance of all its labels'
                             # probabilities from the truth)
    wrong: int = 1           # wrong labels (1 for single-label)

    @property
    def caption(self) -> str:
        return f"{self.true} → {self.predicted} ({self.probability:.2f})\n{short_name(self.name)}"


def short_name(name: str) -> str:
    """An image's name for a caption: its folder and file (a class folder, or a mask person's folder)."""
    return "/".join(Path(name).parts[-2:])


def _joined(classes: list[str], on: np.ndarray) -> str:
    return ";".join(c for c, v in zip(classes, on) if v) or "(none)"


def _of_run(p: ValPredictions, threshold: float) -> list[Mistake]:
    if p.multilabel:
        said = p.probabilities > threshold
        truth = p.targets > 0.5
        wrong = (said != truth).sum(axis=1)
        far = np.abs(p.probabilities - truth).mean(axis=1)
        return [Mistake(p.names[i], _joined(p.classes, truth[i]), _joined(p.classes, said[i]), float(far[i]),
                        int(wrong[i])) for i in np.flatnonzero(wrong)]
    said = p.probabilities.argmax(axis=1)
    return [Mistake(p.names[i], p.classes[int(p.targets[i])], p.classes[int(said[i])],
                    float(p.probabilities[i, said[i]])) for i in np.flatnonzero(said != p.targets)]


def mistakes(folder: str | Path, limit: int | None = None) -> list[Mistake]:
    """The run's (with cv, its folds') val mistakes at the best epoch, the most confident first."""
    found = []
    for run in model_folders(Path(folder)):
        p = read_predictions(run)
        if p is not None:
            found += _of_run(p, load_config(run / CONFIG_FILE).train.threshold)
    found.sort(key=lambda m: (-m.wrong, -m.probability, m.name))
    return found[:limit] if limit is not None else found


def run_images(folder: str | Path, names: list[str]) -> list[np.ndarray]:
    """The named images of a run's data set as its model saw them: read through its data config, cropped and
    resized to its input. For a cv run, any fold's config will do: they share the data. The data set is read
    as its source holds it, before data.exclude: an image excluded since the run trained is still shown."""
    cfg = load_config(model_folders(Path(folder))[0] / CONFIG_FILE)
    samples = load_samples(cfg.data.model_copy(update={"exclude": None, "relabel": None}))
    index = {n: i for i, n in enumerate(samples.names)}
    return [fit_image(samples.load(index[n]), cfg.data) for n in names]


def errors_png(folder: str | Path, path: Path, title: str = "") -> Path | None:
    """The sheet of the run's most confident val mistakes (up to MAX_SHOWN), written to ``path`` whole or not at
    all; None (nothing written) when it made none (or kept no predictions)."""
    shown = mistakes(folder, MAX_SHOWN)
    if not shown:
        return None
    total = len(mistakes(folder))
    head = f"{title}: " if title else ""
    images = run_images(folder, [m.name for m in shown])
    with atomic_path(path) as tmp:
        contact_sheet(images, [m.caption for m in shown], tmp, f"{head}{len(shown)} of {total} val mistakes at the "
                      "best epoch, the most confident first (true → predicted (probability))")
    return Path(path)
