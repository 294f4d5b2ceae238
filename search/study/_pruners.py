"""Pruners by name (``pruner.name`` in a study file), each with its own keys, counted in epochs.

A trial reports its validation macro-F1 once per epoch as steps 1, 2, 3, ... (once per fold with ``cv``), and
its last epoch is never pruned (search/workers/_epoch_reports.py). Keys are in those units: ``n_warmup_steps: 2``
means epochs 1 and 2 are never pruned, ``min_resource: 2`` means the first cut comes after epoch 2.

```yaml
pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 2}
pruner: {name: median, floor: 0.5}      # also stop a trial below half the best completed one's F1 at its epoch
pruner: {name: successive_halving, min_resource: 1, reduction_factor: 3}
pruner: {name: hyperband, min_resource: 1, reduction_factor: 3}       # max_resource: the epochs
pruner: {name: patient, patience: 2, wrapped: {name: median}}
```

Each pruner is one class: its keys (the fields), the first step it can prune at, the checks of its keys against
a study's epochs, and the Optuna pruner it builds. ``@pruner`` registers it under its name; that is all a new
one needs.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

import optuna
from pydantic import Field

from search.study._floor import FloorPruner
from search.study._named import check_named, registered_in
from training.config import StrictModel

__all__ = ["PrunerSpec", "PRUNERS", "Pruner", "check_pruner_keys", "check_fits", "build_pruner",
           "optuna_warmup_steps", "min_steps"]

PRUNERS: dict[str, type[Pruner]] = {}


pruner = registered_in(PRUNERS, "pruner")  # @pruner: register a pruner class under its name


class Pruner(StrictModel):
    """What every pruner spec answers. ``names_epochs``: its keys name epochs outright (a first cut at or after
    the last epoch is then a mistake, not a short study's default warm-up). ``first_what``: how the first
    prunable step follows from the keys, for the error that says it comes too late."""
    names_epochs: ClassVar[bool] = False
    first_what: ClassVar[str] = "its warm-up + 1"

    def first_step(self) -> int | None:
        """The first step (epoch, or fold) at which it can prune at all; None when it never prunes."""
        raise NotImplementedError

    def build(self, steps: int) -> optuna.pruners.BasePruner:
        """The Optuna pruner; ``steps``: a full trial's steps (the epochs, or the folds)."""
        raise NotImplementedError

    @classmethod
    def check_raw(cls, raw: dict, where: str, key: str) -> dict:
        """The section as written, before validation: its nested sections checked first."""
        return raw

    def check(self, steps: int, cv: bool, source: str, where: str, key: str = "pruner") -> None:
        """Raise ValueError (one line) when the keys name more steps than a trial has, or leave nothing to prune:
        the keys count epochs (folds, with cv) and a trial's last one is never pruned. ``steps`` come from
        ``source``."""
        unit = "folds" if cv else "epochs"
        first = self.first_step()
        if first is None or first < steps or not (cv or self.names_epochs):  # a default warm-up does not fail a
            return  # short study (study_warnings says it can never act)
        warm = getattr(self, "n_warmup_steps", None)
        if cv and warm is not None and warm >= steps - 1:
            raise ValueError(f"{where}: {key}.n_warmup_steps = {warm} with cv.folds = {steps}: folds 1..{warm} are "
                             f"never pruned and fold {steps} completes the trial, so nothing can be pruned; use "
                             f"n_warmup_steps below {steps - 1}, or pruner.name: none")
        raise ValueError(f"{where}: {key} {self.name} can first prune at {unit[:-1]} {first} ({self.first_what}), "
                         f"but a trial has {steps} {unit} ({source}) and its last is never pruned, so nothing can be "
                         f"pruned; bring it below {steps}, or use pruner.name: none")


def optuna_warmup_steps(warmup_epochs: int) -> int:
    """Epochs (folds, with cv) are reported as steps 1, 2, 3, ...; Optuna's pruners prune from step ==
    n_warmup_steps on (they count from step 0), and WilcoxonPruner once it holds n_startup_steps values. So
    "epochs 1..n are never pruned" is n + 1 in Optuna's terms, for both."""
    return warmup_epochs + 1


def _resources_fit(p: Pruner, steps: int, cv: bool, source: str, where: str, key: str) -> None:
    unit = "folds" if cv else "epochs"
    for k in ("min_resource", "max_resource"):
        v = getattr(p, k, None)
        if isinstance(v, int) and v > steps:
            fix = f"use {k} below {steps}, counted in {unit}" if steps > 1 else \
                f"a trial of one {unit[:-1]} is never pruned: use pruner.name: none"
            raise ValueError(f"{where}: {key}.{k} = {v} is larger than the {steps} {unit} of a trial ({source}); {fix}")


class _WarmedUp(Pruner):
    """A pruner that judges a trial from its first step after ``n_warmup_steps``."""
    n_warmup_steps: int

    def first_step(self) -> int:
        return self.n_warmup_steps + 1


@pruner
class Median(_WarmedUp):
    name: Literal["median"] = "median"
    # 3, not Optuna's 5: the sampler's first trials are random and mostly poor, and on the search-efficiency
    # benchmark (benchmarks/RESULTS.md) stopping them from the 4th trial on saved a third more epochs than from
    # the 6th, at a median final best no lower than unpruned TPE's
    n_startup_trials: int = Field(3, ge=0, description="trials that complete before any is pruned")
    n_warmup_steps: int = Field(1, ge=0, description="epochs (folds, with cv) of each trial never pruned")
    floor: float | None = Field(None, gt=0.0, lt=1.0, description="also stop a trial whose best so far is below "
                                "floor x the best a completed trial had at the same epoch (search/study/_floor.py)")

    def build(self, steps: int) -> optuna.pruners.BasePruner:
        warmup = optuna_warmup_steps(self.n_warmup_steps)
        median = optuna.pruners.MedianPruner(n_startup_trials=self.n_startup_trials, n_warmup_steps=warmup)
        return median if self.floor is None else FloorPruner(median, self.floor, self.n_startup_trials, warmup)


@pruner
class Percentile(_WarmedUp):
    name: Literal["percentile"] = "percentile"
    percentile: float = Field(25.0, gt=0.0, lt=100.0, description="keep the trials in the top percentile % at "
                              "each epoch (50 = median; 25 prunes more)")
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(1, ge=0)

    def build(self, steps: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.PercentilePruner(self.percentile, n_startup_trials=self.n_startup_trials,
                                               n_warmup_steps=optuna_warmup_steps(self.n_warmup_steps))


@pruner
class SuccessiveHalving(Pruner):
    """ASHA: at epochs r, r*f, r*f^2, ... only the best 1/f of the trials that got there go on."""
    names_epochs: ClassVar[bool] = True
    first_what: ClassVar[str] = "min_resource x reduction_factor^min_early_stopping_rate"
    name: Literal["successive_halving"] = "successive_halving"
    min_resource: int = Field(1, ge=1, description="epochs before the first cut")
    reduction_factor: int = Field(3, ge=2, description="keep the best 1/f at each rung")
    min_early_stopping_rate: int = Field(0, ge=0, description="skip the first s rungs (first cut at r*f^s)")

    def first_step(self) -> int:
        return self.min_resource * self.reduction_factor ** self.min_early_stopping_rate

    def build(self, steps: int) -> optuna.pruners.BasePruner:
        # steps are epoch numbers, so Optuna's rung at step min_resource * f^k is "after epoch r * f^k"
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=self.min_resource,
                                                      reduction_factor=self.reduction_factor,
                                                      min_early_stopping_rate=self.min_early_stopping_rate)

    def check(self, steps: int, cv: bool, source: str, where: str, key: str = "pruner") -> None:
        _resources_fit(self, steps, cv, source, where, key)
        super().check(steps, cv, source, where, key)


@pruner
class Hyperband(Pruner):
    """Several successive-halving brackets, from aggressive (first cut at min_resource) to none."""
    names_epochs: ClassVar[bool] = True
    first_what: ClassVar[str] = "min_resource"
    name: Literal["hyperband"] = "hyperband"
    min_resource: int = Field(1, ge=1)
    max_resource: int | Literal["epochs"] = Field("epochs", description="a trial's full budget; default: the "
                                                  "study's epochs (folds, with cv)")
    reduction_factor: int = Field(3, ge=2)

    def first_step(self) -> int:
        return self.min_resource

    def build(self, steps: int) -> optuna.pruners.BasePruner:
        top = steps if self.max_resource == "epochs" else self.max_resource
        return optuna.pruners.HyperbandPruner(min_resource=self.min_resource, max_resource=top,
                                              reduction_factor=self.reduction_factor)

    def check(self, steps: int, cv: bool, source: str, where: str, key: str = "pruner") -> None:
        _resources_fit(self, steps, cv, source, where, key)
        if self.max_resource != "epochs" and self.min_resource > self.max_resource:
            raise ValueError(f"{where}: {key}.min_resource = {self.min_resource} > max_resource = "
                             f"{self.max_resource}; swap them")
        super().check(steps, cv, source, where, key)


@pruner
class Patient(Pruner):
    """Optuna's PatientPruner: a trial stalls when its last patience + 1 epochs all stay more than min_delta
    below its best before them. A stalled trial is pruned; with ``wrapped``, only if that pruner prunes it too
    (so a stalled trial that still beats the others goes on)."""
    names_epochs: ClassVar[bool] = True
    first_what: ClassVar[str] = "patience + 2"
    name: Literal["patient"] = "patient"
    patience: int = Field(ge=1, description="epochs after the best one that may fall below it")
    min_delta: float = Field(0.0, ge=0.0, description="a fall smaller than this is not a stall")
    wrapped: PrunerSpec | None = None

    def first_step(self) -> int | None:
        own = self.patience + 2  # PatientPruner needs patience + 1 values after at least one before them
        if self.wrapped is None:
            return own
        inner = self.wrapped.first_step()
        return None if inner is None else max(own, inner)  # it prunes only where both would

    def build(self, steps: int) -> optuna.pruners.BasePruner:
        inner = self.wrapped.build(steps) if self.wrapped is not None else None
        return optuna.pruners.PatientPruner(inner, patience=self.patience, min_delta=self.min_delta)

    @classmethod
    def check_raw(cls, raw: dict, where: str, key: str) -> dict:
        wrapped = raw.get("wrapped")
        if isinstance(wrapped, dict):
            inner = wrapped.get("name", "median")
            if inner in ("patient", "successive_halving", "hyperband"):
                why = ("a patient pruner inside a patient pruner" if inner == "patient" else
                       f"{inner} ranks trials only among those it is asked about, and a patient pruner asks only "
                       "about stalled ones, so it would never prune")
                alone = "" if inner == "patient" else f", or use pruner.name: {inner} alone"
                raise ValueError(f"{where}: {key}.wrapped.name = {inner!r}: {why}; wrap median or percentile{alone}")
        return raw if wrapped is None else {**raw, "wrapped": check_pruner_keys(wrapped, where, f"{key}.wrapped")}

    def check(self, steps: int, cv: bool, source: str, where: str, key: str = "pruner") -> None:
        super().check(steps, cv, source, where, key)
        if self.wrapped is not None:
            self.wrapped.check(steps, cv, source, where, f"{key}.wrapped")


@pruner
class Wilcoxon(_WarmedUp):
    """For cv studies: pairs a trial's fold scores with the best trial's same folds."""
    name: Literal["wilcoxon"] = "wilcoxon"
    p_threshold: float = Field(0.1, gt=0.0, lt=1.0, description="prune when the fold scores are worse than the "
                               "best trial's at this significance")
    n_warmup_steps: int = Field(1, ge=0, description="folds never pruned")

    def build(self, steps: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.WilcoxonPruner(p_threshold=self.p_threshold,
                                             n_startup_steps=optuna_warmup_steps(self.n_warmup_steps))

    def check(self, steps: int, cv: bool, source: str, where: str, key: str = "pruner") -> None:
        if not cv:
            raise ValueError(f"{where}: {key}.name = 'wilcoxon' compares fold scores, but the study has no cv; add "
                             "`cv: {folds: 5}` or use pruner.name: median")
        super().check(steps, cv, source, where, key)
        if 0.5 ** (steps - 1) >= self.p_threshold:
            prunable = steps - 1
            need = prunable + 1
            while 0.5 ** (need - 1) >= self.p_threshold:
                need += 1
            raise ValueError(f"{where}: {key}.name = 'wilcoxon' with cv.folds = {steps} can never prune: the "
                             f"smallest one-sided p-value of {prunable} folds is {0.5 ** prunable:.3g}, not below "
                             f"p_threshold {self.p_threshold}; use cv.folds >= {need}, raise {key}.p_threshold, or "
                             "pruner.name: median")


@pruner
class Nop(Pruner):
    name: Literal["none"] = "none"

    def first_step(self) -> None:
        return None

    def build(self, steps: int) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()


PrunerSpec = Annotated[Union[tuple(PRUNERS.values())], Field(discriminator="name")]
Patient.model_rebuild()


def check_pruner_keys(raw: Any, where: str, key: str = "pruner") -> dict:
    """One line for a pruner section that does not validate (search/study/_named.py), its nested sections first;
    returns the section with its names filled in."""
    if isinstance(raw, dict) and raw.get("name") in PRUNERS:
        raw = PRUNERS[raw["name"]].check_raw(raw, where, key)
    return check_named(raw, where, key, PRUNERS, "median", "pruner")


def check_fits(p: Pruner, steps: int, cv: bool, source: str, where: str, key: str = "pruner") -> None:
    """``p.check``: its keys against a trial's ``steps`` epochs (folds, with cv), given by ``source``."""
    p.check(steps, cv, source, where, key)


def min_steps(spec: Pruner) -> int | None:
    """The first step (epoch, or fold) at which the pruner can prune at all; None when it never prunes."""
    return spec.first_step()


def build_pruner(spec: Pruner, resources: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``spec``; ``resources``: a full trial's steps (the epochs, or the folds)."""
    return spec.build(resources)
