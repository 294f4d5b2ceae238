"""Many workers on one stock Postgres, through the real claim and lease code (search/store/_lease.py).

Each of N worker processes claims trials under the study lock, samples two parameters with the study's TPE
sampler, "trains" by sleeping a fixed time while reporting a few epochs (heartbeat, reports, pruner), and ends
the trial through its lease. No torch is imported, so 64 workers fit on a small machine. The study starts
with many finished trials (``--prefill``), as a long search has.

Prints: claim latency (median, p95; lock wait included), the store + sampler overhead as a share of the
trial's training time (claim + store calls inside the lease + tell, against the sleep), peak Postgres
connections to the study's database (pg_stat_activity, sampled every 50 ms), and trials requested, finished,
duplicated and lost. Each worker first reads the whole study once (every finished trial; the study caches them,
later reads fetch only unfinished and new ones), and all start together once every worker has: 64 cold reads
of 10k trials on a 2-core machine would otherwise be what is measured. Claims are shown in all, then split: a
worker's first claim queues for the lock behind every other worker's; after that the claims are spread out by
that very queue, as trials of different lengths spread them in a real search.

    python benchmarks/scale.py --workers 64 --trials 128 --prefill 10000 --trial-seconds 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ADMIN = os.environ.get("SEARCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
STUDY = "scale"


def _sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(n_startup_trials=10, seed=seed, multivariate=True, group=True,
                                      constant_liar=True)


def _space():
    import optuna

    return {"lr": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
            "dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}


def prefill(url: str, n: int, epochs: int, procs: int = 8) -> None:
    """A study holding ``n`` finished trials (90% complete, 10% pruned), each with a config-sized attribute,
    written by ``procs`` processes at once (each insert is a round trip; one writer takes minutes for 10k)."""
    import optuna

    from search.store import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    storage.engine.dispose()
    ctx = mp.get_context("spawn")
    chunks = [range(i, n, procs) for i in range(procs)]
    workers = [ctx.Process(target=_prefill_part, args=(url, list(c), epochs)) for c in chunks]
    for p in workers:
        p.start()
    for p in workers:
        p.join()
    if any(p.exitcode for p in workers):
        raise SystemExit("prefill failed")


def _prefill_part(url: str, numbers: list[int], epochs: int) -> None:
    import random

    import optuna
    from optuna.trial import TrialState, create_trial

    from search.store import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    config = {"data": {"source": "imagefolder", "root": "data/x", "image_size": 224}, "train": {"epochs": epochs},
              "optimizer": {"name": "adamw", "lr": 1e-3}, "model": {"name": "resnet18", "dropout": 0.1}}
    batch = []
    for i in numbers:
        rng = random.Random(i)
        v = rng.random()
        pruned = i % 10 == 9
        steps = range(1, (2 if pruned else epochs) + 1)
        batch.append(create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE, value=None if pruned else v,
            params={"lr": 10 ** rng.uniform(-5, -1), "dropout": rng.uniform(0, 0.5)}, distributions=_space(),
            intermediate_values={s: v * s / epochs for s in steps},
            user_attrs={"config": config, "per_class_f1": {f"c{k}": v for k in range(10)}, "best_epoch": epochs}))
    study.add_trials(batch)
    storage.engine.dispose()


def worker(url: str, index: int, budget: int, trial_seconds: float, epochs: int, out: str, ready) -> None:
    import optuna

    from search.store import Hooks, claim, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, heartbeat_seconds=10, max_retries=3)
    study = optuna.load_study(study_name=STUDY, storage=storage, sampler=_sampler(index),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=epochs))
    t0 = time.perf_counter()
    study.get_trials(deepcopy=False)  # the cold read of every finished trial, once per worker process
    cold = time.perf_counter() - t0
    ready.wait()  # all workers warm: what follows is the steady state, not 64 cold reads on a few cores
    rows = []
    while True:
        t0 = time.perf_counter()
        survey, lease = claim(study, storage, budget, max_failures=budget, hooks=Hooks(say=lambda line: None))
        claimed = time.perf_counter() - t0
        if survey.done >= budget:
            break
        if lease is None:
            time.sleep(0.5)
            continue
        store, slept = claimed, 0.0
        with lease:
            t = time.perf_counter()
            lr = lease.trial.suggest_float("lr", 1e-5, 1e-1, log=True)
            lease.trial.suggest_float("dropout", 0.0, 0.5)
            lease.set_attrs(config={"lr": lr}, output_dir=f"/tmp/scale/{lease.number}")
            store += time.perf_counter() - t
            for epoch in range(1, epochs + 1):
                s = time.perf_counter()
                time.sleep(trial_seconds / epochs)
                slept += time.perf_counter() - s
                t = time.perf_counter()
                lease.report(min(1.0, lr * 10 * epoch / epochs), epoch)  # what a trial reports per epoch
                if epoch < epochs:
                    lease.should_prune()  # asked, not obeyed: every trial runs the same time
                store += time.perf_counter() - t
            t_end = time.perf_counter()
            lease.complete(min(1.0, lr * 10), {})
        store += time.perf_counter() - t_end  # the tell, in the lease's exit
        rows.append({"number": lease.number, "claim": claimed, "store": store, "slept": slept,
                     "state": lease.outcome.state.name, "first": not rows, "cold": cold})
    Path(out).write_text(json.dumps(rows))
    storage.engine.dispose()


def _connections(admin, db: str, stop: threading.Event, peak: list[int]) -> None:
    import sqlalchemy

    with admin.connect() as c:
        while not stop.is_set():
            n = c.execute(sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"),
                          {"d": db}).scalar()
            peak[0] = max(peak[0], n)
            stop.wait(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--trials", type=int, default=128, help="new trials to run on top of the prefill")
    ap.add_argument("--prefill", type=int, default=1000, help="finished trials the study holds at the start")
    ap.add_argument("--trial-seconds", type=float, default=60.0)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()

    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    from search.store import open_storage

    admin = sqlalchemy.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    db = f"imgsearch_scale_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
        max_conn = c.execute(sqlalchemy.text("SHOW max_connections")).scalar()
    url = ADMIN.rsplit("/", 1)[0] + f"/{db}"
    tmp = Path(f"/tmp/imgsearch-scale-{db}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        prefill(url, args.prefill, args.epochs)
        print(f"prefilled {args.prefill} finished trials in {time.perf_counter() - t:.0f}s", flush=True)
        budget = args.prefill + args.trials
        stop, peak = threading.Event(), [0]
        mon = threading.Thread(target=_connections, args=(admin, db, stop, peak), daemon=True)
        mon.start()
        ctx = mp.get_context("spawn")  # fresh interpreters, as separate `search worker` processes are
        t = time.perf_counter()
        ready = ctx.Barrier(args.workers)
        procs = [ctx.Process(target=worker, args=(url, i, budget, args.trial_seconds, args.epochs,
                                                  str(tmp / f"w{i}.json"), ready)) for i in range(args.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        wall = time.perf_counter() - t
        stop.set()
        mon.join()
        rows = [r for i in range(args.workers) if (tmp / f"w{i}.json").is_file()
                for r in json.loads((tmp / f"w{i}.json").read_text())]
        study = optuna.load_study(study_name=STUDY, storage=open_storage(url))
        trials = study.get_trials(deepcopy=False)
        new = [x for x in trials if x.number >= args.prefill]  # the prefill took numbers 0..prefill-1
        finished = sum(x.state in (TrialState.COMPLETE, TrialState.PRUNED) for x in new)
        ran = [r["number"] for r in rows]
        duplicated = len(ran) - len(set(ran))
        lost = args.trials - finished
        def stats(part: list[dict]) -> tuple[str, str, str]:
            claims = sorted(r["claim"] for r in part)
            if not claims:
                return "-", "-", "-"
            p95 = claims[min(len(claims) - 1, int(0.95 * len(claims)))]
            share = sum(r["store"] for r in part) / max(sum(r["slept"] for r in part), 1e-9)
            return f"{statistics.median(claims) * 1000:.0f} ms", f"{p95 * 1000:.0f} ms", f"{100 * share:.2f}%"

        colds = sorted({r["cold"] for r in rows})
        print(f"workers {args.workers}, prefill {args.prefill} finished trials, {args.trials} requested, "
              f"{args.trial_seconds:g} s trials of {args.epochs} epochs, Postgres max_connections {max_conn}, "
              f"{os.cpu_count()} CPUs; wall {wall:.0f}s; each worker's cold read of the study before the start: "
              f"median {statistics.median(colds) if colds else float('nan'):.1f}s")
        print("| claims | workers | prefill | claim median | claim p95 | store+sampler / trial time | "
              "peak connections | requested | finished | duplicated | lost | failed workers |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        failed = sum(p.exitcode != 0 for p in procs)
        for label, part in (("all", rows), ("each worker's first", [r for r in rows if r["first"]]),
                            ("later", [r for r in rows if not r["first"]])):
            median, p95, share = stats(part)
            print(f"| {label} ({len(part)}) | {args.workers} | {args.prefill} | {median} | {p95} | {share} | "
                  f"{peak[0]} | {args.trials} | {finished} | {duplicated} | {lost} | {failed} |")
        open_storage(url).engine.dispose()
    finally:
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' "
                                      "AND pid <> pg_backend_pid()"))
            c.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}"'))


if __name__ == "__main__":
    main()
