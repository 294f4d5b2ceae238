"""Warm starts: another study's best parameter sets, fitted to this study's space, as its first trials.

``search run --study B --warm-start A --top-k K``: the K best COMPLETE trials of study A (same store) are mapped
onto B's search space by :func:`map_trials` (pure: no store) and enqueued into B by :func:`enqueue` under the
study lock, never beyond B's budget. Workers claim WAITING trials oldest first, so these run before any sampled
trial. The mapping, parameter by parameter in B's file order (so ``when`` conditions see the values chosen):

* a parameter A's trial has: numbers are rounded (int), clipped to [low, high] and snapped to a step grid; a
  categorical value that is not one of B's choices, or a value of the wrong kind, is skipped (B's default);
* a parameter A's trial lacks: B's default (its ``default``, else the fixed config's value);
* a parameter inactive in B under the chosen values: dropped; one of A's that B does not search: dropped.

Every adjustment is one note line; trials that map to the same parameters are enqueued once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from search.errors import SearchError
from search.ranking import completed, ranked
from search.store import LIVE, open_storage, redact, study_lock
from search.study._space import Param, Space, get_path, is_active, lookup
from search.study._study_file import StudyConfig, study_name
from training.errors import TrainingError
from training.registry import did_you_mean

__all__ = ["DEFAULT_TOP_K", "Start", "Plan", "Source", "Enqueued", "map_params", "map_trials", "read_source",
           "enqueue"]

DEFAULT_TOP_K = 5


@dataclass(frozen=True)
class Start:
    """One parameter set to enqueue: from the source study's trial ``trial`` (its value ``value``)."""
    trial: int
    value: float
    params: dict[str, Any]


@dataclass
class Plan:
    starts: list[Start]                         # best first, distinct
    notes: list[str] = field(default_factory=list)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else repr(v)


def _default(p: Param, key: str, base: dict) -> Any:
    """What space.defaults() gives the parameter."""
    return p.default if p.default is not None else get_path(base, key, None)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fit_number(p: Param, value: float) -> tuple[int | float, list[str]]:
    """``value`` inside p's range and on its grid, and the steps that took it there."""
    done = []
    v: float = float(value)
    if p.kind == "int" and not v.is_integer():
        v = float(math.floor(v + 0.5))
        done.append("rounded to an integer")
    low, high = float(p.low), float(p.high)
    step = float(p.step) if p.step else None
    if step:  # Optuna moves high down onto the grid from low; so does this
        high = low + math.floor((high - low) / step + 1e-9) * step
    if v < low or v > high:
        v = min(max(v, low), high)
        done.append(f"clipped to [{_fmt(p.low)}, {_fmt(p.high)}]")
    if step:
        snapped = min(low + round((v - low) / step) * step, high)
        snapped = float(f"{snapped:.12g}")  # 0.15000000000000002 -> 0.15: the grid value a user wrote
        if not math.isclose(snapped, v, rel_tol=1e-9, abs_tol=1e-12):
            done.append(f"snapped to the step-{_fmt(p.step)} grid")
        v = snapped
    return (int(v) if p.kind == "int" else v), done


def _choice(p: Param, value: Any) -> tuple[bool, Any]:
    """B's own choice equal to ``value`` (True is not 1, '1' is not 1), if there is one."""
    for c in p.choices or []:
        if c == value and isinstance(c, bool) == isinstance(value, bool) and \
                isinstance(c, str) == isinstance(value, str):
            return True, c
    return False, None


_SKIP = object()


def _fit(p: Param, value: Any, target: str) -> tuple[Any, str]:
    """``value`` in p's distribution and what was done to it ('' for nothing), or (_SKIP, why not)."""
    if p.kind == "categorical":
        ok, c = _choice(p, value)
        return (c, "") if ok else (_SKIP, f"not one of study '{target}''s choices {p.choices}")
    if not _is_number(value):
        return _SKIP, f"not a number in study '{target}''s range [{_fmt(p.low)}, {_fmt(p.high)}]"
    v, done = _fit_number(p, value)
    return v, f"{', then '.join(done)} -> {_fmt(v)}" if done else ""


def _when(p: Param) -> str:
    return ", ".join(f"{k} in {v}" if isinstance(v, list) else f"{k} = {_fmt(v)}" for k, v in p.when.items())


