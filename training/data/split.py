"""Seeded train/val splits, a val_fraction or one fold of k: stratified by class, grouped (no group on both
sides) when groups exist."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold, train_test_split

from ..errors import DataError

__all__ = ["split_indices", "fold_indices", "check_folds"]

log = logging.getLogger(__name__)


def split_indices(targets: np.ndarray, groups: np.ndarray | None, val_fraction: float, seed: int,
                  multilabel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices; the same inputs always give the same split."""
    n = len(targets)
    idx = np.arange(n)
    strat = _strata(targets, multilabel)
    if n < 4:
        raise DataError(f"only {n} usable images; a train/val split needs at least 4: add images to the data set")
    if groups is not None:
        n_groups = len(set(groups.tolist()))
        if n_groups < 2:
            raise DataError(f"all {n} images belong to one group; a grouped split needs at least 2 groups: add "
                            "people (mask) or values of data.group_column (csv)")
        k = round(1 / val_fraction)
        exact = abs(1 / k - val_fraction) < 0.01
        if strat is not None and exact and 2 <= k <= n_groups and _min_groups_per_class(strat, groups) >= k:
            folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            tr, va = next(iter(folds.split(idx, strat, groups)))
        else:  # any other fraction: whole groups in a seeded random order until the share is reached
            tr, va = _greedy_groups(groups, val_fraction, seed)
    else:
        counts = np.bincount(np.unique(strat, return_inverse=True)[1]) if strat is not None else None
        n_val = int(np.ceil(val_fraction * n))  # scikit-learn's rounding: val gets the ceiling
        if n_val >= n:
            raise DataError(_empty_side(n, val_fraction, "train", f"{n_val} for val, none left to train on"))
        # stratify when every class can appear on both sides; tiny sets fall back to a plain seeded split
        ok = counts is not None and counts.min() >= 2 and min(n_val, n - n_val) >= len(counts)
        tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=strat if ok else None)
    if len(tr) == 0 or len(va) == 0:
        side = "train" if len(tr) == 0 else "val"
        n_groups = len(set(groups.tolist())) if groups is not None else None
        raise DataError(_empty_side(n, val_fraction, side, f"{len(tr)} train / {len(va)} val"
                                    + (f", {n_groups} groups kept whole" if n_groups else ""), n_groups))
    return np.sort(tr), np.sort(va)


def fold_indices(targets: np.ndarray, groups: np.ndarray | None, folds: int, fold: int, seed: int,
                 multilabel: bool = False, classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices of fold ``fold`` of ``folds``: the folds' val sides are disjoint and together
    cover every image; a group (a person, a group_column value) is never split between folds."""
    n = len(targets)
    idx = np.arange(n)
    strat = _strata(targets, multilabel)
    check_folds(targets, groups, folds, classes, multilabel)
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "least populated class has only 1 member": a rare class cannot be in
            warnings.simplefilter("ignore", UserWarning)  # every fold when whole people move; it is best-effort
            parts = list(splitter.split(idx, strat, groups))
    else:
        counts = np.unique(strat, return_counts=True)[1]
        # stratified when every class can be in every fold; else a plain seeded k-fold (scikit-learn would
        # warn and still leave some folds without the class)
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if counts.min() >= folds \
            else KFold(folds, shuffle=True, random_state=seed)
        parts = splitter.split(idx, strat)
    tr, va = list(parts)[fold]
    return np.sort(tr), np.sort(va)


def check_folds(targets: np.ndarray, groups: np.ndarray | None, folds: int, classes: list[str] | None = None,
                multilabel: bool = False) -> None:
    """Every fold's val side can hold every class: at least ``folds`` images of each class (multi-label: positives
    of each label), else one line naming the class. With groups (people, data.group_column values) there must be
    ``folds`` groups; a class held by fewer groups than folds is a warning (a group never splits, so a rare
    class of a small grouped set cannot be in every fold)."""
    n = len(targets)
    unit = "groups (people for mask data, data.group_column values for csv)" if groups is not None else "images"
    total = len(set(groups.tolist())) if groups is not None else n
    if folds > total:
        raise DataError(f"data.folds = {folds} but the {n} images " + (f"belong to only {total} {unit}" if groups is
                        not None else "are too few") + f": use at most {total} folds")
    members = [targets[:, c] > 0 for c in range(targets.shape[1])] if multilabel else \
        [targets == c for c in range(int(targets.max()) + 1)]
    held = [len(set(groups[rows].tolist())) if groups is not None else int(rows.sum()) for rows in members]
    short = [(have, c) for c, have in enumerate(held) if 0 < have < folds]
    if not short:
        return
    what = "label" if multilabel else "class"
    name = {c: classes[c] if classes and c < len(classes) else str(c) for _, c in short}
    if groups is not None:  # whole people move: a rare class cannot be in every fold; say so, not fail
        for have, c in short:
            log.warning("data.folds = %d but %s '%s' is held by only %d group(s), so %d of the folds validate "
                        "without it", folds, what, name[c], have, folds - have)
        return
    have, c = min(short)  # the rarest class bounds the folds: name it, so the advice holds at once
    fix = f"use at most {have} folds, or add" if have >= 2 else "cross-validation needs 2 folds or more: add"
    raise DataError(f"data.folds = {folds} but {what} '{name[c]}' has only {have} image{'s' if have != 1 else ''}, "
                    f"so {folds - have} of the folds would validate without it; {fix} images of '{name[c]}'")


def _empty_side(n: int, val_fraction: float, side: str, got: str, units: int | None = None) -> str:
    units = units or n  # grouped: whole groups move, so the fraction's grain is one group
    return (f"data.val_fraction = {val_fraction} on {n} images leaves the {side} side empty ({got}); "
            f"use a val_fraction between {1 / units:.2g} and {(units - 1) / units:.2g} (0.2 is usual), or add images")


def _strata(targets: np.ndarray, multilabel: bool) -> np.ndarray | None:
    if not multilabel:
        return targets
    # multi-label: stratify on the label combination when each combination is common enough
    combos = np.asarray(["".join(str(int(v)) for v in row) for row in targets])
    return combos


def _min_groups_per_class(strat: np.ndarray, groups: np.ndarray) -> int:
    return min(len(set(groups[strat == c].tolist())) for c in np.unique(strat))


def _greedy_groups(groups: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    target = val_fraction * len(groups)
    chosen, total = [], 0
    for g in np.random.default_rng(seed).permutation(len(uniq)):
        if total + sizes[g] / 2 <= target:
            chosen.append(g)
            total += sizes[g]
    if not chosen:
        chosen = [int(np.argmin(sizes))]
    in_val = np.isin(inverse, chosen)
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)
