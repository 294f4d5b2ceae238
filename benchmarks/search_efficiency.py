"""Search efficiency: how fast each sampler and pruner finds a good configuration, counted in epochs trained.

Every strategy runs the real service on generated tasks (benchmarks/search_tasks.py: a noisy 12-class set, an
18-class imbalanced person-grouped mask-like set, a multi-label set): a study file per (strategy, seed), one
in-process `search.workers.work()` worker on its own SQLite store (or, with --workers 2, `search run --workers 2`:
two worker processes sharing it), real trials (test_resnet on CPU). In each task most of the optimizer /
learning-rate space scores near chance and a small region scores well, so samplers and pruners have something to
find. Training is seeded, so a configuration scores the same whenever it is drawn; runs differ only by the
sampler's seed (and, with several workers, by which worker finishes first).

A trial's cost is the epochs it trained: the steps it reported (one per epoch; a pruned trial has fewer). Trials
are taken in completion order. The best macro-F1 is that of the best COMPLETE trial, what `search best` exports;
a pruned trial's partial score never counts. Per strategy it prints: best macro-F1 at a few cumulative-epoch
budgets (median over seeds), the epochs needed to come within 0.5 pt of the same seed's random-search final best,
the share of epochs pruning saved against the same sampler unpruned, and the final best; then the two targets
of issue #13 with the measured values. Writes ``results.md``, ``results.json`` and ``search_efficiency.png``
(best macro-F1 against epochs, mean and median over seeds) to ``--out``. A trial trains 20 epochs by default,
as the shipped apple-effb4 study does (users train 12 to 50): the share of a trial that pruning after epoch 2
saves, and how well epoch 2 ranks the trials, both depend on it. ``benchmarks/prune_replay.py`` replays pruner
settings on the unpruned runs this writes; ``benchmarks/search_surrogate.py`` runs whole strategies (sampler and
pruner, 1 or 2 workers, any budget) on their recorded curves, 100 seeds a cell in minutes.

    python benchmarks/search_efficiency.py              # 6 strategies x 5 seeds x 20 epochs: ~21 min on 2 cores
    python benchmarks/search_efficiency.py --epochs 8 --out runs/eff8   # short trials: RESULTS.md's other task
    python benchmarks/search_efficiency.py --strategies random,tpe+median --seeds 3 --out runs/eff-3seeds
    python benchmarks/search_efficiency.py --set tpe+median.pruner.n_warmup_steps=3 --overwrite  # another setting
    python benchmarks/search_efficiency.py --reuse --strategies random,tpe --variant w3=tpe+median \
        --set w3.pruner.n_warmup_steps=3              # a variant beside baselines already run (--reuse)
    python benchmarks/search_efficiency.py --tasks noisy12,mask18,multilabel --workers 1,2 --trials 24 \
        --epochs 10 --strategies random,tpe,tpe+median   # the suite: suite.md, a folder per task and worker count
    python benchmarks/search_efficiency.py --smoke              # seconds: checks that it runs

A suite's ``suite.md`` also says how firm each cell's verdict is: the share of 1000 bootstrap resamples of the
seeds in which both targets hold. An ``--out`` that holds an earlier run's results is refused unless ``--reuse``
(keep its runs, add to them) or ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fnmatch
import hashlib
import json
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from search.study import startup_trials  # noqa: E402
from search_tasks import TASKS, NoisyTask  # noqa: E402  (benchmarks/search_tasks.py)

TRIALS = 24  # finished trials per run, by default
TPE = {"name": "tpe", "n_startup_trials": "auto"}  # the study file gets the count: 8 at the default 24 trials
# name: (sampler, pruner), as a study file spells them; the run's seed is added to the sampler. A pruned
# strategy's savings are measured against the strategy with the same sampler and pruner none. tpe+median is the
# service's default strategy, spelt out (tests/benchmarks/test_search_efficiency_smoke.py holds it to the defaults).
# On this task epoch 1 says almost nothing (most trials still predict one class), so SH and hyperband first cut
# after epoch 2.
STRATEGIES: dict[str, tuple[dict, dict]] = {
    "random": ({"name": "random"}, {"name": "none"}),
    "tpe": (TPE, {"name": "none"}),
    "tpe+median": (TPE, {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}),
    "tpe+sha": (TPE, {"name": "successive_halving", "min_resource": 2, "reduction_factor": 3}),
    "tpe+hyperband": (TPE, {"name": "hyperband", "min_resource": 2, "reduction_factor": 3}),
    "gp": ({"name": "gp", "n_startup_trials": "auto"}, {"name": "none"}),
}

# Wide on purpose: most of it trains poorly (too small or too large a learning rate for the optimizer, heavy
# dropout or smoothing), a small region trains well.
SPACE = {
    "optimizer.name": {"choices": ["adamw", "adam", "sgd"]},
    "optimizer.lr": {"low": 1.0e-5, "high": 1.0, "log": True},
    "optimizer.weight_decay": {"low": 1.0e-6, "high": 0.1, "log": True},
    "model.dropout": {"low": 0.0, "high": 0.7},
    "loss.label_smoothing": {"low": 0.0, "high": 0.4},
    "train.batch_size": {"choices": [32, 64, 128]},  # not 16: twice the seconds per epoch for the same count
}


Task = NoisyTask  # the first task of the suite (benchmarks/search_tasks.py)


def study_dict(name: str, sampler: dict, pruner: dict, seed: int, trials: int, epochs: int, data: dict,
               cache: Path, extra_training: dict | None = None) -> dict:
    """``data``: the task's data section (benchmarks/search_tasks.py); ``extra_training``: its other sections."""
    training = {
        "seed": 0,  # the same init and batch order for every trial: a configuration's score is a function of it
        "data": {**data, "cache_dir": str(cache / "decoded")},
        "model": {"name": "test_resnet", "dropout": 0.0},
        "loss": {"name": "ce", "label_smoothing": 0.0},
        "optimizer": {"name": "adamw", "lr": 1.0e-3, "weight_decay": 1.0e-4},
        "scheduler": {"name": "cosine"},
        # no patience: the only epochs a trial skips are those its pruner saves
        "train": {"epochs": epochs, "batch_size": 32, "device": "cpu", "num_threads": 1, "precision": "fp32"},
    }
    for key, section in (extra_training or {}).items():
        training[key] = {**training.get(key, {}), **section}
    return {
        "name": name,
        "n_trials": trials,
        "seed_trials_with_defaults": False,  # a defaults trial would be a free, identical start for everyone
        "training": training,
        "search_space": SPACE,
        # auto start-up resolved as the worker would, so that the file (and the record's key) says the count
        "sampler": {**sampler, "seed": seed, **({"n_startup_trials": startup_trials("auto", trials)}
                                               if sampler.get("n_startup_trials") == "auto" else {})},
        "pruner": pruner,
        "wandb": {"enabled": False},
        "artifacts": {"keep_top_k": 0},
    }


