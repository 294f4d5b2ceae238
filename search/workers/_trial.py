"""One trial: params -> config -> ``fit(callback)`` -> attributes, inside its lease (search/store/_lease.py), which
keeps the heartbeat, retries store calls and tells the study how the trial ended: COMPLETE with the best
epoch's macro-F1 (with ``cv:``, the folds' mean), PRUNED, or FAIL with the reason in ``fail_reason``.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from search.observe import Mirrors, TrialBoard, TrialMirror, for_study as artifacts_of, run_config
from search.observe.progress import WorkerDisplay
from search.ranking import best_or_none
from search.store import EndHook, Hooks, Lease, WorkerStopped, with_store_retry
from search.study import StudyConfig, sample_params
from search.workers._epoch_reports import TrialReports
from search.workers._per_gpu import batch_ceiling
from training import fit
from training.config import RunConfig, dump_config
from training.cv import combine, cross_validate
from training.errors import TrainingError, one_line
from training.run_folder import LAST_CHECKPOINT
from training.runtime import describe_device

__all__ = ["TrialContext", "run_trial", "WorkerStopped", "trial_hooks"]

RECORDED = ("per_class_f1", "best_epoch", "epochs_run", "accuracy", "resumed_at_epoch")


@dataclass
class TrialContext:
    study_cfg: StudyConfig
    storage: optuna.storages.RDBStorage
    output_root: Path
    use_wandb: bool
    tag: str                      # worker tag for progress lines
    best: float | None = None     # the study's best value, for progress lines: refreshed every claim and epoch
    display: WorkerDisplay = field(default_factory=WorkerDisplay)  # plain lines, a live board, or the store
    tensorboard: Path | None = None  # a TensorBoard run per trial under <it>/<study>/

    def refresh_best(self, study: optuna.Study) -> float | None:
        """Other workers finish trials while this one trains: read the study's best again (one ordered query)."""
        try:
            best = with_store_retry(lambda: best_or_none(study), "read the study's best trial", max_wait=30)
        except Exception:  # a progress line is not worth failing a trial over
            return self.best
        if best is not None:
            self.best = best.value
        return self.best

    def say(self, line: str) -> None:
        print(f"[{self.tag}] {line}", flush=True)


def trial_hooks(ctx: TrialContext) -> Hooks:
    """What each of this worker's trials does at its end, in order: its artifacts (uploaded before the tell,
    the top k's checkpoints kept after), the trial's W&B run (run_trial adds it), then memory freed."""
    artifacts = artifacts_of(ctx.study_cfg.spec.artifacts, ctx.output_root)
    return Hooks(say=ctx.say, explain=_explain, end=(artifacts,), last=(FreeMemory(),))


