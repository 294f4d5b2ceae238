"""Every pruner and sampler a study file names: keys counted in epochs map onto Optuna's steps as the keys say,
each pruner prunes first where its settings say (and never earlier), and the real worker runs each sampler."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from clitools import study_trials
from search import load_study
from search.store import open_storage
from search.study import min_steps, startup_trials
from search.workers._worker import _pruner, _sampler, open_study, work
from studygen import write_study


def _study(tmp_path, pruner=None, sampler=None, epochs=6, **kw):
    path = write_study(tmp_path, "p", epochs=epochs, pruner=pruner, **kw)
    if sampler is not None:
        import yaml

        d = yaml.safe_load(path.read_text())
        d["sampler"] = sampler
        path.write_text(yaml.safe_dump(d))
    return load_study(str(path))


def _first_prune(pruner: optuna.pruners.BasePruner, good: list[float], weak: list[float],
                 n_good: int = 3, completed: list[list[float]] | None = None) -> int | None:
    """Run ``n_good`` trials reporting ``good`` per epoch (or one per curve of ``completed``; each asks the
    pruner, as a trial does), then one reporting ``weak``: the epoch at which the weak one is first pruned, or
    None."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for curve in completed if completed is not None else [good] * n_good:
        t = study.ask()
        for epoch, v in enumerate(curve, 1):
            t.report(v, epoch)
            t.should_prune()
        study.tell(t, max(curve))
    t = study.ask()
    for epoch, v in enumerate(weak, 1):
        t.report(v, epoch)
        if t.should_prune():
            return epoch
    return None


GOOD, WEAK = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.9, 0.9, 0.9], [0.1] * 9


