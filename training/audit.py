"""A label audit: out-of-fold class probabilities for every image, and cleanlab's confident learning on them.

K-fold cross-validation of the config (training/cv.py: stratified, grouped folds, so no person is on both sides)
gives every image a probability from a model that never trained on it: its best epoch's val predictions, kept in
each fold's run folder. cleanlab's ``find_label_issues`` ranks the images whose given label those probabilities
disagree with (self-confidence: the probability of the given label, lowest first); the suggested label is the most
probable one (multi-label: the labels over the run's threshold). For mask data it also looks per person: a
person's images share a gender and an age group, so a person whose images agree on another one is listed.

It writes label_issues.csv (path, given, suggested, score; the most suspect first: an edited copy works as
``data.exclude`` or ``data.relabel``), label_issues.png (the top suspects, given vs suggested) and
oof_probabilities.csv. It costs K trainings of the config (none with ``from_cv``: an earlier `search cv`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import MASK_FACTORS, RunConfig
from .data.sources import load_samples
from .errors import ConfigError
from .mistakes import MAX_SHOWN, run_images, short_name
from .run_folder import model_folders, read_predictions
from .sheets import contact_sheet

__all__ = ["Issue", "Audit", "audit", "out_of_fold", "cv_folder_of", "OUTPUTS"]


@dataclass(frozen=True)
class Issue:
    name: str
    given: str
    suggested: str
    score: float          # cleanlab's label quality: the lower, the more likely the given label is wrong


@dataclass
class Audit:
    issues: list[Issue]                  # the images cleanlab flags, most suspect first
    n_images: int
    csv: Path
    sheet: Path | None
    probabilities: Path
    people: list[str] = field(default_factory=list)   # mask data: one line per person who looks mislabeled


OUTPUTS = ("label_issues.csv", "label_issues.png", "oof_probabilities.csv", "folds")  # what an audit writes


def cv_folder_of(folder: Path) -> Path:
    """The folder of fold-i runs that ``folder`` names: a `search cv` output or a cv trial's folder, or an
    earlier audit's output (its folds/)."""
    folder = Path(folder)
    if not any(folder.glob("fold-*")) and (folder / "folds").is_dir():
        folder = folder / "folds"
    if not any(p.is_dir() for p in folder.glob("fold-*")):
        raise ConfigError(f"--from-cv {folder}: no fold-i run folders in it; pass a `search cv` output, a cv "
                          "trial's folder or an earlier audit's output")
    return folder


def out_of_fold(cv_folder: Path, expected: list[str] | None = None):
    """Every fold's val predictions together: (names, probabilities [N, C], targets, classes, multilabel); each
    image once, as the folds' val sides partition the data. With ``expected`` (the data set's images), a
    cross-validation that leaves some out (a fold missing, pruned or unfinished) is refused."""
    folds = [f for f in model_folders(Path(cv_folder)) if f != Path(cv_folder)]
    preds = [read_predictions(f) for f in folds]
    if not folds or any(p is None for p in preds):
        raise ConfigError(f"{cv_folder}: not a cross-validation with kept predictions (fold-i run folders with "
                          "val_predictions.npz); run `search cv` (or `search audit --folds K`) with this version")
    names = [n for p in preds for n in p.names]
    if len(set(names)) != len(names):
        raise ConfigError(f"{cv_folder}: an image is validated in two folds; its folds are not one partition")
    missing = sorted(set(expected) - set(names)) if expected is not None else []
    if missing:
        raise ConfigError(f"{cv_folder}: its {len(folds)} folds validate {len(names)} of the data set's "
                          f"{len(set(expected))} images ({missing[0]} is in none; a fold missing or unfinished?); "
                          "audit a complete cross-validation, or pass --folds K to run one")
    return (names, np.concatenate([p.probabilities for p in preds]), np.concatenate([p.targets for p in preds]),
            preds[0].classes, preds[0].multilabel)