def run_strategy(name: str, study: dict, work_dir: Path, workers: int = 1) -> dict:
    """One fresh study through a real worker (``workers`` > 1: `search run --workers K`, each a process of its own
    on one CPU thread), on its own SQLite store; returns its finished trials in completion order (a failed
    worker's traceback ends the benchmark: every run must be the service's own)."""
    import optuna
    from optuna import load_study
    from optuna.trial import TrialState

    from search.store import open_storage
    from search.study import load_study as load_study_file
    from search.workers import work

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dir = work_dir / study["name"]
    run_dir.mkdir(parents=True)
    path = run_dir / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    url = f"sqlite:///{run_dir / 'store.db'}"
    t0 = time.perf_counter()
    with open(run_dir / "worker.log", "w") as log:
        if workers == 1:
            with contextlib.redirect_stdout(log):
                work(load_study_file(str(path)), url, n_trials=study["n_trials"], output_root=run_dir / "runs",
                     use_wandb=False, worker_index=0)
        else:
            import os
            import subprocess

            r = subprocess.run([sys.executable, "-m", "search", "run", "--study", str(path), "--storage", url,
                                "--n-trials", str(study["n_trials"]), "--workers", str(workers), "--no-wandb",
                                "--output", str(run_dir / "runs"), "--plain"], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "SEARCH_NUM_THREADS": "1"})
    if workers > 1 and r.returncode != 0:  # the run's own words, before its temporary folder goes
        tail = (run_dir / "worker.log").read_text().splitlines()[-15:]
        raise RuntimeError(f"search run --workers {workers} exited {r.returncode}:\n" + "\n".join(tail))
    wall = time.perf_counter() - t0
    storage = open_storage(url)
    done = [t for t in load_study(study_name=study["name"], storage=storage).get_trials(deepcopy=False)
            if t.datetime_complete is not None]
    storage.engine.dispose()
    rows = []
    for t in sorted(done, key=lambda t: (t.datetime_complete, t.number)):
        # a failed trial trained the epoch it failed in (a non-finite loss is found after the epoch)
        spent = len(t.intermediate_values) + (t.state == TrialState.FAIL)
        rows.append({"number": t.number, "state": t.state.name, "epochs": spent,
                     "value": t.value if t.state == TrialState.COMPLETE else None,
                     "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
                     "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
                     "params": t.params})
    return {"strategy": name, "seed": study["sampler"]["seed"], "sampler": study["sampler"],
            "pruner": study["pruner"], "wall_s": wall, "trials": rows}