def run_trial(lease: Lease, ctx: TrialContext) -> TrialState:
    sc, trial, n = ctx.study_cfg, lease.trial, lease.number
    out = _trial_folder(ctx.output_root / sc.name, n)
    folds = sc.spec.cv.folds if sc.spec.cv else None
    with lease:
        params = lease.store(lambda: sample_params(trial, sc.space, sc.base), "sample its parameters")
        retried = lease.retried_from()
        resume = _resume_point(retried, folds is not None)
        if retried and retried.user_attrs.get("fail_reason"):  # inherited from the attempt this one retries
            lease.set_attrs(fail_reason=None)
        cfg = sc.config_for(params, f"{sc.path} trial {n}")  # what the user set, and the trial's params
        resolved = dump_config(cfg)
        cfg = _with_worker_threads(cfg)  # + this worker's CPU share: how it runs here, not part of the config
        ceiling = batch_ceiling(trial.study, cfg)
        # where it runs: the config may say auto, and cost per GPU- or CPU-hour needs the device it resolved to
        # (None for a GPU this machine lacks: fit fails with the reason); the threads replay it on a CPU
        device = describe_device(cfg.train)
        lease.set_attrs(config=resolved, output_dir=str(out), device=device and device.name,
                        device_kind=device and device.kind, num_threads=cfg.train.num_threads)
        params_text = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        ctx.say(f"trial {n} start{' (resumed)' if resume else ''}: {params_text}")
        w = sc.spec.wandb
        mirror = lease.on_end(TrialMirror(ctx.use_wandb and w.enabled, project=w.project or sc.name,
                                          group=w.group or sc.name, name=f"trial-{n}", mode=w.mode,
                                          config=run_config(resolved, params, trial=n, study=sc.name),
                                          directory=ctx.output_root, entity=w.entity, output_dir=out))
        board = lease.on_end(TrialBoard(ctx.tensorboard / sc.name / out.name if ctx.tensorboard else None, params))
        mirror = Mirrors(mirror, board)
        reports = TrialReports(lease, mirror, cfg.train.epochs, folds, say=ctx.say,
                               best=lambda: ctx.refresh_best(trial.study),
                               progress=ctx.display.trial(lease, ctx.tag, cfg.train.epochs, folds),
                               pruner=sc.spec.pruner.name)
        if folds:
            result = combine(cross_validate(cfg, out, folds, epoch_callback=reports.epoch,
                                            fold_callback=reports.fold_done, resume_dir=resume, batch_ceiling=ceiling))
        else:
            result = fit(cfg, out, reports.epoch, resume_from=resume, batch_ceiling=ceiling)
        if result["batch_size"] != cfg.train.batch_size:  # auto / capped: export the size that ran
            mirror.update_config({"train.batch_size": result["batch_size"]})
            lease.set_attrs(config={**resolved, "train": {**resolved["train"], "batch_size": result["batch_size"]}})
        lease.set_attrs(**{k: result[k] for k in RECORDED + (("fold_macro_f1",) if folds else ())})
        lease.complete(result["macro_f1"], {"macro_f1": result["macro_f1"], "best_epoch": result["best_epoch"]})
    if lease.outcome.value is not None and (ctx.best is None or lease.outcome.value > ctx.best):
        ctx.best = lease.outcome.value
    return lease.outcome.state


def _trial_folder(root: Path, number: int) -> Path:
    """``trial-NNNN``, or ``trial-NNNN-2``, ... when that holds another study's run: a study of the same name in
    another store (or one deleted and started again) numbers its trials from 0 too, and must not write over the
    earlier study's results. A trial number is never run twice in one study (a retry is a new trial)."""
    base = (root / f"trial-{number:04d}").resolve()
    folder, n = base, 1
    while folder.exists() and any(folder.iterdir()):
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def _resume_point(retried, cv: bool) -> Path | None:
    """A retried trial resumes from the newest checkpoint its dead predecessors left (with cv: their folder,
    where each fold resumes from its own). ``retried``: the trial as stored, when it re-runs a failed one."""
    prev = retried.user_attrs.get("output_dir") if retried else None  # inherited from the failed trial
    if not prev:
        return None
    if cv:
        return Path(prev) if Path(prev).is_dir() else None
    ck = Path(prev) / LAST_CHECKPOINT
    return ck if ck.is_file() else None


def _explain(e: Exception) -> str:
    if isinstance(e, torch.OutOfMemoryError):
        return f"out of memory: {one_line(e, 200, with_type=False)}; lower train.batch_size or image_size"
    if isinstance(e, TrainingError):
        return str(e)
    return one_line(e, with_last=True)


class FreeMemory(EndHook):
    """After every trial: the next one may use other batch or image sizes, so cached device memory and cached
    page-locked host blocks (the loader's buffers) go back to the system instead of piling up per size."""

    def after_tell(self, lease: Lease) -> None:
        _free_memory()


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        if hasattr(torch._C, "_host_emptyCache"):  # torch has no public API for the pinned-host cache yet
            torch._C._host_emptyCache()


def _with_worker_threads(cfg: RunConfig) -> RunConfig:
    """The worker's CPU thread share (``search run`` splits the cores between its workers), unless the config sets
    its own. It is recorded beside the trial (``num_threads``), not in its config: an export retrains with what
    the user set, and its header names the threads that replay the trial bit for bit on a CPU."""
    threads = os.environ.get("SEARCH_NUM_THREADS")
    if not threads or cfg.train.num_threads is not None:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_threads": int(threads)})})


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
