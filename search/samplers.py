"""Samplers by name (``sampler.name`` in a study file), each with its own keys.

- ``tpe`` (default): any space, conditional and categorical included; multivariate, and with a constant liar
  so parallel workers do not all sample next to the same running trial.
- ``random``, ``qmc``: baselines; qmc (scrambled Sobol) covers a small budget more evenly than random.
- ``gp``: Optuna's Gaussian-process sampler; the most sample-efficient on small budgets (<= ~100 trials) of
  mostly numeric spaces, each sample costs seconds of CPU, and it has no constant liar (few workers).
- ``cmaes``: numeric, unconditional spaces with a large budget (hundreds of trials).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import Field

from training.config import StrictModel

from .named_config import check_named
from .space import Space

__all__ = ["SamplerSpec", "SAMPLERS", "check_sampler_keys", "check_sampler_space", "build_sampler",
           "startup_trials"]

Startup = Annotated[int, Field(ge=0)] | Literal["auto"]


class Tpe(StrictModel):
    name: Literal["tpe"] = "tpe"
    seed: int | None = 0
    n_startup_trials: Startup = Field("auto", description="random trials before TPE models the space; auto: "
                                      "a share of the budget (see startup_trials)")


class Random(StrictModel):
    name: Literal["random"] = "random"
    seed: int | None = 0


class Qmc(StrictModel):
    name: Literal["qmc"] = "qmc"
    seed: int | None = 0


class Gp(StrictModel):
    name: Literal["gp"] = "gp"
    seed: int | None = 0
    n_startup_trials: Startup = "auto"


class CmaEs(StrictModel):
    name: Literal["cmaes"] = "cmaes"
    seed: int | None = 0
    n_startup_trials: Startup = Field(1, description="random trials before CMA-ES starts")
    sigma0: float | None = Field(None, gt=0.0, description="initial step size; default: 1/6 of each range")
    popsize: int | None = Field(None, ge=2, description="trials per generation; default: 4 + 3 ln(dimensions)")


SamplerSpec = Annotated[Union[Tpe, Random, Qmc, Gp, CmaEs], Field(discriminator="name")]
SAMPLERS: dict[str, type[StrictModel]] = {m.model_fields["name"].default: m for m in (Tpe, Random, Qmc, Gp, CmaEs)}


def check_sampler_keys(raw: Any, where: str) -> dict:
    """One line for a sampler section that does not validate (search/named_config.py); returns it named."""
    return check_named(raw, where, "sampler", SAMPLERS, "tpe", "sampler")


def check_sampler_space(spec: StrictModel, space: Space, where: str) -> None:
    """CMA-ES models one multivariate normal over numeric parameters: a categorical or conditional one would
    be sampled at random behind its back, so it is an error rather than a silent fallback."""
    if not isinstance(spec, CmaEs):
        return
    for key, p in space.items():
        if p.kind == "categorical":
            raise ValueError(f"{where}: sampler.name = 'cmaes' needs a numeric space, but search_space.{key} is "
                             f"categorical ({p.choices}); use sampler.name: tpe (or gp), or fix {key} in training")
        if p.when:
            raise ValueError(f"{where}: sampler.name = 'cmaes' needs an unconditional space, but "
                             f"search_space.{key} has `when`; use sampler.name: tpe, or drop the condition")
    if not space:
        raise ValueError(f"{where}: sampler.name = 'cmaes' with an empty search_space; add parameters or use tpe")


def startup_trials(setting: int | str, budget: int) -> int:
    """``auto``: a third of the budget, at least 4 and at most 20 (Optuna's default is a fixed 10): 8 at the 24
    trials benchmarks/search_efficiency.py runs, 10 at 30, 20 from 60 trials on."""
    if setting != "auto":
        return int(setting)
    return max(4, min(20, budget // 3))


def build_sampler(spec: StrictModel, seed: int | None, budget: int) -> optuna.samplers.BaseSampler:
    """``seed``: the study's seed already mixed with the worker (search/worker.py)."""
    if isinstance(spec, Random):
        return optuna.samplers.RandomSampler(seed=seed)
    if isinstance(spec, Qmc):  # one scrambled sequence shared by every worker through the study: the file's seed,
        # unmixed (Optuna keys the sequence by it; each worker's own would start sequences of their own)
        return optuna.samplers.QMCSampler(seed=spec.seed, scramble=True, warn_independent_sampling=False)
    if isinstance(spec, Gp):
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(spec.n_startup_trials, budget),
                                         warn_independent_sampling=False)
    if isinstance(spec, CmaEs):
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup_trials(spec.n_startup_trials, budget),
                                            sigma0=spec.sigma0, popsize=spec.popsize)
    assert isinstance(spec, Tpe)
    return optuna.samplers.TPESampler(n_startup_trials=startup_trials(spec.n_startup_trials, budget), seed=seed,
                                      multivariate=True, group=True, constant_liar=True)