def curve(run: dict) -> tuple[list[int], list[float]]:
    """Cumulative epochs after each trial, and the best COMPLETE value so far (0 before the first)."""
    xs, ys, spent, best = [], [], 0, 0.0
    for t in run["trials"]:
        spent += t["epochs"]
        if t["value"] is not None:
            best = max(best, t["value"])
        xs.append(spent)
        ys.append(best)
    return xs, ys


def best_at(run: dict, budget: float) -> float:
    """The best macro-F1 once ``budget`` epochs were spent (a run that stopped earlier keeps its final best)."""
    best = 0.0
    for x, y in zip(*curve(run)):
        if x > budget:
            break
        best = y
    return best


def epochs_to(run: dict, target: float) -> int | None:
    for x, y in zip(*curve(run)):
        if y >= target:
            return x
    return None


def total_epochs(run: dict) -> int:
    return sum(t["epochs"] for t in run["trials"])


def final_best(run: dict) -> float:
    return best_at(run, math.inf)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def baseline_of(name: str, strategies: dict) -> str | None:
    """The strategy with the same sampler and no pruner, when ``name`` prunes."""
    sampler, pruner = strategies[name]
    if pruner.get("name") == "none":
        return None
    return next((n for n, (s, p) in strategies.items() if s == sampler and p.get("name") == "none"), None)


TOL = 0.005  # "within 0.5 pt" of macro-F1
REACH_SHARE = 0.40  # target (a): random's final best within this share of random's epochs
EPOCH_SHARE = 0.60  # target (b): at most this share of the unpruned sampler's epochs
CHECKPOINTS = (0.2, 0.4, 0.6, 1.0)  # shares of an unpruned run's epochs; 0.4 is target (a)'s budget


def summarize(runs: dict[str, dict[int, dict]], strategies: dict, trials: int, epochs: int) -> dict:
    """Per strategy: best at budget checkpoints, epochs to random's final best, epochs saved, final best."""
    full = trials * epochs
    checkpoints = [round(full * f) for f in CHECKPOINTS]
    rows = {}
    for name, by_seed in runs.items():
        seeds = sorted(by_seed)
        reach = {}
        for s in seeds:
            ref = runs.get("random", {}).get(s)
            reach[s] = epochs_to(by_seed[s], final_best(ref) - TOL) if ref else None
        base = baseline_of(name, strategies)
        saved = {s: 1 - total_epochs(by_seed[s]) / total_epochs(runs[base][s])
                 for s in seeds if base in runs and s in runs[base]}
        rows[name] = {
            "seeds": seeds,
            "at": {c: median([best_at(by_seed[s], c) for s in seeds]) for c in checkpoints},
            "reach": reach,
            "reach_median": _median_or_none(list(reach.values())),
            "epochs": median([total_epochs(by_seed[s]) for s in seeds]),
            "pruned": median([sum(t["state"] == "PRUNED" for t in by_seed[s]["trials"]) for s in seeds]),
            "failed": sum(t["state"] == "FAIL" for s in seeds for t in by_seed[s]["trials"]),
            "baseline": base,
            "saved": saved,
            "saved_median": median(list(saved.values())) if saved else None,
            "final": median([final_best(by_seed[s]) for s in seeds]),
            "final_each": {s: final_best(by_seed[s]) for s in seeds},
            "s_per_epoch": sum(t["seconds"] for s in seeds for t in by_seed[s]["trials"])
            / max(1, sum(total_epochs(by_seed[s]) for s in seeds)),
            "wall_s": sum(by_seed[s]["wall_s"] for s in seeds),
        }
    return {"checkpoints": checkpoints, "rows": rows}


