"""Synthetic studies for report figure tests: trials made with ``optuna.trial.create_trial`` on in-memory storage,
shaped like the demo's (a categorical optimizer with a conditional momentum, log-scale lr and weight decay, a
focal loss with a conditional gamma, per-epoch reports, median-style pruning, durations), with no training."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

SPACE = {
    "optimizer.name": CategoricalDistribution(["adamw", "sgd"]),
    "optimizer.lr": FloatDistribution(3.0e-4, 3.0e-2, log=True),
    "optimizer.momentum": FloatDistribution(0.8, 0.98),  # only when optimizer.name is sgd
    "optimizer.weight_decay": FloatDistribution(1.0e-5, 0.1, log=True),
    "model.dropout": FloatDistribution(0.0, 0.5),
    "train.batch_size": CategoricalDistribution([32, 64, 128]),
    "loss.name": CategoricalDistribution(["ce", "focal"]),
    "loss.gamma": FloatDistribution(0.5, 3.0),  # only when loss.name is focal
    "loss.label_smoothing": FloatDistribution(0.0, 0.2),
}
CONDITIONAL = {"optimizer.momentum": ("optimizer.name", "sgd"), "loss.gamma": ("loss.name", "focal")}
START = datetime(2026, 1, 1, 12, 0, 0)


def _params(rng: random.Random) -> dict:
    params = {}
    for name, d in SPACE.items():
        if name in CONDITIONAL and params[CONDITIONAL[name][0]] != CONDITIONAL[name][1]:
            continue  # an inactive conditional parameter: absent from the trial, as Optuna records it
        if isinstance(d, CategoricalDistribution):
            params[name] = rng.choice(d.choices)
        elif d.log:
            params[name] = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
        else:
            params[name] = rng.uniform(d.low, d.high)
    return params


def _final(params: dict, rng: random.Random, top: float) -> float:
    """A smooth optimum around lr 3e-3 and little dropout, plus noise: the lr matters most."""
    lr_miss = (math.log10(params["optimizer.lr"]) - math.log10(3.0e-3)) ** 2
    return min(0.999, top - 0.06 * lr_miss - 0.04 * params["model.dropout"] + rng.gauss(0.0, 0.006))


def synthetic_study(n_trials: int, *, seed: int = 0, epochs: int = 8, prune_share: float = 0.35, failed: int = 0,
                    top: float = 0.99, start: float = 0.5, name: str = "synthetic") -> optuna.Study:
    """``n_trials`` finished trials (the first ``failed`` of them failed, about ``prune_share`` of the rest pruned
    after epoch 2 or later), reporting macro_f1 per epoch (steps 1..epochs) that climbs from ``start`` x its final
    value towards it. Each epoch takes 20-60 s, longer for smaller batches; trials record device cpu."""
    rng = random.Random(seed)
    study = optuna.create_study(study_name=name, direction="maximize")
    finals: list[float] = []
    for i in range(n_trials):
        params = _params(rng)
        final = _final(params, rng, top)
        # a low lr learns slower; each epoch's report is a little noisy
        tau = 1.5 * (3.0e-3 / params["optimizer.lr"]) ** 0.3
        curve = {e: min(0.999, final * (1 - (1 - start) * math.exp(-(e - 1) / tau)) + rng.gauss(0.0, 0.004))
                 for e in range(1, epochs + 1)}
        state = TrialState.FAIL if i < failed else TrialState.COMPLETE
        # like a median pruner: a trial heading below the median so far is usually stopped, at epoch 2 or later
        if state == TrialState.COMPLETE and len(finals) >= 3 and final < sorted(finals)[len(finals) // 2] \
                and rng.random() < 2 * prune_share:
            state, curve = TrialState.PRUNED, {e: v for e, v in curve.items() if e <= rng.randint(2, epochs - 2)}
        elif state == TrialState.COMPLETE:
            finals.append(final)
        if state == TrialState.FAIL:
            curve = {e: v for e, v in curve.items() if e <= 1}
        value = None if state == TrialState.FAIL else curve[max(curve)]  # a pruned trial keeps its last report
        trial = create_trial(state=state, value=value, params=params,
                             distributions={k: SPACE[k] for k in params}, intermediate_values=curve,
                             user_attrs={"device": "cpu", "device_kind": "CPU"})
        per_epoch = 20.0 + 40.0 * 32 / params["train.batch_size"] * rng.uniform(0.6, 1.0)
        trial.datetime_start = START + timedelta(minutes=10 * i)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=per_epoch * len(curve))
        study.add_trial(trial)
    return study
