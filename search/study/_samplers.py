"""Samplers by name (``sampler.name`` in a study file), each with its own keys.

- ``tpe`` (default): any space, conditional and categorical included; multivariate, and with a constant liar
  so parallel workers do not all sample next to the same running trial.
- ``random``, ``qmc``: baselines; qmc (scrambled Sobol) covers a small budget more evenly than random.
- ``gp``: Optuna's Gaussian-process sampler; the most sample-efficient on small budgets (<= ~100 trials) of
  mostly numeric spaces, each sample costs seconds of CPU, and it has no constant liar (few workers).
- ``cmaes``: numeric, unconditional spaces with a large budget (hundreds of trials).

Each sampler is one class: its keys (the fields), what it needs of the search space, and the Optuna sampler it
builds. ``@sampler`` registers it under its name; that is all a new one needs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import Field

from search.study._named import check_named, registered_in
from search.study._space import Space
from training.config import SEED_MAX, StrictModel

__all__ = ["SamplerSpec", "SAMPLERS", "Sampler", "check_sampler_keys", "check_sampler_space", "build_sampler",
           "startup_trials"]

SAMPLERS: dict[str, type[Sampler]] = {}
Startup = Annotated[int, Field(ge=0)] | Literal["auto"]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)] | None  # mixed into each worker's seed (numpy's SeedSequence)


sampler = registered_in(SAMPLERS, "sampler")  # @sampler: register a sampler class under its name


def startup_trials(setting: int | str, budget: int) -> int:
    """``auto``: a third of the budget, at least 4 and at most 20 (Optuna's default is a fixed 10): 8 at the 24
    trials benchmarks/search_efficiency.py runs, 10 at 30, 20 from 60 trials on."""
    if setting != "auto":
        return int(setting)
    return max(4, min(20, budget // 3))


class Sampler(StrictModel):
    """What every sampler spec answers."""

    def build(self, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
        """The Optuna sampler; ``seed``: this worker's (the study's seed mixed with the worker, see
        search/workers/_worker.py), ``budget``: the study's trials (an ``auto`` start-up is a share of it)."""
        raise NotImplementedError

    def check_space(self, space: Space, where: str) -> None:
        """Raise ValueError (one line) for a search space it cannot sample as asked."""


@sampler
class Tpe(Sampler):
    name: Literal["tpe"] = "tpe"
    seed: Seed = 0
    n_startup_trials: Startup = Field("auto", description="random trials before TPE models the space; auto: "
                                      "a share of the budget (see startup_trials)")
    multivariate: bool = Field(True, description="one joint density over the parameters (and per group of a "
                               "conditional space) instead of one per parameter")
    constant_liar: bool = Field(True, description="running trials count as poor ones, so parallel workers do not "
                                "all sample next to the same running trial")

    def build(self, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(n_startup_trials=startup_trials(self.n_startup_trials, budget), seed=seed,
                                          multivariate=self.multivariate, group=self.multivariate,
                                          constant_liar=self.constant_liar)


@sampler
class Random(Sampler):
    name: Literal["random"] = "random"
    seed: Seed = 0

    def build(self, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=seed)


@sampler
class Qmc(Sampler):
    name: Literal["qmc"] = "qmc"
    seed: Seed = 0

    def build(self, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
        # one scrambled sequence shared by every worker through the study: the file's seed, unmixed (Optuna keys
        # the sequence by it; each worker's own would start sequences of their own)
        return optuna.samplers.QMCSampler(seed=self.seed, scramble=True, warn_independent_sampling=False)


@sampler
class Gp(Sampler):
    name: Literal["gp"] = "gp"
    seed: Seed = 0
    n_startup_trials: Startup = "auto"

    def build(self, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(self.n_startup_trials, budget),
                                         warn_independent_sampling=False)


@sampler
class CmaEs(Sampler):
    name: Literal["cmaes"] = "cmaes"
    seed: Seed = 0
    n_startup_trials: Startup = Field(1, description="random trials before CMA-ES starts")
    sigma0: float | None = Field(None, gt=0.0, description="initial step size; default: 1/6 of each range")
    popsize: int | None = Field(None, ge=2, description="trials per generation; default: 4 + 3 ln(dimensions)")

    def build(self, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup_trials(self.n_startup_trials, budget),
                                            sigma0=self.sigma0, popsize=self.popsize)

    def check_space(self, space: Space, where: str) -> None:
        """CMA-ES models one multivariate normal over numeric parameters: a categorical or conditional one would
        be sampled at random behind its back, so it is an error rather than a silent fallback."""
        for key, p in space.items():
            if p.kind == "categorical":
                raise ValueError(f"{where}: sampler.name = 'cmaes' needs a numeric space, but search_space.{key} is "
                                 f"categorical ({p.choices}); use sampler.name: tpe (or gp), or fix {key} in training")
            if p.when:
                raise ValueError(f"{where}: sampler.name = 'cmaes' needs an unconditional space, but "
                                 f"search_space.{key} has `when`; use sampler.name: tpe, or drop the condition")
        if not space:
            raise ValueError(f"{where}: sampler.name = 'cmaes' with an empty search_space; add parameters or use tpe")


SamplerSpec = Annotated[Union[tuple(SAMPLERS.values())], Field(discriminator="name")]


def check_sampler_keys(raw: Any, where: str) -> dict:
    """One line for a sampler section that does not validate (search/study/_named.py); returns it named."""
    return check_named(raw, where, "sampler", SAMPLERS, "tpe", "sampler")


def check_sampler_space(spec: Sampler, space: Space, where: str) -> None:
    spec.check_space(space, where)


def build_sampler(spec: Sampler, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
    """``seed``: the study's seed already mixed with the worker (search/workers/_worker.py)."""
    return spec.build(seed, budget)
