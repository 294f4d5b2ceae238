"""Pruners by name (``pruner.name`` in a study file), each with its own keys, counted in epochs.

A trial reports its validation macro-F1 once per epoch as steps 1, 2, 3, ... (once per fold with ``cv``), and
its last epoch is never pruned (search/trial_reports.py). Keys are in those units: ``n_warmup_steps: 2`` means
epochs 1 and 2 are never pruned, ``min_resource: 2`` means the first cut comes after epoch 2.

```yaml
pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 2}
pruner: {name: successive_halving, min_resource: 1, reduction_factor: 3}
pruner: {name: hyperband, min_resource: 1, reduction_factor: 3}       # max_resource: the epochs
pruner: {name: patient, patience: 2, wrapped: {name: median}}
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import Field

from training.config import StrictModel

from .named_config import check_named

__all__ = ["PrunerSpec", "PRUNERS", "check_pruner_keys", "check_fits", "build_pruner", "optuna_warmup_steps",
           "min_steps"]


class Median(StrictModel):
    name: Literal["median"] = "median"
    # 3, not Optuna's 5: the sampler's first trials are random and mostly poor, and on the search-efficiency
    # benchmark (benchmarks/RESULTS.md) stopping them from the 4th trial on saved a third more epochs than from
    # the 6th, at a median final best no lower than unpruned TPE's
    n_startup_trials: int = Field(3, ge=0, description="trials that complete before any is pruned")
    n_warmup_steps: int = Field(1, ge=0, description="epochs (folds, with cv) of each trial never pruned")


class Percentile(StrictModel):
    name: Literal["percentile"] = "percentile"
    percentile: float = Field(25.0, gt=0.0, lt=100.0, description="keep the trials in the top percentile % at "
                              "each epoch (50 = median; 25 prunes more)")
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(1, ge=0)


class SuccessiveHalving(StrictModel):
    """ASHA: at epochs r, r*f, r*f^2, ... only the best 1/f of the trials that got there go on."""
    name: Literal["successive_halving"] = "successive_halving"
    min_resource: int = Field(1, ge=1, description="epochs before the first cut")
    reduction_factor: int = Field(3, ge=2, description="keep the best 1/f at each rung")
    min_early_stopping_rate: int = Field(0, ge=0, description="skip the first s rungs (first cut at r*f^s)")


class Hyperband(StrictModel):
    """Several successive-halving brackets, from aggressive (first cut at min_resource) to none."""
    name: Literal["hyperband"] = "hyperband"
    min_resource: int = Field(1, ge=1)
    max_resource: int | Literal["epochs"] = Field("epochs", description="a trial's full budget; default: the "
                                                  "study's epochs (folds, with cv)")
    reduction_factor: int = Field(3, ge=2)


class Wilcoxon(StrictModel):
    """For cv studies: pairs a trial's fold scores with the best trial's same folds."""
    name: Literal["wilcoxon"] = "wilcoxon"
    p_threshold: float = Field(0.1, gt=0.0, lt=1.0, description="prune when the fold scores are worse than the "
                               "best trial's at this significance")
    n_warmup_steps: int = Field(1, ge=0, description="folds never pruned")


class Nop(StrictModel):
    name: Literal["none"] = "none"


class Patient(StrictModel):
    """Optuna's PatientPruner: a trial stalls when its last patience + 1 epochs all stay more than min_delta
    below its best before them. A stalled trial is pruned; with ``wrapped``, only if that pruner prunes it too
    (so a stalled trial that still beats the others goes on)."""
    name: Literal["patient"] = "patient"
    patience: int = Field(ge=1, description="epochs after the best one that may fall below it")
    min_delta: float = Field(0.0, ge=0.0, description="a fall smaller than this is not a stall")
    wrapped: PrunerSpec | None = None


PrunerSpec = Annotated[Union[Median, Percentile, SuccessiveHalving, Hyperband, Wilcoxon, Nop, Patient],
                       Field(discriminator="name")]
Patient.model_rebuild()

PRUNERS: dict[str, type[StrictModel]] = {m.model_fields["name"].default: m for m in
                                         (Median, Percentile, SuccessiveHalving, Hyperband, Patient, Wilcoxon, Nop)}


def check_pruner_keys(raw: Any, where: str, key: str = "pruner") -> dict:
    """One line for a pruner section that does not validate (search/named_config.py), the wrapped one first;
    returns the section with its names filled in."""
    wrapped = raw.get("wrapped") if isinstance(raw, dict) and raw.get("name") == "patient" else None
    if isinstance(wrapped, dict):
        inner = wrapped.get("name", "median")
        if inner in ("patient", "successive_halving", "hyperband"):
            why = ("a patient pruner inside a patient pruner" if inner == "patient" else
                   f"{inner} ranks trials only among those it is asked about, and a patient pruner asks only about "
                   "stalled ones, so it would never prune")
            alone = "" if inner == "patient" else f", or use pruner.name: {inner} alone"
            raise ValueError(f"{where}: {key}.wrapped.name = {inner!r}: {why}; wrap median or percentile{alone}")
    if wrapped is not None:
        raw = {**raw, "wrapped": check_pruner_keys(wrapped, where, f"{key}.wrapped")}
    return check_named(raw, where, key, PRUNERS, "median", "pruner")


def check_fits(p: StrictModel, steps: int, cv: bool, source: str, where: str, key: str = "pruner") -> None:
    """The keys are counted in epochs (folds, with cv) and a trial's last one is never pruned: one line when a
    setting names more of them than a trial has, or leaves nothing to prune. ``steps``: a trial's epochs (or
    folds), given by ``source``. The wrapped pruner of a patient one is checked alike."""
    unit = "folds" if cv else "epochs"
    if isinstance(p, Wilcoxon) and not cv:
        raise ValueError(f"{where}: {key}.name = 'wilcoxon' compares fold scores, but the study has no cv; add "
                         "`cv: {folds: 5}` or use pruner.name: median")
    for k in ("min_resource", "max_resource"):
        v = getattr(p, k, None)
        if isinstance(v, int) and v > steps:
            fix = f"use {k} below {steps}, counted in {unit}" if steps > 1 else \
                f"a trial of one {unit[:-1]} is never pruned: use pruner.name: none"
            raise ValueError(f"{where}: {key}.{k} = {v} is larger than the {steps} {unit} of a trial ({source}); {fix}")
    if isinstance(p, Hyperband) and p.max_resource != "epochs" and p.min_resource > p.max_resource:
        raise ValueError(f"{where}: {key}.min_resource = {p.min_resource} > max_resource = {p.max_resource}; swap "
                         "them")
    first = min_steps(p)
    explicit = isinstance(p, (SuccessiveHalving, Hyperband, Patient))  # keys that name epochs; a warm-up default
    if first is not None and first >= steps and (cv or explicit):  # does not fail a short study
        warm = getattr(p, "n_warmup_steps", None)
        if cv and warm is not None and warm >= steps - 1:
            raise ValueError(f"{where}: {key}.n_warmup_steps = {warm} with cv.folds = {steps}: folds 1..{warm} are "
                             f"never pruned and fold {steps} completes the trial, so nothing can be pruned; use "
                             f"n_warmup_steps below {steps - 1}, or pruner.name: none")
        what = {SuccessiveHalving: "min_resource x reduction_factor^min_early_stopping_rate",
                Hyperband: "min_resource", Patient: "patience + 2"}.get(type(p), "its warm-up + 1")
        raise ValueError(f"{where}: {key} {p.name} can first prune at {unit[:-1]} {first} ({what}), but a trial has "
                         f"{steps} {unit} ({source}) and its last is never pruned, so nothing can be pruned; bring "
                         f"it below {steps}, or use pruner.name: none")
    if isinstance(p, Wilcoxon) and 0.5 ** (steps - 1) >= p.p_threshold:
        prunable = steps - 1
        need = prunable + 1
        while 0.5 ** (need - 1) >= p.p_threshold:
            need += 1
        raise ValueError(f"{where}: {key}.name = 'wilcoxon' with cv.folds = {steps} can never prune: the smallest "
                         f"one-sided p-value of {prunable} folds is {0.5 ** prunable:.3g}, not below p_threshold "
                         f"{p.p_threshold}; use cv.folds >= {need}, raise {key}.p_threshold, or pruner.name: median")
    if isinstance(p, Patient) and p.wrapped is not None:
        check_fits(p.wrapped, steps, cv, source, where, f"{key}.wrapped")


def min_steps(spec: StrictModel) -> int | None:
    """The first step (epoch, or fold) at which the pruner can prune at all, for the checks against the
    study's epochs; None when it never prunes."""
    if isinstance(spec, Nop):
        return None
    if isinstance(spec, (Median, Percentile, Wilcoxon)):
        return spec.n_warmup_steps + 1
    if isinstance(spec, SuccessiveHalving):
        return spec.min_resource * spec.reduction_factor ** spec.min_early_stopping_rate
    if isinstance(spec, Hyperband):
        return spec.min_resource
    assert isinstance(spec, Patient)
    own = spec.patience + 2  # PatientPruner needs patience + 1 values after at least one before them
    if spec.wrapped is None:
        return own
    inner = min_steps(spec.wrapped)
    return None if inner is None else max(own, inner)  # it prunes only where both would