def _median_or_none(values: list[int | None]) -> float | None:
    """The median where a run that never got there counts as worse than any that did; None if that is it."""
    if not values:
        return None
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else m


def targets(summary: dict, runs: dict, strategies: dict) -> list[dict]:
    """Issue #13's two targets for every pruned strategy (the default, tpe+median, first), per seed, then over
    seeds (median): (a) against random, (b) against the same sampler unpruned."""
    out = []
    rows = summary["rows"]
    pruned = sorted((n for n in runs if strategies[n][1].get("name") != "none"), key=lambda n: n != "tpe+median")
    for name in pruned:
        if "random" in runs:
            ratios = {s: None if e is None else e / total_epochs(runs["random"][s])
                      for s, e in rows[name]["reach"].items() if s in runs["random"]}
            m = _median_or_none(list(ratios.values()))  # a seed that never got there counts as the worst
            out.append({"strategy": name, "target": f"(a) {name} reaches random's final best (-0.5 pt) in <= 40% "
                        "of random's epochs", "per_seed": ratios, "measured": m,
                        "pass": m is not None and m <= REACH_SHARE})
        base = baseline_of(name, strategies) or "tpe"  # another sampler than any unpruned one: against tpe's
        if base in runs:
            seeds = [s for s in runs[name] if s in runs[base]]
            share = {s: total_epochs(runs[name][s]) / total_epochs(runs[base][s]) for s in seeds}
            gap = {s: final_best(runs[name][s]) - final_best(runs[base][s]) for s in seeds}
            ms, mg = median(list(share.values())), median(list(gap.values()))
            out.append({"strategy": name, "target": f"(b) {name} spends <= 60% of {base}'s epochs at a final best "
                        f"within 0.5 pt of it", "per_seed": {s: [share[s], gap[s]] for s in seeds},
                        "measured": [ms, mg], "pass": ms <= EPOCH_SHARE and mg >= -TOL})
    return out


def _f(v: float | None, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.0f}%" if pct else f"{v:.4f}"