def map_params(number: int, params: dict[str, Any], space: Space, base: dict, source: str = "A",
               target: str = "B") -> tuple[dict[str, Any], list[str], list[str]]:
    """Trial ``number`` of study ``source`` on study ``target``'s ``space``: (the params to enqueue, one note per
    adjustment, the keys the trial lacked, which took their defaults). ``base``: the target's fixed training
    config. In file
    order, as space.defaults(): a condition sees the values chosen before it and the fixed config."""
    chosen: dict[str, Any] = {}
    notes: list[str] = []
    lacked: list[str] = []
    for key, p in space.items():
        has = key in params
        shown = f"study '{source}' trial {number}: {key}" + (f" = {_fmt(params[key])}" if has else "")
        if not is_active(p, {k: lookup(k, chosen, base) for k in p.when}):
            if has:
                notes.append(f"{shown}: dropped, inactive in study '{target}' with these values (when {_when(p)})")
            continue
        why = ""
        if has:
            value, why = _fit(p, params[key], target)
            if value is not _SKIP:
                chosen[key] = value
                if why:
                    notes.append(f"{shown}: {why}")
                continue
        default = _default(p, key, base)
        if default is None:  # a nullable config field without a `default:`: nothing to fall back on
            notes.append(f"{shown}: {why + '; ' if why else 'not set, and '}no default; left to the sampler")
            continue
        chosen[key] = default
        if has:
            notes.append(f"{shown}: {why}; skipped, its default {_fmt(default)} used")
        else:
            lacked.append(key)
    return chosen, notes, lacked


