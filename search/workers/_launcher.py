"""``search run``: create or resume the study, set its budget, start K local workers, report the result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch

from search.errors import SearchError
from search.observe.progress import LauncherDisplay, live_output, worker_display
from search.results import study_status
from search.store import counts, open_storage, redact
from search.study import DEFAULT_TOP_K, StudyConfig, enqueue, judge, read_source, study_warnings
from search.workers._trial import WorkerStopped
from search.workers._trials_per_gpu import resolve_trials_per_gpu
from search.workers._worker import open_study, work
from training.config import dump_config
from training.data.sources import load_samples
from training.data.split import check_folds
from training.errors import ConfigError, DataError, TrainingError
from training.losses import check_loss_fits
from training.runtime import resolve_runtime

__all__ = ["run_study", "preflight", "worker_env", "gpu_of_worker", "local_gpus"]


def preflight(sc: StudyConfig) -> None:
    """Fail fast, before any trial, on what would fail every trial: a bad default config or missing data."""
    cfg = sc.config_for(sc.default_params(), str(sc.path))
    try:
        resolve_runtime(cfg.train)  # fp16 on CPU, cuda without a GPU
        if isinstance(cfg.model.pretrained, Path) and not cfg.model.pretrained.is_file():
            raise ConfigError(f"model.pretrained: weights file '{cfg.model.pretrained}' does not exist; "
                              "pass a state-dict file or true/false")
        samples = load_samples(cfg.data)
        check_loss_fits(cfg.loss.name, samples.multilabel)
        if sc.spec.cv is not None:  # every trial would fail at its first fold otherwise
            try:
                check_folds(samples.targets, samples.groups, sc.spec.cv.folds, samples.classes, samples.multilabel)
            except DataError as e:
                raise DataError(str(e).replace("data.folds", "cv.folds")) from None
    except TrainingError as e:
        raise type(e)(f"{sc.path}: {e}") from None


def local_gpus(visible: str | None, count: int) -> list[str]:
    """The GPUs local workers are spread over: the CUDA_VISIBLE_DEVICES entries this process sees (a user's
    selection is kept: under ``=2,3`` workers get 2 and 3, not 0 and 1), else 0..count-1. MIG instances are
    the exception: CUDA enumerates only the first MIG instance a process is given (count is 1), but each
    worker is its own process, so every listed instance gets workers."""
    ids = [d.strip() for d in (visible or "").split(",") if d.strip()]
    if count and ids and all(d.startswith("MIG-") for d in ids):
        return ids
    return ids[:count] or [str(i) for i in range(count)]


def gpu_of_worker(index: int, trials_per_gpu: int, gpus: int, visible: str | None) -> str:
    """The CUDA_VISIBLE_DEVICES entry of local worker ``index``: round-robin over :func:`local_gpus`,
    ``trials_per_gpu`` workers per GPU."""
    ids = local_gpus(visible, gpus)
    return ids[(index // trials_per_gpu) % len(ids)]


def worker_env(index: int, n_workers: int, trials_per_gpu: int = 1) -> dict[str, str]:
    """GPU pinning round-robin (trials_per_gpu workers share a GPU); CPU threads split between workers."""
    env = dict(os.environ)
    gpus = torch.cuda.device_count()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpu_of_worker(index, trials_per_gpu, gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
        env["SEARCH_GPU_SHARE"] = str(trials_per_gpu)
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    env.setdefault("SEARCH_NUM_THREADS", str(threads))
    return env


RESTARTS_PER_WORKER = 3  # a worker that keeps getting killed is given up on


def _worker_process(sc: StudyConfig, url: str, n_trials: int, i: int, k: int, output: Path, use_wandb: bool,
                    timeout: float | None, trials_per_gpu: int, display: LauncherDisplay | None = None,
                    tensorboard: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "search", "worker", "--study", str(sc.path), "--n-trials", str(n_trials),
           "--worker-index", str(i), "--output", str(output)]
    cmd += ["--no-wandb"] if not use_wandb else []
    cmd += ["--timeout", str(timeout)] if timeout else []
    cmd += ["--tensorboard", str(tensorboard)] if tensorboard else []
    env = worker_env(i, k, trials_per_gpu)
    env["SEARCH_STORAGE"] = url  # by environment, not on the command line, where `ps` shows a password to all
    return display.popen(cmd, env) if display else subprocess.Popen(cmd, env=env)


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def describe_exits(codes: list[int]) -> str:
    """Every worker that did not finish cleanly, for the error line: 'worker 1 exited with code 1; worker 2
    was killed (SIGKILL)'."""
    return "; ".join(f"worker {i} " + (f"was killed ({_signal_name(-c)})" if c < 0 else f"exited with code {c}")
                     for i, c in enumerate(codes) if c)


