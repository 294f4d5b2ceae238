"""benchmarks/prune_replay.py replays Optuna's MedianPruner on recorded curves: on the same trials it must stop
each one where the real pruner (built as search/study/_pruners.py builds it) does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import optuna
import pytest

from search.study._pruners import Median, build_pruner

ROOT = Path(__file__).resolve().parents[2]


def _replay_module():
    spec = importlib.util.spec_from_file_location("prune_replay", ROOT / "benchmarks" / "prune_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_optuna(curves: list[list[float]], startup: int, warmup: int, floor: float | None) -> tuple[int, float]:
    pruner = build_pruner(Median(n_startup_trials=startup, n_warmup_steps=warmup, floor=floor),
                          resources=len(curves[0]))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    used, best = 0, 0.0
    for curve in curves:
        trial = study.ask()
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            used += 1
            if epoch < len(curve) and trial.should_prune():  # a trial's last epoch is never pruned
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, float(np.nanmax(curve)) if not np.isnan(curve).all() else 0.0)
            best = max(best, float(np.nanmax(curve)) if not np.isnan(curve).all() else 0.0)
    return used, best


@pytest.mark.parametrize("startup,warmup,floor", [(1, 0, None), (2, 1, None), (3, 2, None), (5, 1, None),
                                                  (2, 1, 0.9), (3, 0, 0.8)])
def test_the_replay_stops_each_trial_where_optunas_median_pruner_does(startup, warmup, floor):
    """With a floor too: the median pruner's floor (search/study/_floor.py) built as a study file asks for it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(startup * 10 + warmup)
    # learning curves of mixed quality, some late bloomers: a plateau level times a rising shape, plus noise
    curves = [list(np.clip(rng.uniform(0.05, 0.9) * (1 - np.exp(-np.arange(1, 9) / rng.uniform(0.5, 4)))
                           + rng.normal(0, 0.03, 8), 0, 1)) for _ in range(30)]
    curves[7][1:4] = [float("nan")] * 3  # a diverged stretch, and a trial that never reported a number
    curves[12] = [float("nan")] * 8
    replayed = _replay_module().replay([{"curve": c} for c in curves], startup, warmup, floor or 0.0)
    assert replayed == _with_optuna(curves, startup, warmup, floor)
    assert replayed[0] < 30 * 8  # the rule acted
    if floor:  # the floor stops trials the median alone lets run
        assert replayed[0] < _replay_module().replay([{"curve": c} for c in curves], startup, warmup)[0]
