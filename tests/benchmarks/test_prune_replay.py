"""benchmarks/prune_replay.py replays Optuna's MedianPruner on recorded curves: on the same trials it must stop
each one where the real pruner (built as search/study/_pruners.py builds it) does; ``--pruner`` replays any pruner
a study file names."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from clitools import cli_env
from search.study._pruners import Median, build_pruner

ROOT = Path(__file__).resolve().parents[2]


def _replay_module():
    spec = importlib.util.spec_from_file_location("prune_replay", ROOT / "benchmarks" / "prune_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stops(curves: list[list[float]], pruner: optuna.pruners.BasePruner) -> list[int]:
    """Each trial's epochs under ``pruner``, asked by Optuna epoch by epoch (its last epoch is never pruned)."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    stops = []
    for curve in curves:
        trial = study.ask()
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            if epoch < len(curve) and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, float(np.nanmax(curve)) if not np.isnan(curve).all() else 0.0)
        stops.append(epoch)
    return stops


def _used_best(curves: list[list[float]], stops: list[int]) -> tuple[int, float]:
    """(epochs trained, best final macro-F1 of the trials that ran every epoch)."""
    done = [float(np.nanmax(c)) for c, e in zip(curves, stops) if e == len(c) and not np.isnan(c).all()]
    return sum(stops), max(done, default=0.0)


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
    median = build_pruner(Median(n_startup_trials=startup, n_warmup_steps=warmup, floor=floor), resources=8)
    assert replayed == _used_best(curves, _stops(curves, median))
    assert replayed[0] < 30 * 8  # the rule acted
    if floor:  # the floor stops trials the median alone lets run
        assert replayed[0] < _replay_module().replay([{"curve": c} for c in curves], startup, warmup)[0]


def _curves(seed: int, n: int = 30, epochs: int = 8) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [[float(v) for v in np.clip(rng.uniform(0.05, 0.9) * (1 - np.exp(-np.arange(1, epochs + 1)
                                                                           / rng.uniform(0.5, 4)))
                                       + rng.normal(0, 0.03, epochs), 0, 1)] for _ in range(n)]


def test_any_pruner_replays_as_the_service_builds_it():
    m = _replay_module()
    curves = _curves(3)
    trials = [{"curve": c} for c in curves]
    for startup, warmup, floor in ((2, 1, None), (3, 0, 0.8)):
        spec = {"name": "median", "n_startup_trials": startup, "n_warmup_steps": warmup}
        if floor:
            spec["floor"] = floor
        assert m.replay_pruner(trials, spec) == m.replay(trials, startup, warmup, floor or 0.0)
    # successive halving's rungs, r 2 and f 2 over 8 epochs: every stopped trial stopped after epoch 2 or 4
    sha = {"name": "successive_halving", "min_resource": 2, "reduction_factor": 2}
    used, best = m.replay_pruner(trials, sha)
    assert used < 30 * 8 and 0 < best <= max(max(c) for c in curves)
    stops = _stops(curves, build_pruner(m.pruner_spec(sha, 8), 8))
    assert set(stops) <= {2, 4, 8} and min(stops) < 8 and (used, best) == _used_best(curves, stops)
    assert m.replay_pruner(trials, {"name": "none"}) == (30 * 8, max(max(c) for c in curves))
    # hyperband's brackets hash the study name: under one name a replay is reproducible
    hyperband = {"name": "hyperband", "min_resource": 1, "reduction_factor": 3}
    assert m.replay_pruner(trials, hyperband, "s-1") == m.replay_pruner(trials, hyperband, "s-1")
    with pytest.raises(ValueError, match="--pruner"):
        m.replay_pruner(trials, {"name": "median", "warmup": 2})
    with pytest.raises(ValueError, match="min_resource = 20 is larger than the 8 epochs"):  # the service's check
        m.replay_pruner(trials, {"name": "successive_halving", "min_resource": 20})


def test_cli_replays_pruner_sections_beside_the_median_grid(tmp_path):
    runs = {str(s): {"trials": [{"state": "COMPLETE", "curve": c, "value": max(c)} for c in _curves(s, 20)]}
            for s in range(3)}
    (tmp_path / "results.json").write_text(json.dumps({"trials": 20, "epochs": 8, "runs": {"tpe": runs}}))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "prune_replay.py"), "--out", str(tmp_path), "--startup", "3",
           "--warmup", "1", "--pruner", '{"name": "successive_halving", "min_resource": 2, "reduction_factor": 3}']
    r = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    row = next(line for line in r.stdout.splitlines() if line.startswith("| `{\"name\": \"successive_halving\""))
    assert row.count("s0:") == 1 and "s2:" in row and row.endswith("of 3 |")
    bad = subprocess.run(cmd[:-1] + ['{"name": "median", "n_warmup": 2}'], env=cli_env(), capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "n_warmup" in bad.stderr
