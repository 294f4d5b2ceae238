"""Search strategies on a table of real learning curves: many seeds, budgets and worker counts in minutes.

``benchmarks/search_efficiency.py`` trains every trial for real, so a block of the suite (one task, one worker
count, a few strategies x 3 seeds) costs 10-40 minutes of both cores, and at 5-10 pt of macro-F1 from seed to
seed three seeds decide little. Training in that benchmark is seeded: a configuration's curve is a function of
its parameters. This benchmark keeps the curves its unpruned runs recorded (random and TPE, each trial's
parameters, its macro-F1 after every epoch, its final value and its seconds) and answers a new configuration
with the curve of the nearest recorded one (a tabular surrogate, as in HPO benchmarks such as HPOBench's).

Everything else is the service's own: the study file's sampler and pruner keys built by search/study (TPE with
its multivariate, group and constant-liar settings, the median pruner and its floor, ...), each worker's sampler
seeded by search/workers' ``worker_seed``, parameters drawn by search/study's ``sample_params``, and with
several workers, one Optuna study per worker on one shared store, each trial's epochs reported one by one in the
order the workers' clocks (each epoch takes the recorded trial's seconds) put them, so the pruner sees the
other worker's running trials as in a real run. The targets and tables are search_efficiency.py's.

What it cannot show: a configuration better than any recorded one (the table's best is the ceiling), or a
difference between two configurations closer to each other than to any other row. It prints how well the
nearest row predicts a held-out row (leave-one-out over the table) so that the reader can judge that. By default
two trials of a run may land on the same row, so a winner that a pruner stopped can come back whole: real
training gives a nearby configuration a curve of its own. ``--fresh`` answers each trial with the nearest row its
run has not drawn yet, which takes that second chance away.

    python benchmarks/search_efficiency.py --tasks mask18,noisy12,multilabel --workers 1 --trials 24 \
        --epochs 10 --strategies random,tpe --seeds 8 --out runs/pool     # the table: real runs, ~50 min
    python benchmarks/search_surrogate.py --pool runs/pool --trials 16,24,50 --workers 1,2 --first-seed 1000 \
        --seeds 100 --strategies random,tpe,tpe+median,tpe+sha                # ~15 min on 1 core
    python benchmarks/search_surrogate.py --pool runs/pool --variant w3=tpe+median \
        --set w3.pruner.n_warmup_steps=3 --first-seed 100      # a candidate, on seeds apart from the reported ones

Every COMPLETE full-length trial in ``--pool``'s TASK-w1/runs and TASK-w2/runs records is a row (a pruned run's
completed trials too).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import search_efficiency as eff  # noqa: E402  (benchmarks/search_efficiency.py)

WEIGHTS = (0.25, 1.0, 4.0)  # per numeric parameter, the nearest-row metric's scale: chosen by leave-one-out


class Table:
    """Recorded trials of one task: parameters -> (curve, value, seconds per epoch), answered by the nearest row."""

    def __init__(self, rows: list[dict], space: dict, epochs: int) -> None:
        self.rows, self.space, self.epochs = rows, space, epochs
        self.keys = list(space)
        self.x = np.array([self._encode(r["params"]) for r in rows])
        self.weights = np.ones(len(self.keys))
        self.values = np.array([r["value"] for r in rows])

    @classmethod
    def load(cls, folders: list[Path], space: dict, epochs: int) -> Table:
        """Every COMPLETE trial of full length in the ``folders``' run records (search_efficiency.py's
        ``--out DIR/TASK-wN/runs/*.json``), one row per distinct configuration."""
        rows, seen = [], set()
        for path in sorted(p for folder in folders for p in folder.glob("*.json")):
            run = json.loads(path.read_text())
            for t in run["trials"]:
                if t["state"] != "COMPLETE" or len(t["curve"]) != epochs or set(t["params"]) != set(space):
                    continue
                key = json.dumps(t["params"], sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    rows.append({"params": t["params"], "curve": t["curve"], "value": t["value"],
                                 "s_per_epoch": t["seconds"] / epochs})
        if not rows:
            raise SystemExit(f"{', '.join(map(str, folders))}: no complete {epochs}-epoch trials over "
                             f"{', '.join(space)}; run search_efficiency.py's unpruned strategies there first (see "
                             "this file's docstring)")
        return cls(rows, space, epochs)

    def _encode(self, params: dict) -> list[float]:
        """Each parameter in [0, 1] (log where the space is log; a numeric choice by its rank); a text choice
        its index times 10, so that rows of another optimizer are never the nearest while one of its own is."""
        out = []
        for key in self.keys:
            p, v = self.space[key], params[key]
            if "choices" in p:
                choices = p["choices"]
                numeric = all(isinstance(c, (int, float)) for c in choices)
                out.append(choices.index(v) / max(1, len(choices) - 1) if numeric else 10.0 * choices.index(v))
            elif p.get("log"):
                out.append((math.log(v) - math.log(p["low"])) / (math.log(p["high"]) - math.log(p["low"])))
            else:
                out.append((v - p["low"]) / (p["high"] - p["low"]))
        return out

    def nearest(self, params: dict, skip: set[int] = frozenset()) -> int:
        """The index of the row nearest ``params``, other than those in ``skip`` (while any other is left)."""
        d = (((self.x - np.asarray(self._encode(params))) * self.weights) ** 2).sum(1)
        if skip and len(skip) < len(d):
            d[list(skip)] = np.inf
        return int(np.argmin(d))

    def fit_weights(self) -> dict:
        """Choose each numeric parameter's scale (from WEIGHTS) that best predicts a row's final value from its
        nearest other row (leave-one-out); returns the fit's figures."""
        numeric = [i for i, k in enumerate(self.keys) if "choices" not in self.space[k]
                   or all(isinstance(c, (int, float)) for c in self.space[k]["choices"])]
        best = (math.inf, None)
        for combo in itertools.product(WEIGHTS, repeat=len(numeric)):
            w = np.ones(len(self.keys))
            w[numeric] = combo
            err = float(np.abs(self._loo(w) - self.values).mean())
            best = min(best, (err, tuple(w)), key=lambda b: b[0])
        self.weights = np.asarray(best[1])
        return self.fidelity()

    def _loo(self, w: np.ndarray) -> np.ndarray:
        z = self.x * w
        d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return self.values[d.argmin(1)]

    def fidelity(self) -> dict:
        """Leave-one-out: each row's final value against its nearest other row's."""
        from scipy.stats import spearmanr

        pred = self._loo(self.weights)
        top = self.values >= np.quantile(self.values, 0.9)
        return {"rows": len(self.rows), "weights": dict(zip(self.keys, map(float, self.weights))),
                "mae": float(np.abs(pred - self.values).mean()),
                "spearman": float(spearmanr(pred, self.values).statistic),
                "mae_top10": float(np.abs(pred[top] - self.values[top]).mean()),
                "best": float(self.values.max()), "median": float(np.median(self.values))}


def simulate(table: Table, sampler: dict, pruner: dict, seed: int, trials: int, workers: int, name: str,
             fresh: bool = False) -> dict:
    """One study on the table, as ``search run --workers K`` runs it; returns search_efficiency.py's record.
    ``fresh``: a configuration is answered by the nearest row this run has not drawn yet (while any is left), so a
    pruned row does not come back for a second chance (real training gives a nearby configuration a curve of its
    own)."""
    import optuna
    from optuna.trial import TrialState

    from search.study import build_pruner, build_sampler, sample_params
    from search.study._study_file import StudyFile
    from search.workers import worker_seed

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study_name = f"eff-{name.replace('+', '-')}-s{seed}"  # as search_efficiency.py names it (hyperband hashes it)
    spec = StudyFile.model_validate({"name": study_name, "sampler": {**sampler, "seed": seed}, "pruner": pruner,
                                     "search_space": table.space})
    storage = optuna.storages.InMemoryStorage()
    studies = [optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
                                   sampler=build_sampler(spec.sampler, worker_seed(seed, w, 0), trials),
                                   pruner=build_pruner(spec.pruner, table.epochs)) for w in range(workers)]
    space = spec.search_space
    clock = [(0.0, w) for w in range(workers)]  # (when the worker's next event is, worker)
    running: dict[int, tuple] = {}
    asked, rows, now, used = 0, [], 0.0, set()
    repeats = 0
    while clock:
        now, w = heapq.heappop(clock)
        if w in running:
            trial, row, epoch, start = running.pop(w)
            value = row["curve"][epoch - 1]
            trial.report(value, epoch)
            if epoch == table.epochs or trial.should_prune():
                done = epoch == table.epochs
                studies[w].tell(trial, row["value"] if done else None,
                                state=TrialState.COMPLETE if done else TrialState.PRUNED)
                rows.append({"number": trial.number, "state": "COMPLETE" if done else "PRUNED", "epochs": epoch,
                             "value": row["value"] if done else None, "seconds": now - start,
                             "curve": row["curve"][:epoch], "params": trial.params})
            else:
                running[w] = (trial, row, epoch + 1, start)
                heapq.heappush(clock, (now + row["s_per_epoch"], w))
                continue
        if asked < trials:
            asked += 1
            trial = studies[w].ask()
            i = table.nearest(sample_params(trial, space, {}), used if fresh else frozenset())
            repeats += i in used  # a row this run drew before: a second chance real training would not give
            used.add(i)
            row = table.rows[i]
            running[w] = (trial, row, 1, now)
            heapq.heappush(clock, (now + row["s_per_epoch"], w))
    return {"strategy": name, "seed": seed, "sampler": sampler, "pruner": pruner, "wall_s": now, "trials": rows,
            "repeats": repeats / max(1, asked)}


def _one(job: tuple) -> tuple:
    key, table, sampler, pruner, seed, trials, workers, name, fresh = job
    return key, simulate(table, sampler, pruner, seed, trials, workers, name, fresh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=Path, required=True, help="a search_efficiency.py --out folder whose TASK-w1 "
                    "(or TASK-w2) runs/ hold unpruned runs")
    ap.add_argument("--tasks", default="mask18,noisy12,multilabel")
    ap.add_argument("--epochs", type=int, default=10, help="the recorded trials' epochs")
    ap.add_argument("--trials", default="24", help="budgets, e.g. 16,24,50")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--strategies", default="random,tpe,tpe+median")
    ap.add_argument("--set", action="append", default=[], metavar="NAME.PART.KEY=VALUE")
    ap.add_argument("--variant", action="append", default=[], metavar="NEW=BASE")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="default: --pool/surrogate")
    ap.add_argument("--overwrite", action="store_true", help="replace --out's surrogate.md and surrogate.json")
    ap.add_argument("--fresh", action="store_true", help="answer each trial with the nearest row its run has not "
                    "drawn yet (while any is left): no second chance for a pruned winner")
    ap.add_argument("--held-out", type=Path, default=None, help="a search_efficiency.py --out folder whose runs "
                    "drew configurations the table does not hold: how well the nearest row predicts their final "
                    "macro-F1 and their macro-F1 after epoch 2 (what a pruner first judges)")
    args = ap.parse_args()
    args.smoke = False
    chosen = eff._strategies(args, ap)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    budgets = [int(b) for b in args.trials.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    out = args.out or args.pool / "surrogate"
    if (out / "surrogate.md").exists() and not args.overwrite:
        raise SystemExit(f"{out / 'surrogate.md'} holds an earlier run's results: give another --out, or "
                         "--overwrite to replace them")
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for task in tasks:
        folders = [f / "runs" for f in sorted(args.pool.glob(f"{task}-w*")) if (f / "runs").is_dir()]
        if not folders:
            raise SystemExit(f"--pool {args.pool}: no {task}-w1/runs (or -w2) folder; see the docstring")
        table = Table.load(folders, eff.SPACE, args.epochs)
        fit = table.fit_weights()
        tables[task] = table
        print(f"{task}: {fit['rows']} recorded configurations; fitted leave-one-out, the nearest other row predicts a "
              f"row's final macro-F1 "
              f"with MAE {fit['mae']:.3f} (top 10%: {fit['mae_top10']:.3f}), Spearman {fit['spearman']:.2f}; "
              f"table best {fit['best']:.3f}, median {fit['median']:.3f}; weights {fit['weights']}", flush=True)
        if args.held_out:
            print(f"{task}: {held_out(table, sorted(args.held_out.glob(f'{task}-w*/runs')))}", flush=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [((task, b, w, name, s), tables[task], sampler, pruner, s, b, w, name, args.fresh)
            for task in tasks for b in budgets for w in workers for name, (sampler, pruner) in chosen.items()
            for s in seeds]
    runs: dict = {}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for (task, b, w, name, s), run in pool.map(_one, jobs, chunksize=4):
            runs.setdefault((task, b, w), {}).setdefault(name, {})[s] = run
    results, lines = {}, []
    for (task, b, w), by_name in runs.items():
        summary = eff.summarize(by_name, chosen, b, args.epochs)
        checks = eff.targets(summary, by_name, chosen)
        results[(task, b, w)] = {"summary": summary, "targets": checks}
        lines.append(f"### {task}, {b} trials, {w} worker(s)\n\n" + eff.suite_markdown(
            {(task, w): results[(task, b, w)]}, b, args.epochs))
    (out / "surrogate.json").write_text(json.dumps(
        {"strategies": chosen, "seeds": list(seeds), "fresh": args.fresh,
         "fidelity": {t: tb.fidelity() for t, tb in tables.items()},
         "cells": {"|".join(map(str, k)): {"targets": v["targets"], "final": {
             n: r["final"] for n, r in v["summary"]["rows"].items()}} for k, v in results.items()}}, indent=1,
        default=str))
    again = {n: float(np.mean([r["repeats"] for by in runs.values() for r in by.get(n, {}).values()])) for n in chosen}
    text = "\n\n".join(lines) + "\n\n" + eff.holds(results, chosen, seeds) + "\n\n" + (
        "Rows: --fresh, each trial answered by the nearest row its run had not drawn yet. " if args.fresh else
        "Rows: the nearest, drawn before or not. ") + "Trials answered by a row their run " \
        "had drawn before (a pruned one gets a second chance that real training would not give): " + ", ".join(
            f"{n} {100 * v:.0f}%" for n, v in again.items())
    print(text)
    (out / "surrogate.md").write_text(text + "\n")
    print(f"wrote {out / 'surrogate.md'}, surrogate.json")


