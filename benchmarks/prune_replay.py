"""Replay the median pruner's rule on recorded unpruned runs: how many epochs each setting would have saved,
and what it would have cost in final best macro-F1, in seconds instead of a benchmark's minutes.

It reads the runs that ``benchmarks/search_efficiency.py`` kept (``--out DIR``: ``DIR/results.json``) for one
unpruned strategy (``tpe`` by default) and, for every (n_startup_trials, n_warmup_steps) asked for, walks each
seed's trials in completion order as Optuna's MedianPruner would: after epoch e (e > warm-up, e below the
trial's last), once ``n_startup_trials`` trials completed, a trial whose best macro-F1 so far is below the
median of the completed trials' macro-F1 at epoch e stops there. A replay keeps the configurations the unpruned
sampler drew: a real pruned run's sampler would also learn from the pruned trials and draw others, so a replay
can err either way (on issue #22's suite it lost fewer winners to successive halving than the real runs did, on
issue #13's task more to the median): it can rule a setting out, not in; the benchmark itself measures it.

    python benchmarks/prune_replay.py --out runs/search-efficiency --startup 3,5 --warmup 1,2,3

``--pruner`` replays any pruner a study file can name, built by the service (search/study) and asked by Optuna
trial by trial, e.g. ``--pruner '{"name": "successive_halving", "min_resource": 2, "reduction_factor": 3}'``.
Beside the benchmark's real pruned runs this separates a pruner's two costs: the winners it stops among the
configurations the unpruned sampler drew (the replay), and the sampler drawing others once it learns from pruned
trials (only the real runs).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def replay(trials: list[dict], startup: int, warmup: int, floor: float = 0.0) -> tuple[int, float]:
    """(epochs trained, final best macro-F1) of one run's trials under the median rule; ``floor`` > 0 adds the
    median pruner's floor: a trial whose best so far is below floor x the best value a completed trial had at
    the same epoch stops too (search/study/_pruners.py)."""
    completed: list[list[float]] = []
    used, best = 0, 0.0
    for t in trials:
        curve = t["curve"]
        stop = len(curve)
        for epoch in range(warmup + 1, len(curve)):  # the last epoch is never pruned
            if not completed or len(completed) < startup:
                break
            mine = np.asarray(curve[:epoch], dtype=float)
            at = np.asarray([c[epoch - 1] for c in completed if len(c) >= epoch], dtype=float)
            # as Optuna: a trial with nothing but NaN is pruned; NaN among the others' values is skipped
            if np.isnan(mine).all() or (at.size and not np.isnan(at).all()
                                        and (np.nanmax(mine) < float(np.nanpercentile(at, 50))
                                             or np.nanmax(mine) < floor * float(np.nanmax(at)))):
                stop = epoch
                break
        used += stop
        if stop == len(curve):
            completed.append(curve)
            if not np.isnan(curve).all():
                best = max(best, float(np.nanmax(curve)))
    return used, best


def pruner_spec(pruner: dict, epochs: int):
    """A study file's pruner section, validated and checked against ``epochs`` as the service does (ValueError,
    one line)."""
    from search.study._pruners import PRUNERS, check_fits, check_pruner_keys

    raw = check_pruner_keys(pruner, "--pruner")
    spec = PRUNERS[raw["name"]].model_validate(raw)
    check_fits(spec, epochs, False, "the recorded runs", "--pruner", "pruner")
    return spec


def replay_pruner(trials: list[dict], pruner: dict, name: str = "replay") -> tuple[int, float]:
    """(epochs trained, final best macro-F1) of one run's trials, in completion order, under ``pruner`` (a study
    file's pruner section) as the service builds it: each trial reports its epochs to an Optuna study and stops
    where the pruner says (never at its last epoch). ``name``: the study's (hyperband puts a trial in a bracket by
    a hash of it), so a replay is reproducible."""
    import optuna

    from search.study import build_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    epochs = max(len(t["curve"]) for t in trials)
    study = optuna.create_study(study_name=name, direction="maximize",
                                pruner=build_pruner(pruner_spec(pruner, epochs), epochs))
    used, best = 0, 0.0
    for t in trials:
        trial, curve = study.ask(), t["curve"]
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            used += 1
            if epoch < len(curve) and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            final = 0.0 if np.isnan(curve).all() else float(np.nanmax(curve))
            study.tell(trial, final)
            best = max(best, final)
    return used, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="a search_efficiency.py --out folder")
    ap.add_argument("--strategy", default="tpe", help="an unpruned strategy of that run")
    ap.add_argument("--startup", default="2,3,4,5", help="n_startup_trials values, comma-separated")
    ap.add_argument("--warmup", default="1,2,3", help="n_warmup_steps values (epochs), comma-separated")
    ap.add_argument("--floor", default="0", help="floor values (0: the plain median rule), comma-separated")
    ap.add_argument("--pruner", action="append", default=[], metavar="JSON", help="also replay this pruner section "
                    "of a study file (any pruner name), built by the service; repeatable")
    args = ap.parse_args()
    report = json.loads((args.out / "results.json").read_text())
    runs = report["runs"].get(args.strategy)
    if not runs or any(t["state"] != "COMPLETE" for r in runs.values() for t in r["trials"]):
        raise SystemExit(f"--strategy {args.strategy!r}: needs an unpruned strategy of {args.out / 'results.json'}; "
                         f"it holds {', '.join(report['runs'])}")
    runs = dict(sorted(runs.items(), key=lambda kv: int(kv[0])))
    full = {s: (sum(len(t["curve"]) for t in r["trials"]), max(max(t["curve"]) for t in r["trials"]))
            for s, r in runs.items()}
    pruners = []
    for text in args.pruner:  # each checked before anything runs
        try:
            pruners.append(json.loads(text))
            pruner_spec(pruners[-1], report["epochs"])
        except json.JSONDecodeError as e:
            raise SystemExit(f"--pruner {text!r}: not JSON ({e.msg}); write e.g. '{{\"name\": \"median\"}}'")
        except ValueError as e:
            raise SystemExit(str(e).splitlines()[0])
    print(f"{args.strategy}: {len(runs)} seeds x {report['trials']} trials x {report['epochs']} epochs, replayed "
          "under the median rule (per seed: share of the unpruned epochs, final best minus the unpruned final best)")
    print(f"| n_startup_trials | n_warmup_steps | floor | {COLUMNS} |")
    print("|---|---|---|" + "---|" * 6)
    for startup, warmup, floor in itertools.product(*(
            [cast(v) for v in text.split(",")] for cast, text in
            ((int, args.startup), (int, args.warmup), (float, args.floor)))):
        f = _figures({s: replay(r["trials"], startup, warmup, floor) for s, r in runs.items()}, full)
        print(f"| {startup} | {warmup} | {floor:g} | {f} |")
    if pruners:
        print(f"\n| pruner | {COLUMNS} |")
        print("|---|" + "---|" * 6)
    for pruner in pruners:
        f = _figures({s: replay_pruner(r["trials"], pruner, f"replay-{args.strategy}-s{s}") for s, r in runs.items()},
                     full)
        print(f"| `{json.dumps(pruner)}` | {f} |")


COLUMNS = "per seed | median share | median final | mean final | worst final | seeds > 0.5 pt below"


def _figures(each: dict, full: dict) -> str:
    """COLUMNS: per seed and over seeds, the share of the unpruned epochs a replay trained and its final best minus
    the unpruned one; how many seeds lost more than 0.5 pt."""
    share = {s: used / full[s][0] for s, (used, _) in each.items()}
    gap = {s: best - full[s][1] for s, (_, best) in each.items()}
    return " | ".join([", ".join(f"s{s}: {100 * share[s]:.0f}% {gap[s]:+.3f}" for s in each),
                       f"{100 * statistics.median(share.values()):.0f}%", f"{statistics.median(gap.values()):+.3f}",
                       f"{statistics.mean(gap.values()):+.3f}", f"{min(gap.values()):+.3f}",
                       f"{sum(g < -0.005 for g in gap.values())} of {len(gap)}"])


if __name__ == "__main__":
    main()