def _spawn(sc: StudyConfig, url: str, n_trials: int, k: int, output: Path, use_wandb: bool,
           timeout: float | None, trials_per_gpu: int, display: LauncherDisplay | None = None,
           tensorboard: Path | None = None) -> list[int]:
    """Run K workers until all have exited; returns their exit codes (negative: killed by that signal; 0 for
    one that stopped cleanly on a stop signal while another failed). One killed by a signal (the OOM killer, a
    segfault in a native library, kill -9) is replaced on its GPU, up to RESTARTS_PER_WORKER times; its trial
    goes stale and a worker retries it. One that exits with an error of its own (exit 1: a budget or store
    error it printed) is not: a new one would stop the same way."""
    start = lambda i: _worker_process(sc, url, n_trials, i, k, output, use_wandb, timeout, trials_per_gpu,  # noqa: E731
                                      display, tensorboard)
    procs: list[subprocess.Popen] = []
    stopped_by: list[signal.Signals] = []

    def forward(signum, frame):
        stopped_by.append(signal.Signals(signum))
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}  # before any worker starts
    codes: list[int | None] = [None] * k
    restarts = [0] * k
    try:
        for i in range(k):
            procs.append(start(i))
        while None in codes:
            for i, p in enumerate(procs):
                if codes[i] is not None or (code := p.poll()) is None:
                    continue
                if code < 0 and not stopped_by and restarts[i] < RESTARTS_PER_WORKER:
                    restarts[i] += 1
                    print(f"worker {i} was killed ({_signal_name(-code)}); starting a new one in its place "
                          f"(restart {restarts[i]}/{RESTARTS_PER_WORKER})", flush=True)
                    procs[i] = start(i)
                    if stopped_by:  # the stop signal came while it was starting: `forward` saw the dead one
                        procs[i].send_signal(stopped_by[0])
                else:
                    codes[i] = code
            if display is not None:
                display.tick()
            time.sleep(0.2)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    # a worker re-queues its trial and exits 143; one still starting up when the signal came dies of it
    stopped = {0, 143, -signal.SIGINT, -signal.SIGTERM}
    if stopped_by and all(c in stopped for c in codes):
        raise WorkerStopped(stopped_by[0].name)
    return [0 if stopped_by and c in stopped else int(c) for c in codes]


def _auto_trials_per_gpu(study: optuna.Study, sc: StudyConfig, gpus: int) -> int:
    """``--trials-per-gpu auto``: measured on the first local GPU for the study's default config (all local GPUs
    are taken to be the same model), printed with why."""
    if not gpus:
        print("trials per GPU: auto -> 1 (no GPU: the workers run on CPU)", flush=True)
        return 1
    cfg = dump_config(sc.config_for(sc.default_params(), str(sc.path)))
    choice = resolve_trials_per_gpu(study, cfg, torch.cuda.get_device_name(0))  # local GPUs: one model
    print(choice.line(), flush=True)
    return choice.k


def run_study(sc: StudyConfig, url: str, n_trials: int | None, workers: int | None, output: Path,
              use_wandb: bool, timeout: float | None, trials_per_gpu: int | str = 1, plain: bool = False,
              warm_start: str | None = None, top_k: int | None = None, tensorboard: Path | None = None) -> dict:
    """``plain``: plain lines even on a terminal (search/observe/progress draws a live board there otherwise).
    ``warm_start``: a study in the same store whose ``top_k`` best completed trials, fitted to this study's space
    (search/study/_warm_start.py), are enqueued before the workers start."""
    preflight(sc)
    # read before this study is opened (and created): a bad --warm-start leaves the store as it was
    source = read_source(url, warm_start, sc.name, top_k or DEFAULT_TOP_K) if warm_start else None
    gpus = len(local_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()))
    if not gpus and trials_per_gpu not in (1, "auto"):
        raise SearchError(f"--trials-per-gpu {trials_per_gpu} shares GPUs, but this machine has none (the workers "
                          "run on CPU); drop it, and use --workers K for K CPU workers")
    storage = open_storage(url)
    study = open_study(sc, storage, url)
    budget = n_trials or sc.spec.n_trials
    before = counts(study)
    finished = before["complete"] + before["pruned"]
    if finished >= budget:  # nothing to run: say so at once, and keep the study's budget as it was
        return {"study": sc.name, "storage": redact(url), "budget": budget, "finished": finished,
                "nothing_to_run": f"study '{sc.name}' already holds {finished} finished trials, so a budget of "
                                  f"{budget} runs none; to add trials, raise --n-trials above {finished} (e.g. "
                                  f"--n-trials {finished + sc.spec.n_trials})"}
    study.set_user_attr("n_trials", budget)
    for line in study_warnings(sc, budget):
        print(f"warning: {line}", flush=True)
    if trials_per_gpu == "auto":
        trials_per_gpu = _auto_trials_per_gpu(study, sc, gpus)
    k = workers or (gpus * trials_per_gpu if gpus else sc.spec.workers)
    print(f"study '{sc.name}' in {redact(url)}: {finished}/{budget} finished; "
          f"{k} worker(s){f' on {gpus} GPU(s)' if gpus else ' on CPU'}", flush=True)
    stopped = judge(study, study.get_trials(deepcopy=False), sc.spec.stop)
    if source is not None and stopped:  # its trials would wait for good
        print(f"warm start skipped: the study {stopped.removeprefix('stopped early: ')}", flush=True)
    elif source is not None:
        enqueue(study, storage, url, sc, source, budget, say=lambda line: print(line, flush=True))
    t0 = time.perf_counter()
    if k == 1:
        os.environ.setdefault("SEARCH_NUM_THREADS", str(os.cpu_count() or 1))
        work(sc, url, n_trials=budget, output_root=output, use_wandb=use_wandb, timeout=timeout, worker_index=0,
             display=worker_display(plain, workers=1), tensorboard=tensorboard)
    else:
        with LauncherDisplay(live_output(sys.stdout, plain), study, budget, k) as display:
            codes = _spawn(sc, url, budget, k, output, use_wandb, timeout, trials_per_gpu, display, tensorboard)
        if any(codes):
            raise SearchError(f"{describe_exits(codes)}; see the output above. "
                              f"Rerun the same command to resume the study")
    st = study_status(optuna.load_study(study_name=sc.name, storage=storage))
    c = st["counts"]
    summary = {"study": sc.name, "storage": redact(url), "budget": budget,
               "seconds": round(time.perf_counter() - t0, 1),
               "complete": c.get("complete", 0), "pruned": c.get("pruned", 0), "failed": c.get("fail", 0),
               "running": c.get("running", 0), "stopped": st["stopped"]}
    if st["best"]:
        best = st["best"]
        summary.update(best_value=best["value"], best_trial=best["number"], best_params=best["params"])
    return summary
