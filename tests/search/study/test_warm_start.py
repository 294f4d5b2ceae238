"""Warm starts (search/study/_warm_start.py): one study's best trials, fitted to another's space, enqueued as its first
trials. The mapping is tested on its own (no store), the enqueue on a real SQLite store without training, and
`search run --warm-start` end to end on two tiny digits studies; bad input is one `error:` line each."""

from __future__ import annotations

import math
import re
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from incli import run_main
from search.study import Param, Source, enqueue, map_params, map_trials
from studygen import write_study

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")

BASE = {"optimizer": {"name": "adamw", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
        "model": {"dropout": 0.2, "out_features": 512}, "train": {"epochs": 3, "clip": None}}


def _t(number: int, value: float, **params) -> SimpleNamespace:
    """A source trial as map_trials reads it (FrozenTrial's number, value, params); dots as double underscores."""
    return SimpleNamespace(number=number, value=value, params={k.replace("__", "."): v for k, v in params.items()})


# ------------------------------------------------------------------ the mapping, no store


def test_a_float_outside_the_range_is_clipped_with_a_note():
    space = {"optimizer.lr": Param(low=1e-4, high=3e-3, log=True)}
    params, notes, lacked = map_params(7, {"optimizer.lr": 0.02}, space, BASE, "effb0", "effb4")
    assert params == {"optimizer.lr": 3e-3} and lacked == []
    assert notes == ["study 'effb0' trial 7: optimizer.lr = 0.02: clipped to [0.0001, 0.003] -> 0.003"]
    params, notes, _ = map_params(8, {"optimizer.lr": 1e-3}, space, BASE)
    assert params == {"optimizer.lr": 1e-3} and notes == []  # inside: untouched, no note


def test_ints_are_rounded_then_clipped():
    space = {"model.out_features": Param(type="int", low=16, high=512)}
    assert map_params(1, {"model.out_features": 100.6}, space, BASE)[:2] == (
        {"model.out_features": 101}, ["study 'A' trial 1: model.out_features = 100.6: rounded to an integer -> 101"])
    params, notes, _ = map_params(2, {"model.out_features": 700.2}, space, BASE)
    assert params == {"model.out_features": 512} and isinstance(params["model.out_features"], int)
    assert notes == ["study 'A' trial 2: model.out_features = 700.2: rounded to an integer, then clipped to "
                     "[16, 512] -> 512"]
    params, notes, _ = map_params(3, {"model.out_features": 64.0}, space, BASE)
    assert params == {"model.out_features": 64} and notes == []


def test_step_grids_are_snapped_to_grid_values():
    space = {"model.dropout": Param(low=0.0, high=0.3, step=0.05)}
    params, notes, _ = map_params(1, {"model.dropout": 0.137}, space, BASE)
    assert params == {"model.dropout": 0.15}  # exactly the grid value, not 0.15000000000000002
    assert notes == ["study 'A' trial 1: model.dropout = 0.137: snapped to the step-0.05 grid -> 0.15"]
    params, notes, _ = map_params(2, {"model.dropout": 0.5}, space, BASE)
    assert params == {"model.dropout": 0.3} and "clipped to [0, 0.3]" in notes[0]
    # an int grid whose high is off the grid: Optuna moves it down to 8, so the clip does too
    space = {"train.epochs": Param(type="int", low=2, high=9, step=2)}
    assert map_params(3, {"train.epochs": 9}, space, BASE)[0] == {"train.epochs": 8}
    assert map_params(4, {"train.epochs": 5}, space, BASE)[0]["train.epochs"] in (4, 6)
    assert map_params(5, {"train.epochs": 6}, space, BASE)[1] == []


def test_a_categorical_value_not_in_the_choices_is_skipped_for_the_default():
    space = {"optimizer.name": Param(choices=["adamw", "adam"])}
    params, notes, _ = map_params(4, {"optimizer.name": "sgd"}, space, BASE, "effb0", "effb4")
    assert params == {"optimizer.name": "adamw"}
    assert notes == ["study 'effb0' trial 4: optimizer.name = 'sgd': not one of study 'effb4''s choices "
                     "['adamw', 'adam']; skipped, its default 'adamw' used"]
    flags = {"train.epochs": Param(choices=[True, 2, "auto"], default=2)}
    assert map_params(5, {"train.epochs": 1}, flags, BASE)[0] == {"train.epochs": 2}  # 1 is not True
    assert map_params(6, {"train.epochs": "auto"}, flags, BASE) == ({"train.epochs": "auto"}, [], [])
    # a number where B searches a range of numbers, the other way round
    ranged = {"model.out_features": Param(type="int", low=0, high=1024)}
    params, notes, _ = map_params(7, {"model.out_features": "auto"}, ranged, BASE)
    assert params == {"model.out_features": 512} and "not a number" in notes[0] and "default 512 used" in notes[0]


def test_missing_params_take_the_defaults_and_a_param_without_one_is_left_to_the_sampler():
    space = {"optimizer.lr": Param(low=1e-4, high=1e-1, log=True),
             "model.dropout": Param(low=0.0, high=0.5, default=0.3),
             "optimizer.weight_decay": Param(low=0.0, high=0.1),
             "train.clip": Param(low=0.5, high=5.0)}
    params, notes, lacked = map_params(2, {"optimizer.lr": 0.01}, space, BASE)
    assert params == {"optimizer.lr": 0.01, "model.dropout": 0.3, "optimizer.weight_decay": 0.0}
    assert lacked == ["model.dropout", "optimizer.weight_decay"]
    assert notes == ["study 'A' trial 2: train.clip: not set, and no default; left to the sampler"]


def test_conditions_are_evaluated_in_file_order_with_the_chosen_values():
    space = {"optimizer.name": Param(choices=["adamw", "sgd"]),
             "optimizer.momentum": Param(low=0.8, high=0.99, default=0.9, when={"optimizer.name": "sgd"}),
             "model.dropout": Param(low=0.0, high=0.5, when={"optimizer.name": ["sgd"], "train.epochs": 3})}
    # sgd in both: momentum kept, dropout active (train.epochs is the fixed config's 3)
    p, notes, _ = map_params(1, {"optimizer.name": "sgd", "optimizer.momentum": 0.95, "model.dropout": 0.1},
                             space, BASE)
    assert p == {"optimizer.name": "sgd", "optimizer.momentum": 0.95, "model.dropout": 0.1} and notes == []
    # A's rmsprop is not one of B's choices: the default adamw makes momentum inactive, so it is dropped
    p, notes, _ = map_params(2, {"optimizer.name": "rmsprop", "optimizer.momentum": 0.95}, space, BASE, "a", "b")
    assert p == {"optimizer.name": "adamw"}
    assert notes[1] == ("study 'a' trial 2: optimizer.momentum = 0.95: dropped, inactive in study 'b' with these "
                        "values (when optimizer.name = 'sgd')")
    # sgd without a momentum in A (inactive there): B's default
    p, _, lacked = map_params(3, {"optimizer.name": "sgd"}, space, BASE)
    assert p == {"optimizer.name": "sgd", "optimizer.momentum": 0.9, "model.dropout": 0.2}
    assert lacked == ["optimizer.momentum", "model.dropout"]


def test_map_trials_notes_dropped_and_lacking_params_once_and_keeps_one_of_equal_sets():
    space = {"optimizer.lr": Param(low=1e-4, high=3e-3, log=True),
             "model.dropout": Param(low=0.0, high=0.5, default=0.25),
             "optimizer.name": Param(choices=["adamw", "sgd"]),
             "optimizer.momentum": Param(low=0.8, high=0.99, when={"optimizer.name": "sgd"})}
    trials = [_t(5, 0.91, optimizer__lr=0.01, optimizer__name="sgd", optimizer__momentum=0.9, model__name="b0"),
              _t(2, 0.90, optimizer__lr=0.02, optimizer__name="sgd", optimizer__momentum=0.9, model__name="b1"),
              _t(9, 0.85, optimizer__lr=0.001, optimizer__name="sgd", scheduler__name="none")]
    plan = map_trials(trials, space, BASE, "effb0", "effb4")
    assert [(s.trial, s.value) for s in plan.starts] == [(5, 0.91), (9, 0.85)]
    assert plan.starts[0].params == {"optimizer.lr": 3e-3, "model.dropout": 0.25, "optimizer.name": "sgd",
                                     "optimizer.momentum": 0.9}
    assert plan.starts[1].params["optimizer.momentum"] == 0.9  # lacked in trial 9: the fixed config's value
    assert plan.notes == [
        "not searched by study 'effb4', dropped: model.name, scheduler.name",
        "model.dropout: not set by study 'effb0'; study 'effb4''s default 0.25 used",
        "optimizer.momentum: not set by study 'effb0' in trial 9; study 'effb4''s default 0.9 used",
        "study 'effb0' trial 5: optimizer.lr = 0.01: clipped to [0.0001, 0.003] -> 0.003",
        "study 'effb0' trial 2: optimizer.lr = 0.02: clipped to [0.0001, 0.003] -> 0.003",
        "study 'effb0' trial 2: the same parameters as trial 5 once mapped; enqueued once",
    ]


# ------------------------------------------------------------------ the enqueue, on a store, no training


def _frozen(number: int, value: float, **params) -> optuna.trial.FrozenTrial:
    params = {k.replace("__", "."): v for k, v in params.items()}
    dists = {k: CategoricalDistribution([v]) if isinstance(v, str) else FloatDistribution(0.0, 1.0)
             for k, v in params.items()}
    t = create_trial(state=TrialState.COMPLETE, value=value, params=params, distributions=dists)
    t.number = number
    return t


SPACE_B = {"optimizer.lr": {"low": 1.0e-3, "high": 5.0e-3, "log": True, "default": 3.0e-3},
           "model.dropout": {"low": 0.0, "high": 0.3, "step": 0.1}}


def _target(tmp_path: Path, defaults_trial: bool = True):
    from search.store import open_storage
    from search.study import load_study
    from search.workers import open_study

    path = write_study(tmp_path, "wsb", space=SPACE_B)
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "seed_trials_with_defaults": defaults_trial}))
    sc = load_study(str(path))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    storage = open_storage(url)
    return sc, url, storage, open_study(sc, storage, url)


