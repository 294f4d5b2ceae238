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


def _with_optuna(curves: list[list[float]], startup: int, warmup: int) -> tuple[int, float]:
    pruner = build_pruner(Median(n_startup_trials=startup, n_warmup_steps=warmup), resources=len(curves[0]))
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


@pytest.mark.parametrize("startup,warmup", [(1, 0), (2, 1), (3, 2), (5, 1)])
def test_the_replay_stops_each_trial_where_optunas_median_pruner_does(startup, warmup):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(startup * 10 + warmup)
    # learning curves of mixed quality, some late bloomers: a plateau level times a rising shape, plus noise
    curves = [list(np.clip(rng.uniform(0.05, 0.9) * (1 - np.exp(-np.arange(1, 9) / rng.uniform(0.5, 4)))
                           + rng.normal(0, 0.03, 8), 0, 1)) for _ in range(30)]
    curves[7][1:4] = [float("nan")] * 3  # a diverged stretch, and a trial that never reported a number
    curves[12] = [float("nan")] * 8
    replayed = _replay_module().replay([{"curve": c} for c in curves], startup, warmup)
    assert replayed == _with_optuna(curves, startup, warmup)
    assert replayed[0] < 30 * 8  # the rule acted
