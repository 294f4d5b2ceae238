"""Replay the median pruner's rule on recorded unpruned runs: how many epochs each setting would have saved,
and what it would have cost in final best macro-F1, in seconds instead of a benchmark's minutes.

It reads the runs that ``benchmarks/search_efficiency.py`` kept (``--out DIR``: ``DIR/results.json``) for one
unpruned strategy (``tpe`` by default) and, for every (n_startup_trials, n_warmup_steps) asked for, walks each
seed's trials in completion order as Optuna's MedianPruner would: after epoch e (e > warm-up, e below the
trial's last), once ``n_startup_trials`` trials completed, a trial whose best macro-F1 so far is below the
median of the completed trials' macro-F1 at epoch e stops there. A replay keeps the configurations the unpruned
sampler drew: a real pruned run's sampler would also learn from the pruned trials and draw others, so this
bounds what a setting can do on the task; the benchmark itself measures it.

    python benchmarks/prune_replay.py --out runs/search-efficiency --startup 3,5 --warmup 1,2,3
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import numpy as np


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="a search_efficiency.py --out folder")
    ap.add_argument("--strategy", default="tpe", help="an unpruned strategy of that run")
    ap.add_argument("--startup", default="2,3,4,5", help="n_startup_trials values, comma-separated")
    ap.add_argument("--warmup", default="1,2,3", help="n_warmup_steps values (epochs), comma-separated")
    ap.add_argument("--floor", default="0", help="floor values (0: the plain median rule), comma-separated")
    args = ap.parse_args()
    report = json.loads((args.out / "results.json").read_text())
    runs = report["runs"].get(args.strategy)
    if not runs or any(t["state"] != "COMPLETE" for r in runs.values() for t in r["trials"]):
        raise SystemExit(f"--strategy {args.strategy!r}: needs an unpruned strategy of {args.out / 'results.json'}; "
                         f"it holds {', '.join(report['runs'])}")
    runs = dict(sorted(runs.items(), key=lambda kv: int(kv[0])))
    full = {s: (sum(len(t["curve"]) for t in r["trials"]), max(max(t["curve"]) for t in r["trials"]))
            for s, r in runs.items()}
    print(f"{args.strategy}: {len(runs)} seeds x {report['trials']} trials x {report['epochs']} epochs, replayed "
          "under the median rule (per seed: share of the unpruned epochs, final best minus the unpruned final best)")
    print("| n_startup_trials | n_warmup_steps | floor | per seed | median share | median final | worst final |")
    print("|---|---|---|---|---|---|---|")
    for startup, warmup, floor in itertools.product(*(
            [cast(v) for v in text.split(",")] for cast, text in
            ((int, args.startup), (int, args.warmup), (float, args.floor)))):
        each = {s: replay(r["trials"], startup, warmup, floor) for s, r in runs.items()}
        share = {s: used / full[s][0] for s, (used, _) in each.items()}
        gap = {s: best - full[s][1] for s, (_, best) in each.items()}
        per = ", ".join(f"s{s}: {100 * share[s]:.0f}% {gap[s]:+.3f}" for s in runs)
        print(f"| {startup} | {warmup} | {floor:g} | {per} | {100 * statistics.median(share.values()):.0f}% | "
              f"{statistics.median(gap.values()):+.3f} | {min(gap.values()):+.3f} |")


if __name__ == "__main__":
    main()
