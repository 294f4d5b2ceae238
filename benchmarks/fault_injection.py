"""Kill random workers of a running study N times; print what was requested, finished, retried and lost.

    python benchmarks/fault_injection.py --workers 3 --kills 5 --n-trials 12 [--storage URL]

Workers are real `search worker` processes on a tiny digits study (heartbeat 1 s); each kill is a SIGKILL at
a random moment (mid-trial, mid-claim, mid-write), followed by a replacement worker. Exit code 1 if any
trial is lost (requested - finished != 0), duplicated, or left RUNNING.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tiny_study(folder: Path, name: str, n_trials: int) -> Path:
    study = {
        "name": name, "n_trials": n_trials,
        "training": {"seed": 0, "data": {"source": "digits", "limit": 600, "image_size": 8},
                     "model": {"name": "test_resnet"}, "optimizer": {"name": "adamw", "lr": 0.01},
                     "train": {"epochs": 4, "batch_size": 64, "device": "cpu", "num_threads": 1}},
        "search_space": {"optimizer.lr": {"low": 1e-3, "high": 3e-2, "log": True}},
        "pruner": {"name": "none"}, "wandb": {"enabled": False},
        "reliability": {"heartbeat_seconds": 1, "max_retries": 50},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--n-trials", type=int, default=12)
    ap.add_argument("--storage", default=None, help="default: a fresh SQLite file in a temp folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="fault-"))
    url = a.storage or f"sqlite:///{work / 'studies.db'}"
    name = f"faults-{int(time.time())}"
    study_file = tiny_study(work, name, a.n_trials)
    logs = work / "logs"
    logs.mkdir()
    started = 0

    def spawn() -> subprocess.Popen:
        nonlocal started
        started += 1
        out = open(logs / f"worker-{started}.log", "w")
        return subprocess.Popen([sys.executable, "-m", "search", "worker", "--study", str(study_file), "--storage",
                                 url, "--no-wandb", "--worker-index", str(started), "--output", str(work / "runs")],
                                stdout=out, stderr=subprocess.STDOUT)

    t0 = time.time()
    procs = [spawn() for _ in range(a.workers)]
    kills = 0
    def some_running() -> bool:
        try:
            return any(t.state == TrialState.RUNNING
                       for t in optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False))
        except KeyError:  # study not created yet
            return False

    while kills < a.kills and time.time() - t0 < a.timeout:
        while not some_running() and time.time() - t0 < a.timeout:  # strike while trials are in flight
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 2.0))
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            break
        victim = rng.choice(alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        procs.append(spawn())
        print(f"kill {kills}: SIGKILL worker pid {victim.pid} at {time.time() - t0:.1f}s; started a replacement")
    for p in procs:
        try:
            p.wait(timeout=max(a.timeout - (time.time() - t0), 1))
        except subprocess.TimeoutExpired:
            p.kill()
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    failed_retried = [t for t in trials if t.state == TrialState.FAIL and t.number in retried]
    failed_other = [t for t in trials if t.state == TrialState.FAIL and t.number not in retried]
    running = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    lost = a.n_trials - len(finished)
    dupes = len(trials) - len({t.number for t in trials})
    print(f"\nmeasured: {a.workers} workers, {kills} SIGKILLs, {time.time() - t0:.0f}s, store {url.split('://')[0]}")
    print(f"{'trials requested':<26}{a.n_trials}")
    print(f"{'trials finished':<26}{len(finished)}")
    print(f"{'failed, then retried':<26}{len(failed_retried)}")
    print(f"{'failed (other reasons)':<26}{len(failed_other)}")
    print(f"{'left running/waiting':<26}{len(running)}")
    print(f"{'duplicate numbers':<26}{dupes}")
    print(f"{'lost':<26}{lost}")
    return 1 if lost or dupes or running else 0


if __name__ == "__main__":
    sys.exit(main())