def _waiting(study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def test_enqueue_never_exceeds_the_budget_and_puts_the_defaults_trial_first(tmp_path):
    sc, url, storage, study = _target(tmp_path)
    top = [_frozen(n, 0.9 - n / 100, optimizer__lr=0.001 * (n + 1), model__dropout=0.1) for n in range(4)]
    lines: list[str] = []
    r = enqueue(study, storage, url, sc, Source("wsa", 6, top), budget=3, say=lines.append)
    assert r.defaults_first and r.enqueued == [0, 1] and r.left_out == [2, 3] and r.already == []
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state == TrialState.WAITING for t in trials)  # exactly the budget
    assert trials[0].user_attrs == {"defaults": True}
    assert [t.user_attrs["warm_start"] for t in trials[1:]] == [{"study": "wsa", "trial": 0},
                                                                {"study": "wsa", "trial": 1}]
    assert lines[-1] == ("warm start: enqueued 2 trials from study 'wsa' (top 4 of 6 completed), after the defaults "
                         "trial; 2 left out (trials 2, 3): the budget of 3 has no room for them, raise --n-trials")
    # again, with a larger budget: the two already there are not enqueued twice, the two left out now fit
    lines.clear()
    r = enqueue(study, storage, url, sc, Source("wsa", 6, top), budget=10, say=lines.append)
    assert (r.enqueued, r.already, r.left_out, r.defaults_first) == ([2, 3], [0, 1], [], False)
    assert len(study.get_trials(deepcopy=False)) == 5
    assert lines[-1] == ("warm start: enqueued 2 trials from study 'wsa' (top 4 of 6 completed); 2 already in "
                         "study 'wsb'")