def markdown(summary: dict, checks: list[dict], trials: int, epochs: int) -> str:
    cps = summary["checkpoints"]
    head = ["strategy", "seeds"] + [f"best @ {c} ep" for c in cps] + [
        "epochs to random's best -0.5 pt (per seed; median)", "epochs used", "pruned trials", "failed",
        "epochs saved vs unpruned", "final best", "trial s / epoch", "wall s, all seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in summary["rows"].items():
        each = ", ".join("-" if v is None else str(v) for v in r["reach"].values())
        med = "not reached" if r["reach_median"] is None else f"{r['reach_median']:g}"
        saved = "-" if r["saved_median"] is None else f"{_f(r['saved_median'], True)} (vs {r['baseline']})"
        cells = [name, str(len(r["seeds"]))] + [_f(r["at"][c]) for c in cps] + [
            f"{each}; {med}", f"{r['epochs']:g}", f"{r['pruned']:g}", str(r["failed"]), saved, _f(r["final"]),
            f"{r['s_per_epoch']:.2f}", f"{r['wall_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{trials} trials x {epochs} epochs per run (full budget {trials * epochs} epochs); "
                 "figures are medians over seeds; best = best COMPLETE trial's macro-F1; epochs to random's best: "
                 "'-' = not reached within the run.")
    lines.append("")
    for c in checks:
        if isinstance(c["measured"], list):
            share, gap = c["measured"]
            per = "; ".join(f"seed {s}: {100 * a:.0f}% of epochs, final {b:+.4f}"
                            for s, (a, b) in c["per_seed"].items())
            measured = f"{100 * share:.0f}% of the unpruned epochs, final best {gap:+.4f} vs unpruned"
        else:
            per = "; ".join(f"seed {s}: {'not reached' if v is None else f'{100 * v:.0f}%'}"
                            for s, v in c["per_seed"].items())
            measured = "not reached" if c["measured"] is None else f"{100 * c['measured']:.0f}% of random's epochs"
        lines.append(f"- {'PASS' if c['pass'] else 'FAIL'} {c['target']}: measured (median over seeds) {measured} "
                     f"[{per}]")
    return "\n".join(lines)


def plot(runs: dict[str, dict[int, dict]], trials: int, epochs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.arange(0, trials * epochs + 1)
    fig, ax = plt.subplots(figsize=(8, 5))
    early = []
    for i, (name, by_seed) in enumerate(runs.items()):
        # a pruned run ends before the full budget: its line stops where its longest seed stopped
        x = grid[grid <= max(total_epochs(run) for run in by_seed.values())]
        ys = np.array([[best_at(run, g) for g in x] for run in by_seed.values()])
        colour = f"C{i}"
        ax.plot(x, ys.mean(0), color=colour, label=f"{name} (mean of {len(ys)})")
        ax.plot(x, np.median(ys, 0), color=colour, linestyle="--", linewidth=1)
        ax.plot(x[-1], ys.mean(0)[-1], "o", color=colour, markersize=4)
        early.append(ys.mean(0)[min(len(x) - 1, round(CHECKPOINTS[0] * trials * epochs))])
    # the first trials are every strategy's same random draws; the differences are in the top part
    ax.set_ylim(bottom=max(0.0, min(early) - 0.05))
    if "random" in runs:
        ref = median([final_best(run) for run in runs["random"].values()])
        ax.axhline(ref - TOL, color="grey", linestyle=":", linewidth=1, label="random's final best - 0.5 pt (median)")
    ax.set_xlabel("epochs trained (cumulative, all trials)")
    ax.set_ylabel("best macro-F1 so far (COMPLETE trials)")
    ax.set_title("search efficiency: mean (solid) and median (dashed) over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_sets(items: list[str], strategies: dict) -> dict:
    """``NAME.sampler.KEY=VALUE`` / ``NAME.pruner.KEY=VALUE`` (VALUE read as YAML; NAME may be a glob such as
    ``tpe*``) on a copy of ``strategies``."""
    # each entry copied on its own: strategies share the TPE dict, and a change to one must not reach the others
    out = {n: (copy.deepcopy(s), copy.deepcopy(p)) for n, (s, p) in strategies.items()}
    for item in items:
        lhs, _, value = item.partition("=")
        name, part, key = lhs.rsplit(".", 2) if lhs.count(".") >= 2 else (lhs, "", "")
        names = fnmatch.filter(out, name)
        if not names or part not in ("sampler", "pruner") or not key or not value:
            raise SystemExit(f"--set {item!r}: use NAME.sampler.KEY=VALUE or NAME.pruner.KEY=VALUE, NAME one of "
                             f"{', '.join(out)} or a glob of them")
        for n in names:
            out[n][0 if part == "sampler" else 1][key] = yaml.safe_load(value)
    return out


def run_key(name: str, study: dict) -> str:
    """A name for a run's record: the strategy, the seed and a hash of everything its study file says."""
    blob = json.dumps({k: v for k, v in study.items() if k != "name"}, sort_keys=True)
    return f"{name.replace('+', '-')}-s{study['sampler']['seed']}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


# --smoke: the whole path (every table column, both targets, pruning that acts) in seconds, not a measurement
SMOKE_TASK = {"classes": 6, "per_class": 12}
SMOKE_STRATEGIES = ["random", "tpe", "tpe+median"]
SMOKE_SETS = ["tpe*.sampler.n_startup_trials=2", "tpe+median.pruner.n_startup_trials=1",
              "tpe+median.pruner.n_warmup_steps=0"]


def _said(name: str, seed: int, run: dict, note: str) -> None:
    print(f"  {name} seed {seed}: {total_epochs(run)} epochs, final best {final_best(run):.4f} ({note})", flush=True)


def _arguments() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="noisy12", help=f"the suite's tasks to run, from: {', '.join(TASKS)} "
                    "(benchmarks/search_tasks.py); several: one results folder each under --out and suite.md")
    ap.add_argument("--workers", default="1", help="workers per run, e.g. 1 or 2 or 1,2: with 2, two processes "
                    "share the run's store (`search run --workers 2`), one CPU thread each")
    ap.add_argument("--seeds", type=int, default=5, help="sampler seeds: N of them, from --first-seed on")
    ap.add_argument("--first-seed", type=int, default=0, help="another set of seeds than the one settings were "
                    "tuned on, to check them on runs they were not chosen by")
    ap.add_argument("--trials", type=int, default=TRIALS, help="finished trials per run (complete + pruned)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of an unpruned trial")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help=f"from: {', '.join(STRATEGIES)}")
    ap.add_argument("--set", action="append", default=[], metavar="NAME.PART.KEY=VALUE",
                    help="change a strategy's sampler or pruner key, e.g. tpe+median.pruner.n_warmup_steps=3 "
                    "(NAME may be a glob: 'tpe*.sampler.n_startup_trials=5')")
    ap.add_argument("--variant", action="append", default=[], metavar="NEW=BASE",
                    help="add strategy NEW as a copy of BASE (then --set NEW.pruner.KEY=VALUE), run beside it")
    ap.add_argument("--jobs", type=int, default=2, help="CPU cores to fill: runs at once times their workers, "
                    "each process on one CPU thread (on 2 cores, 2 halves the wall time of 1-worker runs)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "search-efficiency")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "imgsearch-search-efficiency",
                    help="the generated images and their decode cache")
    ap.add_argument("--reuse", action="store_true", help="reuse the records in --out/runs of runs whose study "
                    "file would be identical (to tune one strategy against baselines already run)")
    ap.add_argument("--overwrite", action="store_true", help="run again into an --out that holds an earlier run's "
                    "results: remove them first (its tables, figures and run records; --reuse keeps the records)")
    ap.add_argument("--random-from-w1", action="store_true", help="with --workers 2 (and a suite's folders under "
                    "--out): random search's runs are the same seeds' 1-worker runs, where they exist (its draws "
                    "ignore the trials before them, so its outcome's distribution does not depend on the workers)")
    ap.add_argument("--smoke", action="store_true", help=f"tiny: {', '.join(SMOKE_STRATEGIES)}, 1 seed, 4 trials "
                    "of 2 epochs, 6 classes, pruning from the first epoch")
    return ap


def _strategies(args, ap) -> dict:
    sets = SMOKE_SETS + args.set if args.smoke else args.set
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    if args.smoke and args.strategies == ap.get_default("strategies"):
        names = list(SMOKE_STRATEGIES)
    strategies = dict(STRATEGIES)
    for item in args.variant:
        new, _, base = item.partition("=")
        if base not in STRATEGIES or not new or new in STRATEGIES:
            raise SystemExit(f"--variant {item!r}: use NEW=BASE, BASE one of {', '.join(STRATEGIES)}")
        strategies[new] = STRATEGIES[base]
        names.append(new)
    strategies = parse_sets(sets, strategies)
    unknown = [n for n in names if n not in strategies]
    if unknown:
        raise SystemExit(f"--strategies: unknown {', '.join(unknown)}; known: {', '.join(strategies)}")
    return {n: strategies[n] for n in names}


def run_task(task, workers: int, chosen: dict, args, out: Path, task_name: str) -> dict:
    """Every chosen strategy x seed on ``task`` with ``workers`` workers per run; writes results.md, results.json
    and search_efficiency.png to ``out``; returns the summary and the target checks."""
    data, extra = task.build(args.cache), task.training()
    kept = out / "runs"
    kept.mkdir(parents=True, exist_ok=True)
    print(f"task {task.key}, {workers} worker(s) per run: {len(chosen)} strategies x {args.seeds} seeds x "
          f"{args.trials} trials x {args.epochs} epochs", flush=True)
    runs: dict[str, dict[int, dict]] = {n: {} for n in chosen}
    pending = {}
    # each run in a process of its own (one CPU thread each: train.num_threads 1), --jobs cores at a time
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as work_dir, \
            ProcessPoolExecutor(max_workers=max(1, args.jobs // workers),
                                mp_context=multiprocessing.get_context("spawn")) as pool:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name, (sampler, pruner) in chosen.items():
                # the name is part of the result: HyperbandPruner puts a trial in a bracket by a hash of the study
                # name and trial number, so the same strategy under another name prunes other trials
                study = study_dict(f"eff-{name.replace('+', '-')}-s{seed}", sampler, pruner, seed, args.trials,
                                   args.epochs, data, args.cache, extra)
                record = kept / f"{run_key(name, study)}{'' if workers == 1 else f'-w{workers}'}.json"
                # random search's draws ignore earlier trials, so its outcome's distribution does not depend on the
                # workers: with --random-from-w1, a several-worker block takes the same seeds' 1-worker runs
                one = out.parent / f"{task_name}-w1" / "runs" / f"{run_key(name, study)}.json"
                if workers > 1 and name == "random" and args.random_from_w1 and one.is_file():
                    runs[name][seed] = json.loads(one.read_text())
                    _said(name, seed, runs[name][seed], f"1-worker run, from {one.parent.parent.name}")
                elif args.reuse and record.is_file():
                    runs[name][seed] = json.loads(record.read_text())
                    _said(name, seed, runs[name][seed], "reused")
                else:
                    pending[pool.submit(run_strategy, name, study, Path(work_dir), workers)] = (name, seed, record)
        for done in as_completed(pending):
            name, seed, record = pending[done]
            try:
                runs[name][seed] = run = done.result()
            except BaseException:  # the finished runs' records are kept; the queued ones are not started
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            record.write_text(json.dumps(run, indent=1, default=str))
            _said(name, seed, run, f"{run['wall_s']:.0f}s")
    runs = {n: dict(sorted(by_seed.items())) for n, by_seed in runs.items()}  # seed order, not completion order
    summary = summarize(runs, chosen, args.trials, args.epochs)
    checks = targets(summary, runs, chosen)
    settings = "\n".join(f"- {n}: sampler {json.dumps(s)}, pruner {json.dumps(p)}" for n, (s, p) in chosen.items())
    text = markdown(summary, checks, args.trials, args.epochs) + "\n\n" + settings
    print(text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(
        {"task": task.key, "workers": workers, "seeds": args.seeds, "trials": args.trials, "epochs": args.epochs,
         "strategies": chosen, "summary": summary, "targets": checks, "runs": runs}, indent=1))
    plot(runs, args.trials, args.epochs, out / "search_efficiency.png")
    print(f"wrote {out / 'results.md'}, results.json, search_efficiency.png", flush=True)
    return {"summary": summary, "targets": checks}


def suite_markdown(results: dict[tuple[str, int], dict], trials: int, epochs: int) -> str:
    """One row per task, worker count and pruned strategy (the default, tpe+median, first): the two targets, and
    the final bests of random, tpe and that strategy."""
    lines = [f"{trials} trials x {epochs} epochs; medians over seeds", "",
             "| task | workers | strategy | (a) reaches random's best in | (b) epochs vs unpruned, final best vs "
             "unpruned | final best: random / tpe / strategy |", "|---|---|---|---|---|---|"]
    for (task, workers), r in results.items():
        names = list(dict.fromkeys(c["strategy"] for c in r["targets"]))
        for name in names:
            checks = {c["target"][:3]: c for c in r["targets"] if c["strategy"] == name}
            a, b = checks.get("(a)"), checks.get("(b)")
            a_text = "-" if a is None else ("not reached" if a["measured"] is None else
                                            f"{100 * a['measured']:.0f}% of random's epochs") + \
                ("" if a is None else f" {'PASS' if a['pass'] else 'FAIL'}")
            b_text = "-" if b is None else (f"{100 * b['measured'][0]:.0f}%, {b['measured'][1]:+.4f} "
                                            f"{'PASS' if b['pass'] else 'FAIL'}")
            finals = " / ".join(_f(r["summary"]["rows"].get(n, {}).get("final")) for n in ("random", "tpe", name))
            lines.append(f"| {task} | {workers} | {name} | {a_text} | {b_text} | {finals} |")
    return "\n".join(lines)


def holds(results: dict, chosen: dict, seeds, resamples: int = 1000) -> str:
    """Per pruned strategy and cell (task x budget x workers): both targets, how often both hold when the seeds
    are resampled (bootstrap: how firm a pass or a fail is), the mean of the final-best gaps beside their median,
    and the share of seeds whose gap is exactly 0 (both runs' best is the same configuration: a start-up trial
    they share, or in search_surrogate.py the same recorded row, which its table makes likelier than real
    training does); then a tally per strategy. ``results``: {(task, trials, workers): {"targets": ...}}."""
    rng = np.random.default_rng(0)
    lines = [f"Seeds {seeds.start}-{seeds.stop - 1} (medians over {len(seeds)} seeds per cell; resampled "
             f"{resamples} times)", "",
             "| strategy | task | trials | workers | (a) share of random's epochs | (b) share of unpruned epochs, "
             "final best vs unpruned (mean; ties) | both hold | both hold in resamples |", "|---" * 8 + "|"]
    tally = []
    for name in chosen:
        n = both = 0
        for (task, budget, w), r in results.items():
            c = {x["target"][:3]: x for x in r["targets"] if x["strategy"] == name}
            if "(a)" not in c or "(b)" not in c:  # targets need random and the unpruned sampler among the strategies
                continue
            reach, paired = c["(a)"]["per_seed"], c["(b)"]["per_seed"]
            seeds_both = [s for s in reach if s in paired]  # one seed's (a) and (b) resampled together
            a = np.array([math.inf if reach[s] is None else reach[s] for s in seeds_both])
            share = np.array([paired[s][0] for s in seeds_both])
            gap = np.array([paired[s][1] for s in seeds_both])
            pick = rng.integers(0, len(a), (resamples, len(a)))
            firm = float(np.mean((np.median(a[pick], 1) <= REACH_SHARE)
                                 & (np.median(share[pick], 1) <= EPOCH_SHARE)
                                 & (np.median(gap[pick], 1) >= -TOL)))
            ok = c["(a)"]["pass"] and c["(b)"]["pass"]
            n, both = n + 1, both + ok
            m = c["(a)"]["measured"]
            lines.append(f"| {name} | {task} | {budget} | {w} | {'not reached' if m is None else f'{100 * m:.0f}%'} | "
                         f"{100 * np.median(share):.0f}%, {100 * np.median(gap):+.1f} pt ({100 * gap.mean():+.1f}; "
                         f"{100 * np.mean(gap == 0):.0f}%) | {'yes' if ok else 'no'} | {100 * firm:.0f}% |")
        if n:
            tally.append(f"- {name}: both targets hold in {both} of {n} cells")
    return "\n".join(lines + [""] + tally)


OUTPUTS = ("results.md", "results.json", "search_efficiency.png", "runs/*.json")  # what run_task writes


def main() -> None:
    ap = _arguments()
    args = ap.parse_args()
    chosen = _strategies(args, ap)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SystemExit(f"--tasks: unknown {', '.join(unknown)}; known: {', '.join(TASKS)}")
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.smoke:
        args.seeds, args.trials, args.epochs = 1, 4, 2
    single = len(tasks) == 1 and len(workers) == 1
    if args.random_from_w1 and single:
        raise SystemExit("--random-from-w1 takes the 1-worker runs from --out/TASK-w1: give --workers 1,2 (or "
                         "several --tasks), so that the runs are kept in that layout")
    if args.reuse and args.overwrite:
        raise SystemExit("--reuse keeps --out's runs and --overwrite removes them: give one of the two")
    # what this run writes: --out's files, or a suite's suite.md and its TASK-wN folders
    places = [(args.out, OUTPUTS)] if single else [(args.out, ("suite.md",))] + [
        (args.out / f"{name}-w{w}", OUTPUTS) for name in tasks for w in workers]
    earlier = [found for folder, patterns in places for pattern in patterns for found in folder.glob(pattern)
               if found.is_file()]
    if earlier and not (args.reuse or args.overwrite):
        raise SystemExit(f"--out {args.out} holds an earlier run's results ({earlier[0]}): give another --out, "
                         "--reuse to keep its runs and add to them, or --overwrite to replace them")
    if args.overwrite:
        for found in earlier:
            found.unlink()
    results = {}
    for name in tasks:
        task = Task(**SMOKE_TASK) if args.smoke and name == "noisy12" else TASKS[name]
        for w in workers:
            out = args.out if single else args.out / f"{name}-w{w}"
            results[(name, w)] = run_task(task, w, chosen, args, out, name)
    if not single:
        text = suite_markdown(results, args.trials, args.epochs) + "\n\n" + holds(
            {(t, args.trials, w): r for (t, w), r in results.items()}, chosen,
            range(args.first_seed, args.first_seed + args.seeds))
        print(text)
        (args.out / "suite.md").write_text(text + "\n")
        print(f"wrote {args.out / 'suite.md'}", flush=True)


if __name__ == "__main__":
    main()
