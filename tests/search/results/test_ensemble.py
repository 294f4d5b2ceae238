"""`search ensemble`: the study's top-k completed trials, by value, voted exactly as `search predict` of their
run folders."""

from __future__ import annotations

import csv
import re

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import imagegen
import rungen
from incli import run_main

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")


def _study(url: str, runs: rungen.Runs) -> None:
    """Trials as a search leaves them: three completed (r1 best, then r3, then r2), and a failed and a pruned one
    that point at a run folder too and must be passed over."""
    study = optuna.create_study(study_name="ens", storage=url, direction="maximize")
    dist = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}
    for value, run, state in ((0.5, runs.r2, TrialState.COMPLETE), (0.9, runs.r1, TrialState.COMPLETE),
                              (None, runs.r2, TrialState.FAIL), (0.7, runs.r3, TrialState.COMPLETE),
                              (None, runs.r2, TrialState.PRUNED)):
        study.add_trial(create_trial(state=state, value=value, params={"optimizer.lr": 0.01}, distributions=dist,
                                     user_attrs={"output_dir": str(run)}))


def _rows(path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_ensemble_votes_over_the_top_k_completed_trials(tmp_path_factory, tmp_path, capfd, monkeypatch):
    runs = rungen.trained_runs(tmp_path_factory)
    root, _ = imagegen.make_imagefolder(tmp_path / "test", n_classes=3, n_per_class=3, size=16, seed=9)
    rng = np.random.default_rng(1)
    for i in range(4):  # noise, where the runs disagree
        imagegen.save_image(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), root / f"noise-{i}.png")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    _study(url, runs)

    def search(*args: str):
        r = run_main([*args], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
        assert r.returncode == 0, r.stderr
        assert not re.search(r"^[A-Z]+ [\w.]+: ", r.stdout + r.stderr, re.M), "a logger's raw line: " + r.stderr
        return r

    for how in ("soft", "hard"):
        r = search("ensemble", "--study", "ens", "--top-k", "2", "--storage", url, "--images", str(root),
                   "--out", f"ens-{how}.csv", "--vote", how, "--tta", "hflip")
        assert "trials 1, 3" in r.stdout
        search("predict", "--run", str(runs.r1), "--run", str(runs.r3), "--images", str(root), "--out",
               f"pred-{how}.csv", "--vote", how, "--tta", "hflip")
        assert _rows(tmp_path / f"ens-{how}.csv") == _rows(tmp_path / f"pred-{how}.csv")
    r = search("ensemble", "--study", "ens", "--top-k", "3", "--storage", url, "--images", str(root),
               "--out", "ens3.csv")
    assert "trials 1, 3, 0" in r.stdout