def same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same parameter set, to enqueue it once (numbers compared as floats; Optuna's skip_if_exists, which
    also guards the enqueue, is looser: np.isclose)."""
    if a.keys() != b.keys():
        return False
    for k, x in a.items():
        y = b[k]
        if _is_number(x) and _is_number(y):
            if not math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=0.0):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True


def map_trials(trials: list[FrozenTrial], space: Space, base: dict, source: str = "A",
               target: str = "B") -> Plan:
    """``trials`` (best first) of study ``source`` as parameter sets of ``space``, with the notes: one line for the
    parameters ``target`` does not search, one per parameter the trials lack, one per adjustment, one per trial
    that maps to the same set as a better one (kept once)."""
    plan = Plan([])
    per_trial: list[str] = []
    lacked: dict[str, list[int]] = {}
    for t in trials:
        params, notes, missing = map_params(t.number, t.params, space, base, source, target)
        for key in missing:
            lacked.setdefault(key, []).append(t.number)
        per_trial += notes
        twin = next((s for s in plan.starts if same_params(s.params, params)), None)
        if twin is not None:
            per_trial.append(f"study '{source}' trial {t.number}: the same parameters as trial {twin.trial} once "
                             "mapped; enqueued once")
            continue
        plan.starts.append(Start(t.number, float(t.value), params))
    dropped = sorted({k for t in trials for k in t.params} - set(space))
    if dropped:
        plan.notes.append(f"not searched by study '{target}', dropped: {', '.join(dropped)}")
    for key, numbers in lacked.items():
        default = _fmt(_default(space[key], key, base))
        where = "" if len(numbers) == len(trials) else f" in trial{'s' if len(numbers) > 1 else ''} " \
            f"{', '.join(map(str, numbers))}"
        plan.notes.append(f"{key}: not set by study '{source}'{where}; study '{target}''s default {default} used")
    plan.notes += per_trial
    return plan


# ---------------------------------------------------------------------------------------------- the store part


@dataclass(frozen=True)
class Source:
    """The source study as read before anything is written: its name, its completed count, its top trials."""
    name: str
    completed: int
    top: list[FrozenTrial]


def _states(trials: list[FrozenTrial]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"


def read_source(url: str, name_or_path: str, target: str, top_k: int) -> Source:
    """Study ``name_or_path`` (a name in the store, or a study file / shipped name whose ``name`` is used) and its
    ``top_k`` best completed trials. Read only, and before the target study is created: a bad ``--warm-start``
    leaves the store as it was."""
    name = name_or_path
    try:
        name = study_name(name_or_path)
    except TrainingError:
        pass  # a study that lives only in the store
    opt = f"--warm-start '{name_or_path}'"
    if name == target:
        raise SearchError(f"{opt} is study '{target}' itself, the one being run; warm-start from another study "
                          "(e.g. a quick efficientnet_b0 one) or drop --warm-start")
    if url.startswith("sqlite:///") and ":memory:" not in url:
        if not Path(url.removeprefix("sqlite:///")).expanduser().is_file():
            raise SearchError(f"{opt}: there is no study store at '{url}' yet, so no study '{name}'; pass the "
                              "--storage that holds it")
    storage = open_storage(url)
    try:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            names = sorted(optuna.study.get_all_study_names(storage))
            raise SearchError(f"{opt}: no study '{name}' in {redact(url)}{did_you_mean(name, names)}; it holds: "
                              f"{', '.join(names) or 'no studies'}; the source must be in the same --storage"
                              ) from None
        if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
            raise SearchError(f"{opt}: study '{name}' does not maximize one value (it has "
                              f"{', '.join(d.name.lower() for d in study.directions)}); warm-start from a study "
                              "that `search run` made")
        trials = study.get_trials(deepcopy=True)
    finally:
        storage.engine.dispose()
    done = ranked(completed(trials))
    if not done:
        raise SearchError(f"{opt}: study '{name}' has no completed trial to start from ({_states(trials)}); "
                          f"run it first (search run --study {name}) or drop --warm-start")
    return Source(name, len(done), done[:top_k])


@dataclass(frozen=True)
class Enqueued:
    enqueued: list[int]           # source trial numbers, in the order they were enqueued
    already: list[int]            # already in the target study (an earlier warm start, or the same parameters)
    left_out: list[int]           # no room in the budget
    defaults_first: bool          # a defaults trial was enqueued before them


def _queue(plan: Plan, defaults: dict | None, source: str) -> list[tuple[Start | None, dict, dict]]:
    """(start or None for the defaults trial, params, user_attrs), in enqueue order. ``defaults``: the target's
    defaults when its trial 0 must run them (seed_trials_with_defaults, empty study): that trial comes first,
    and is the warm-start set equal to the defaults when there is one (marked as both)."""
    queue = [(s, s.params, {"warm_start": {"study": source, "trial": s.trial}}) for s in plan.starts]
    if defaults is None:
        return queue
    same = next((i for i, (s, params, _) in enumerate(queue) if same_params(params, defaults)), None)
    if same is None:
        return [(None, defaults, {"defaults": True}), *queue]
    s, params, attrs = queue.pop(same)
    return [(s, params, {**attrs, "defaults": True}), *queue]


def enqueue(study: optuna.Study, storage, url: str, sc: StudyConfig, source: Source, budget: int,
            say=print) -> Enqueued:
    """Enqueue ``source``'s mapped trials into ``study`` (B, already opened with its budget set), under the study
    lock, at most budget - live trials of them (complete, pruned, running and waiting count: the exact-budget
    guarantee of search/store/_budget.py). Prints the notes and one summary line through ``say``."""
    plan = map_trials(source.top, sc.space, sc.base, source.name, sc.name)
    with study_lock(storage, url, sc.name):
        trials = study.get_trials(deepcopy=False)
        # top_up enqueues the defaults trial only into a study without trials: enqueuing here first would skip it
        defaults = sc.default_params() if sc.spec.seed_trials_with_defaults and not trials else None
        queue = _queue(plan, defaults, source.name)
        earlier = {(w.get("study"), w.get("trial")) for t in trials
                   if isinstance(w := t.user_attrs.get("warm_start"), dict)}
        room = budget - sum(t.state in LIVE for t in trials)
        n = len(trials)
        enqueued, already, left_out, defaults_first = [], [], [], False
        for start, params, attrs in queue:
            if start is not None and (source.name, start.trial) in earlier:
                already.append(start.trial)
                continue
            if room <= 0:
                if start is not None:
                    left_out.append(start.trial)
                continue
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
            # skip_if_exists says nothing when it skips; whoever else adds trials (top_up, claims) holds this lock
            added = len(study.get_trials(deepcopy=False)) > n
            n, room = n + int(added), room - int(added)
            if start is None:
                defaults_first = added
            elif added:
                enqueued.append(start.trial)
            else:
                already.append(start.trial)
                plan.notes.append(f"study '{source.name}' trial {start.trial}: study '{sc.name}' already holds a "
                                  "trial with these parameters; not enqueued again")
    for note in plan.notes:
        say(f"warm start: {note}")
    what = f"top {len(source.top)} of {source.completed} completed"
    line = (f"warm start: enqueued {len(enqueued)} trial{'' if len(enqueued) == 1 else 's'} from study "
            f"'{source.name}' ({what})")
    if defaults_first:
        line += ", after the defaults trial"
    if already:
        line += f"; {len(already)} already in study '{sc.name}'"
    if left_out:
        line += (f"; {len(left_out)} left out (trial{'s' if len(left_out) > 1 else ''} "
                 f"{', '.join(map(str, left_out))}): the budget of {budget} has no room for them, raise --n-trials")
    say(line)
    return Enqueued(enqueued, already, left_out, defaults_first)