def test_a_warm_start_set_equal_to_the_defaults_is_trial_0_and_no_defaults_trial_is_added(tmp_path):
    sc, url, storage, study = _target(tmp_path)
    assert sc.default_params() == {"optimizer.lr": 3e-3, "model.dropout": 0.0}
    top = [_frozen(4, 0.95, optimizer__lr=0.004, model__dropout=0.1),
           _frozen(1, 0.90, optimizer__lr=0.003, model__dropout=0.04)]  # snaps to 0.0: the defaults
    r = enqueue(study, storage, url, sc, Source("wsa", 2, top), budget=5, say=lambda line: None)
    assert r.enqueued == [1, 4] and not r.defaults_first
    first, second = _waiting(study)
    assert first.user_attrs == {"warm_start": {"study": "wsa", "trial": 1}, "defaults": True}
    assert second.user_attrs == {"warm_start": {"study": "wsa", "trial": 4}}


def test_no_defaults_trial_into_a_study_that_already_has_trials_or_does_not_want_one(tmp_path):
    sc, url, storage, study = _target(tmp_path)
    study.enqueue_trial({"optimizer.lr": 0.002, "model.dropout": 0.0})  # a token top_up left
    top = [_frozen(0, 0.9, optimizer__lr=0.004, model__dropout=0.1)]
    r = enqueue(study, storage, url, sc, Source("wsa", 1, top), budget=4, say=lambda line: None)
    assert r.enqueued == [0] and not r.defaults_first and len(_waiting(study)) == 2
    (tmp_path / "no-defaults").mkdir()
    sc2, url2, storage2, study2 = _target(tmp_path / "no-defaults", defaults_trial=False)
    r = enqueue(study2, storage2, url2, sc2, Source("wsa", 1, top), budget=4, say=lambda line: None)
    assert r.enqueued == [0] and not r.defaults_first and len(_waiting(study2)) == 1