def _find(targets: np.ndarray, probabilities: np.ndarray, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's ranked label issues (indices, most suspect first) and every image's label quality score."""
    from cleanlab.filter import find_label_issues

    if multilabel:
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        labels = [list(np.flatnonzero(t > 0.5)) for t in targets]
        ranked = find_label_issues(labels, probabilities, multi_label=True, return_indices_ranked_by="self_confidence")
        return ranked, get_label_quality_scores(labels, probabilities)
    from cleanlab.rank import get_label_quality_scores

    labels = targets.astype(np.int64)
    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    return ranked, get_label_quality_scores(labels, probabilities)


def _label(classes: list[str], target, multilabel: bool, threshold: float = 0.5) -> str:
    if multilabel:
        return ";".join(c for c, v in zip(classes, target) if v > threshold) or "(none)"
    return classes[int(target)]


def audit(cfg: RunConfig, out: Path, folds: int | None = None, from_cv: Path | None = None,
          epoch_callback=None, fold_callback=None) -> Audit:
    """Audit ``cfg``'s labels: cross-validate it into ``out/folds`` (or read ``from_cv``), then rank the issues."""
    from .cv import cross_validate

    cv_folder = cv_folder_of(from_cv) if from_cv is not None else out / "folds"
    if from_cv is None:
        cross_validate(cfg, cv_folder, folds, epoch_callback=epoch_callback, fold_callback=fold_callback)
    samples = load_samples(cfg.data)
    names, probabilities, targets, classes, multilabel = out_of_fold(cv_folder, samples.names)
    ranked, scores = _find(targets, probabilities, multilabel)
    out.mkdir(parents=True, exist_ok=True)
    threshold = cfg.train.threshold
    suggested = probabilities > threshold if multilabel else probabilities.argmax(axis=1)
    issues = [Issue(names[i], _label(classes, targets[i], multilabel), _label(classes, suggested[i], multilabel),
                    float(scores[i])) for i in ranked]
    table = _write_issues(out / "label_issues.csv", issues)
    probs = _write_probabilities(out / "oof_probabilities.csv", names, classes, targets, probabilities, multilabel)
    sheet = None
    if issues:
        top = issues[:MAX_SHOWN]
        sheet = contact_sheet(run_images(cv_folder, [i.name for i in top]),
                              [f"{i.given} → {i.suggested} ({i.score:.2g})\n{short_name(i.name)}" for i in top],
                              out / "label_issues.png", f"{len(top)} of {len(issues)} images whose label looks "
                              "wrong, the most suspect first (given → suggested (label quality))")
    people = _people(samples, names, probabilities, targets) if cfg.data.source == "mask" and not multilabel else []
    return Audit(issues, len(names), table, sheet, probs, people)


def _write_issues(path: Path, issues: list[Issue]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "given", "suggested", "score"])
        w.writerows([i.name, i.given, i.suggested, f"{i.score:.4g}"] for i in issues)
    return path


def _write_probabilities(path: Path, names: list[str], classes: list[str], targets: np.ndarray,
                         probabilities: np.ndarray, multilabel: bool) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "given", *classes])
        for n, t, p in zip(names, targets, probabilities):
            w.writerow([n, _label(classes, t, multilabel), *(f"{v:.6f}" for v in p)])
    return path


def _people(samples, names: list[str], probabilities: np.ndarray, targets: np.ndarray) -> list[str]:
    """Mask data: a person's images share a gender and an age group (the 18 classes are mask x gender x age).
    A person whose images' mean out-of-fold probability puts another gender or age group first is listed."""
    group = dict(zip(samples.names, samples.groups))
    shape = tuple(MASK_FACTORS.values())  # mask, gender, age
    lines = []
    for person in sorted(set(group[n] for n in names)):
        rows = [k for k, n in enumerate(names) if group[n] == person]
        grid = probabilities[rows].reshape(len(rows), *shape).mean(axis=0)
        given = np.unravel_index(int(targets[rows[0]]), shape)
        for axis, (what, labels) in enumerate((("gender", ("male", "female")), ("age", ("young", "middle", "old"))),
                                              start=1):
            marginal = grid.sum(axis=tuple(a for a in range(3) if a != axis))
            if int(marginal.argmax()) != given[axis]:
                lines.append(f"person {person}: given {labels[given[axis]]}, their {len(rows)} images say "
                             f"{labels[int(marginal.argmax())]} ({marginal.max():.2f}) for {what}")
    return lines