def held_out(table: Table, folders: list[Path]) -> str:
    """How well the nearest row predicts configurations in ``folders``' records that the table does not hold."""
    from scipy.stats import spearmanr

    have = {json.dumps(r["params"], sort_keys=True) for r in table.rows}
    final, early = [], []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            for t in json.loads(path.read_text())["trials"]:
                if json.dumps(t["params"], sort_keys=True) in have or set(t["params"]) != set(table.space):
                    continue
                row = table.rows[table.nearest(t["params"])]
                if t["state"] == "COMPLETE" and len(t["curve"]) == table.epochs:
                    final.append((t["value"], row["value"]))
                if len(t["curve"]) >= 2:
                    early.append((t["curve"][1], row["curve"][1]))
    if len(final) < 3 or len(early) < 3:
        return "held out: too few configurations the table does not hold"
    f, e = np.array(final), np.array(early)
    return (f"held out: {len(f)} completed configurations the table does not hold, final macro-F1 MAE "
            f"{np.abs(f[:, 0] - f[:, 1]).mean():.3f}, Spearman {spearmanr(f[:, 0], f[:, 1]).statistic:.2f}; "
            f"after epoch 2 ({len(e)} trials) MAE {np.abs(e[:, 0] - e[:, 1]).mean():.3f}, Spearman "
            f"{spearmanr(e[:, 0], e[:, 1]).statistic:.2f}")


if __name__ == "__main__":
    main()