def test_a_set_that_study_b_already_ran_is_not_enqueued_again(tmp_path):
    sc, url, storage, study = _target(tmp_path)
    study.enqueue_trial({"optimizer.lr": 0.004, "model.dropout": 0.1})  # the same set, from elsewhere
    lines: list[str] = []
    r = enqueue(study, storage, url, sc, Source("wsa", 1, [_frozen(3, 0.9, optimizer__lr=0.004, model__dropout=0.1)]),
                budget=4, say=lines.append)
    assert r.enqueued == [] and r.already == [3] and len(study.get_trials(deepcopy=False)) == 1
    assert ("warm start: study 'wsa' trial 3: study 'wsb' already holds a trial with these parameters; not enqueued "
            "again") in lines


# ------------------------------------------------------------------ end to end: `search run --warm-start`


def _search(tmp_path, capfd, monkeypatch, *args: str):
    return run_main(["run", *args, "--no-wandb", "--output", "runs", "--workers", "1", "--plain"], cwd=tmp_path,
                    capfd=capfd, monkeypatch=monkeypatch)


@pytest.mark.slow  # end to end, with processes or several trials: not in `make test-fast`
@pytest.mark.timeout(300)
def test_search_run_warm_starts_from_another_studys_best_trials(tmp_path, capfd, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    a = write_study(tmp_path, "wsa", n_trials=3, epochs=1, limit=200,
                    space={"optimizer.lr": {"low": 1.0e-3, "high": 3.0e-2, "log": True},
                           "model.dropout": {"low": 0.0, "high": 0.3},
                           "scheduler.name": {"choices": ["cosine", "none"]}})
    r = _search(tmp_path, capfd, monkeypatch, "--study", str(a), "--storage", url)
    assert r.returncode == 0, r.stdout + r.stderr
    done = sorted((t for t in optuna.load_study(study_name="wsa", storage=url).get_trials()
                   if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.number))
    top = done[:2]
    lrs = sorted(t.params["optimizer.lr"] for t in top)
    assert lrs[0] < lrs[1], "two distinct lrs, to put B's high between them"
    high = math.sqrt(lrs[0] * lrs[1])  # B's range is narrower: the larger lr of the two is clipped
    default = 0.75 * lrs[0]  # unlike every mapped lr (lrs[0] or high): the defaults trial is one of its own
    b = write_study(tmp_path, "wsb", n_trials=3, epochs=1, limit=200,
                    space={"optimizer.lr": {"low": lrs[0] / 2, "high": high, "log": True, "default": default},
                           "model.dropout": {"low": 0.0, "high": 0.3, "step": 0.1},
                           "optimizer.weight_decay": {"low": 0.0, "high": 0.01, "default": 0.001}})
    args = ("--study", str(b), "--storage", url, "--warm-start", "wsa", "--top-k", "2")
    r = _search(tmp_path, capfd, monkeypatch, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "warm start: not searched by study 'wsb', dropped: scheduler.name" in out, out
    assert "warm start: optimizer.weight_decay: not set by study 'wsa'; study 'wsb''s default 0.001 used" in out, out
    clipped = next(t for t in top if t.params["optimizer.lr"] == lrs[1])
    note = rf"warm start: study 'wsa' trial {clipped.number}: optimizer\.lr = [0-9.e-]+: clipped to \["
    assert re.search(note, out), out
    assert (f"warm start: enqueued 2 trials from study 'wsa' (top 2 of {len(done)} completed), after the defaults "
            "trial") in out, out
    assert out.index("warm start: enqueued") < out.index("trial 0 COMPLETE"), "enqueued before any trial ran"

    trials = optuna.load_study(study_name="wsb", storage=url).get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials), trials  # the budget, exactly
    assert trials[0].user_attrs["defaults"] is True
    assert trials[0].params == {"optimizer.lr": pytest.approx(default), "model.dropout": 0.0,
                                "optimizer.weight_decay": 0.001}
    for t, src in zip(trials[1:], top):
        assert t.user_attrs["warm_start"] == {"study": "wsa", "trial": src.number}
        assert t.params == {"optimizer.lr": pytest.approx(min(src.params["optimizer.lr"], high)),
                            "model.dropout": pytest.approx(round(src.params["model.dropout"] * 10) / 10),
                            "optimizer.weight_decay": 0.001}

    r = _search(tmp_path, capfd, monkeypatch, *args)  # the same command again: its budget is met, nothing runs
    assert r.returncode == 0, r.stdout + r.stderr
    assert "study 'wsb' already holds 3 finished trials" in r.stdout and "warm start" not in r.stdout, r.stdout
    assert len(optuna.load_study(study_name="wsb", storage=url).get_trials()) == 3
    r = _search(tmp_path, capfd, monkeypatch, *args, "--n-trials", "4")  # one more: no warm-start trial twice
    assert r.returncode == 0, r.stdout + r.stderr
    assert (f"warm start: enqueued 0 trials from study 'wsa' (top 2 of {len(done)} completed); 2 already in study "
            "'wsb'") in r.stdout, r.stdout
    assert len(optuna.load_study(study_name="wsb", storage=url).get_trials()) == 4


# ------------------------------------------------------------------ bad input: one line, the store unchanged


def _snapshot(db: Path) -> dict:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(c.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A store with 'wsa' (two completed trials) and 'nofinish' (one failed trial), made without training."""
    db = tmp_path_factory.mktemp("warm-start-store") / "studies.db"
    url = f"sqlite:///{db}"
    dist = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}
    a = optuna.create_study(study_name="wsa", storage=url, direction="maximize")
    for v, lr in ((0.5, 0.01), (0.7, 0.002)):
        a.add_trial(create_trial(state=TrialState.COMPLETE, value=v, params={"optimizer.lr": lr}, distributions=dist))
    optuna.create_study(study_name="nofinish", storage=url, direction="maximize").add_trial(
        create_trial(state=TrialState.FAIL, params={"optimizer.lr": 0.01}, distributions=dist))
    return db


_LOG = re.compile(r"^(INFO|DEBUG) [\w.]+: ")

BAD = [
    ("unknown-study", ("--warm-start", "wsx"),
     ("--warm-start 'wsx'", "no study 'wsx' in sqlite:///studies.db", "did you mean 'wsa'",
      "it holds: nofinish, wsa", "the source must be in the same --storage")),
    ("no-completed-trial", ("--warm-start", "nofinish"),
     ("--warm-start 'nofinish'", "has no completed trial to start from (1 fail)",
      "run it first (search run --study nofinish)", "or drop --warm-start")),
    ("top-k-zero", ("--warm-start", "wsa", "--top-k", "0"), ("'--top-k'", "greater than or equal to 1")),
    ("top-k-without-warm-start", ("--top-k", "2"), ("--top-k 2", "add --warm-start STUDY or drop --top-k")),
    ("itself-by-name", ("--warm-start", "wsb"),
     ("--warm-start 'wsb' is study 'wsb' itself", "warm-start from another study")),
    ("itself-by-file", ("--warm-start", "b.yaml"), ("--warm-start 'b.yaml' is study 'wsb' itself",)),
    ("no-store", ("--warm-start", "wsa", "--storage", "sqlite:///other.db"),
     ("--warm-start 'wsa'", "no study store at 'sqlite:///other.db'", "pass the --storage that holds it")),
]


@pytest.mark.parametrize("args, expect", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_warm_start_is_one_error_line_and_leaves_the_store_alone(args, expect, template, tmp_path, capfd,
                                                                      monkeypatch):
    shutil.copy(template, tmp_path / "studies.db")
    write_study(tmp_path, "wsb").rename(tmp_path / "b.yaml")
    before = _snapshot(tmp_path / "studies.db")
    cmd = ("run", "--study", "b.yaml", "--storage", "sqlite:///studies.db", "--no-wandb", "--output", "out")
    if "--storage" in args:
        cmd = cmd[:3] + cmd[5:]
    r = run_main([*cmd, *args], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch, drop=("SEARCH_STORAGE",))
    shown = f"rc {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    assert r.returncode != 0, shown
    assert "Traceback" not in r.stdout + r.stderr, shown
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not _LOG.match(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert [s for s in expect if s not in lines[0]] == [], lines[0]
    assert _snapshot(tmp_path / "studies.db") == before, "the store changed"
    assert not (tmp_path / "other.db").exists()