def build_pruner(spec: StrictModel, resources: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``spec``; ``resources``: a full trial's steps (the epochs, or the folds)."""
    if isinstance(spec, Nop):
        return optuna.pruners.NopPruner()
    if isinstance(spec, Median):
        return optuna.pruners.MedianPruner(n_startup_trials=spec.n_startup_trials,
                                           n_warmup_steps=optuna_warmup_steps(spec.n_warmup_steps))
    if isinstance(spec, Percentile):
        return optuna.pruners.PercentilePruner(spec.percentile, n_startup_trials=spec.n_startup_trials,
                                               n_warmup_steps=optuna_warmup_steps(spec.n_warmup_steps))
    if isinstance(spec, Wilcoxon):
        return optuna.pruners.WilcoxonPruner(p_threshold=spec.p_threshold,
                                             n_startup_steps=optuna_warmup_steps(spec.n_warmup_steps))
    if isinstance(spec, SuccessiveHalving):
        # Steps are epoch numbers, so Optuna's rung at step min_resource * f^k is "after epoch r * f^k"
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.min_resource,
                                                      reduction_factor=spec.reduction_factor,
                                                      min_early_stopping_rate=spec.min_early_stopping_rate)
    if isinstance(spec, Hyperband):
        top = resources if spec.max_resource == "epochs" else spec.max_resource
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_resource, max_resource=top,
                                              reduction_factor=spec.reduction_factor)
    assert isinstance(spec, Patient)
    inner = build_pruner(spec.wrapped, resources) if spec.wrapped is not None else None
    return optuna.pruners.PatientPruner(inner, patience=spec.patience, min_delta=spec.min_delta)


def optuna_warmup_steps(warmup_epochs: int) -> int:
    """Epochs (folds, with cv) are reported as steps 1, 2, 3, ...; Optuna's pruners prune from step ==
    n_warmup_steps on (they count from step 0), and WilcoxonPruner once it holds n_startup_steps values. So
    "epochs 1..n are never pruned" is n + 1 in Optuna's terms, for both."""
    return warmup_epochs + 1
