"""Several runs' probabilities -> one decision per image (and per label, for multi-label runs)."""

from __future__ import annotations

import numpy as np

__all__ = ["VOTES", "vote"]

VOTES = ("soft", "hard")


def vote(probs: list[np.ndarray], how: str, multilabel: bool, thresholds: list[float]) -> np.ndarray:
    """``probs``: each run's [N, C] probabilities. Returns the class index per image [N], or for multi-label
    runs a 0/1 decision per label [N, C].

    soft: the mean probability decides (argmax; multi-label: above the threshold). hard: each run decides
    (argmax; multi-label: its own threshold) and the majority wins; a tie goes to the tied class with the highest
    mean probability (multi-label: a tied label is on when its mean probability is above the threshold).
    ``thresholds``: each run's train.threshold; where they differ, the mean probability is compared with their
    mean. One run: its own decision, either way."""
    if how not in VOTES:
        raise ValueError(f"unknown vote {how!r}")
    stack = np.stack(probs)                     # [K, N, C]
    mean = stack.mean(axis=0)
    if multilabel:
        mean_on = mean > float(np.mean(thresholds))
        if how == "soft":
            return mean_on.astype(np.int64)
        ayes = (stack > np.asarray(thresholds, dtype=np.float64)[:, None, None]).sum(axis=0)
        k = len(probs)
        return np.where(2 * ayes == k, mean_on, 2 * ayes > k).astype(np.int64)
    if how == "soft":
        return mean.argmax(axis=1)
    n, c = mean.shape
    votes = np.zeros((n, c), np.int64)
    for p in stack:
        np.add.at(votes, (np.arange(n), p.argmax(axis=1)), 1)
    tied = votes == votes.max(axis=1, keepdims=True)
    return np.where(tied, mean, -np.inf).argmax(axis=1)
