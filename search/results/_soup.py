"""``search soup``: the weights of a study's top-k completed trials of one architecture, averaged into one model
(training/soup.py does the cooking); trials it cannot use are named, one line each."""

from __future__ import annotations

from pathlib import Path

import optuna

from search.errors import SearchError
from search.results._ensemble import top_run_folders
from training.errors import ConfigError
from training.run_folder import BEST_CHECKPOINT
from training.soup import SoupResult, cook, mismatch, read_ingredient

__all__ = ["soup"]


def soup(study: optuna.Study, k: int, out: Path, *, greedy: bool = True, log=print) -> SoupResult:
    """The ``k`` best completed trials, best first, of the architecture (and validation set) most of them share
    (on a tie, the best trial's); the others, and cross-validated ones (a model per fold), are left out with a
    note each."""
    read = []
    for number, folder in top_run_folders(study, k):
        if not (folder / BEST_CHECKPOINT).is_file():
            log(f"note: trial {number} left out: it is cross-validated (a model per fold, in {folder}); a soup "
                "averages single runs")
            continue
        try:
            read.append(read_ingredient(folder, f"trial {number}"))
        except ConfigError as e:
            log(f"note: trial {number} left out: {e}")
    if not read:
        raise SearchError(f"none of the top {k} trials of '{study.study_name}' is a single run to average; "
                          "soups take trials trained without cv")
    groups = [[b for b in read if mismatch(a, b) is None] for a in read]
    ingredients = max(groups, key=len)  # max keeps the first of equals: the best trial's group
    for other in read:
        if other not in ingredients:
            log(f"note: {other.name} left out: {mismatch(ingredients[0], other)}")
    log(f"soup of {len(ingredients)} trial(s) of {ingredients[0].cfg.model.name}: "
        f"{', '.join(i.name for i in ingredients)}")
    return cook(ingredients, out, greedy=greedy, log=log)