@pytest.mark.parametrize("spec, first", [
    ({"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2}, 3),
    ({"name": "median", "n_startup_trials": 2, "n_warmup_steps": 2, "floor": 0.5}, 3),
    ({"name": "percentile", "percentile": 25.0, "n_startup_trials": 2, "n_warmup_steps": 0}, 1),
    ({"name": "successive_halving", "min_resource": 2, "reduction_factor": 3}, 2),
    ({"name": "successive_halving", "min_resource": 1, "reduction_factor": 2, "min_early_stopping_rate": 2}, 4),
    ({"name": "none"}, None),
])
def test_each_pruner_prunes_first_where_its_keys_say(tmp_path, spec, first):
    sc = _study(tmp_path, spec, epochs=9)
    assert min_steps(sc.spec.pruner) == first
    assert _first_prune(_pruner(sc), GOOD, WEAK) == first


def test_the_median_floor_stops_a_trial_at_chance_when_most_completed_trials_are_at_chance(tmp_path):
    """Why the median alone does nothing on a space that mostly learns nothing: with most completed trials at chance,
    their median is chance, and a trial at chance is not below it. The floor stops it (and never a good trial)."""
    chance = [0.05] * 9

    def first(spec: dict, weak: list[float]) -> int | None:  # one trial learned, three did not
        return _first_prune(_pruner(_study(tmp_path, spec, epochs=9)), GOOD, weak,
                            completed=[GOOD, chance, chance, chance])

    median = {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}
    assert first(median, chance) is None
    assert first({**median, "floor": 0.5}, chance) == 2
    slow = [0.05, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9]  # half the best's 0.6 at epoch 2 is 0.3: not below
    assert first({**median, "floor": 0.5}, slow) is None


def test_patient_pruner_counts_epochs_after_the_best_and_defers_to_the_wrapped_one(tmp_path):
    stall = [0.5, 0.6, 0.55, 0.55, 0.55, 0.55]  # best at epoch 2, then three epochs below it
    alone = _pruner(_study(tmp_path, {"name": "patient", "patience": 2}, epochs=9))
    assert _first_prune(alone, GOOD, stall, n_good=0) == 5  # epochs 3, 4, 5 (patience + 1) all below epoch 2
    # wrapped: a stalled trial that still beats the others at the median goes on; a stalled weak one is pruned
    sc = _study(tmp_path, {"name": "patient", "patience": 2, "wrapped": {"name": "median", "n_startup_trials": 1,
                                                                         "n_warmup_steps": 0}}, epochs=9)
    assert _first_prune(_pruner(sc), [0.1] * 9, stall) is None
    assert _first_prune(_pruner(sc), GOOD, stall) == 5


def test_hyperband_brackets_cut_only_at_their_rungs_and_max_resource_is_the_epochs(tmp_path):
    sc = _study(tmp_path, {"name": "hyperband", "min_resource": 1, "reduction_factor": 3}, epochs=9)
    pruner = _pruner(sc)
    rungs = {1 * 3 ** k for k in range(3)}  # 1, 3, 9: three brackets over 9 epochs
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    pruned_at = []
    for i in range(30):
        t = study.ask()
        x = t.suggest_float("x", 0, 1)
        for epoch in range(1, 10):
            t.report(x * epoch / 9, epoch)
            if epoch < 9 and t.should_prune():
                pruned_at.append(epoch)
                study.tell(t, state=TrialState.PRUNED)
                break
        else:
            study.tell(t, x)
    assert pruned_at and set(pruned_at) <= rungs - {9}, pruned_at
    assert len(set(pruned_at)) == 2, "two brackets cut (at epochs 1 and 3); the third never does"


def test_successive_halving_in_the_real_worker_prunes_the_weak_trial_at_the_first_rung(tmp_path, capfd):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    path = write_study(tmp_path, "sha", epochs=4, n_trials=2,
                       space={"optimizer.lr": {"low": 1.0e-7, "high": 3.0e-2, "log": True}},
                       pruner={"name": "successive_halving", "min_resource": 2, "reduction_factor": 2})
    sc = load_study(str(path))
    st = open_study(sc, open_storage(url), url)
    for lr in (0.02, 1.0e-7):
        st.enqueue_trial({"optimizer.lr": lr})
    work(sc, url, n_trials=2, output_root=tmp_path / "runs", use_wandb=False, worker_index=0)
    good, weak = study_trials(url, "sha")
    assert good.state == TrialState.COMPLETE and sorted(good.intermediate_values) == [1, 2, 3, 4]
    assert weak.state == TrialState.PRUNED and max(weak.intermediate_values) == 2  # rung 0: after epoch 2
    assert "trial 1 PRUNED pruned at epoch 2 by the successive_halving pruner" in capfd.readouterr().out


@pytest.mark.parametrize("sampler", [
    {"name": "gp", "seed": 0, "n_startup_trials": 2},
    {"name": "cmaes", "seed": 0, "n_startup_trials": 1},
    {"name": "qmc", "seed": 0},
])
def test_the_real_worker_runs_each_sampler_inside_the_space(tmp_path, sampler):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    sc = _study(tmp_path, sampler=sampler, epochs=1, n_trials=4, limit=120)
    kind = {"gp": optuna.samplers.GPSampler, "cmaes": optuna.samplers.CmaEsSampler,
            "qmc": optuna.samplers.QMCSampler}[sampler["name"]]
    assert isinstance(_sampler(sc, 0, 0, 4), kind)
    work(sc, url, n_trials=4, output_root=tmp_path / "runs", use_wandb=False, worker_index=0)
    trials = study_trials(url, "p")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    lrs = [t.params["optimizer.lr"] for t in trials[1:]]  # trial 0 runs the defaults
    assert all(1.0e-3 <= lr <= 3.0e-2 for lr in lrs) and len(set(lrs)) == 3
    assert all(math.isfinite(t.value) for t in trials)


@pytest.mark.parametrize("setting, budget, want", [("auto", 10, 4), ("auto", 30, 10), ("auto", 50, 16),
                                                   ("auto", 500, 20), (7, 50, 7)])
def test_startup_trials_scale_with_the_budget(setting, budget, want):
    assert startup_trials(setting, budget) == want


def test_an_int_range_is_searched_as_ints(tmp_path):
    """`{low: 16, high: 128}` is an int parameter (suggest_int), as the README says, though pydantic would turn
    bounds typed float into floats."""
    sc = _study(tmp_path, space={"train.batch_size": {"low": 16, "high": 128, "step": 16}}, epochs=1)
    assert sc.space["train.batch_size"].kind == "int"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    from search.study import sample_params

    values = [sample_params(study.ask(), sc.space, sc.base)["train.batch_size"] for _ in range(20)]
    assert all(isinstance(v, int) and v % 16 == 0 and 16 <= v <= 128 for v in values), values


def test_a_section_without_a_name_is_the_default_one(tmp_path):
    sc = _study(tmp_path, {"n_startup_trials": 3}, sampler={"seed": 7}, epochs=3)
    assert (sc.spec.pruner.name, sc.spec.pruner.n_startup_trials) == ("median", 3)
    assert (sc.spec.sampler.name, sc.spec.sampler.seed) == ("tpe", 7)
    sc = _study(tmp_path, {"name": "patient", "patience": 1, "wrapped": {"n_warmup_steps": 0}}, epochs=5)
    assert sc.spec.pruner.wrapped.name == "median"


def test_tpe_keys_reach_optunas_sampler(tmp_path):
    """multivariate (with group) and constant liar are on by default; the study file can turn each off."""
    sc = _study(tmp_path, {"n_startup_trials": 3}, sampler={"seed": 7}, epochs=3)
    tpe = _sampler(sc, 0, 0, 24)
    assert (tpe._multivariate, tpe._group, tpe._constant_liar, tpe._n_startup_trials) == (True, True, True, 8)
    sc = _study(tmp_path, {"n_startup_trials": 3}, sampler={"multivariate": False, "constant_liar": False,
                                                            "n_startup_trials": 4}, epochs=3)
    tpe = _sampler(sc, 0, 0, 24)
    assert (tpe._multivariate, tpe._group, tpe._constant_liar, tpe._n_startup_trials) == (False, False, False, 4)
