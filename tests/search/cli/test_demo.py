"""The README's first command: `search run --study demo` on the embedded SQLite store."""

from __future__ import annotations

import re
import time

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from clitools import cli_env
from incli import run_main

pytestmark = pytest.mark.slow


def test_demo_reaches_098_macro_f1_with_two_workers_on_sqlite(tmp_path, capfd, monkeypatch):
    """`search run --study demo` through the real entry point, in this process; its two workers are processes of
    their own, as the command starts them."""
    t0 = time.time()
    r = run_main(["run", "--study", "demo"], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch,
                 env={k: v for k, v in cli_env().items() if k in ("WANDB_MODE", "WANDB_SILENT", "PYTHONUNBUFFERED")},
                 drop=("SEARCH_NUM_THREADS", "SEARCH_STORAGE"))
    seconds = time.time() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "studies.db").is_file(), "the default store is sqlite:///studies.db in the working directory"
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{tmp_path / 'studies.db'}")
    trials = study.get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 20
    assert study.best_value >= 0.98
    assert re.search(r"best macro_f1 0\.9[89]|best macro_f1 1\.0", r.stdout), r.stdout[-500:]
    failed = {t.number: t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL}
    assert not failed, f"demo trials failed: {failed}"
    # the two workers left the 3 best checkpoints in the artifact store (keep_top_k's default) beside every
    # trial's 3 charts and metrics.json, errors.png where its best epoch made a mistake, and nothing else
    top3 = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.number))[:3]
    kept = study.user_attrs["kept_checkpoints"]
    assert sorted(kept) == sorted(str(t.number) for t in top3)
    stored = {p.name for p in (tmp_path / "runs" / "artifacts").iterdir()}
    names = [sorted(m.filename for m in get_all_artifact_meta(t, storage=study._storage)) for t in trials]
    with_errors = sum("errors.png" in n for n in names)
    assert 0 < with_errors <= len(trials), "an early epoch's mistakes are shown"
    assert {i for ids in kept.values() for i in ids} <= stored
    assert len(stored) == 4 * len(trials) + with_errors + 3, names
    assert len(list((tmp_path / "runs" / "wandb").glob("offline-run-*"))) == len(trials)  # one W&B run per trial
    print(f"demo: best macro-F1 {study.best_value:.4f}, 20 trials in {seconds:.0f}s")
