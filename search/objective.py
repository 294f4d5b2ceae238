"""One trial: sample params, build the config, train with pruning + W&B, tell the study how it ended.

Every outcome is explicit: COMPLETE with the best epoch's macro-F1, PRUNED by the median pruner, or FAIL with
the reason in the trial's ``fail_reason`` attribute. Only a stop signal leaves this function by raising.
"""

from __future__ import annotations

import gc
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from training import fit
from training.config import dump_config
from training.errors import TrainingError

from .batch import batch_ceiling
from .budget import budget_lock
from .export import best_or_none
from .heartbeat import Heartbeat
from .resilience import with_store_retry
from .mirror import TrialMirror
from .space import suggest
from .study_config import StudyConfig

__all__ = ["TrialContext", "run_trial", "WorkerStopped"]

log = logging.getLogger(__name__)


class WorkerStopped(BaseException):
    """SIGTERM/SIGINT reached the worker: mark the running trial and stop."""


@dataclass
class TrialContext:
    study_cfg: StudyConfig
    storage: optuna.storages.RDBStorage
    output_root: Path
    use_wandb: bool
    tag: str                      # worker tag for progress lines
    best: float | None = None     # the study's best value, for progress lines: refreshed every claim and epoch

    def refresh_best(self, study: optuna.Study) -> None:
        """Other workers finish trials while this one trains: read the study's best again (one ordered query)."""
        try:
            best = with_store_retry(lambda: best_or_none(study), "read the study's best trial", max_wait=30)
        except Exception:  # a progress line is not worth failing a trial over
            return
        if best is not None:
            self.best = best.value


def _resume_point(trial: optuna.Trial, storage) -> Path | None:
    """A retried trial resumes from the newest checkpoint its dead predecessors left."""
    frozen = storage.get_trial(trial._trial_id)
    prev = frozen.user_attrs.get("output_dir")  # copied from the failed trial by RetryFailedTrialCallback
    if frozen.system_attrs.get("failed_trial") is None or not prev:
        return None
    ck = Path(prev) / "last.pt"
    return ck if ck.is_file() else None


def _free_memory() -> None:
    """After every trial: the next one may use other batch or image sizes, so cached device memory and cached
    page-locked host blocks (the loader's buffers) go back to the system instead of piling up per size."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        if hasattr(torch._C, "_host_emptyCache"):  # no public API for the pinned-host cache yet
            torch._C._host_emptyCache()


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> TrialState:
    sc, n, t0 = ctx.study_cfg, trial.number, time.perf_counter()
    out = (ctx.output_root / sc.name / f"trial-{n:04d}").resolve()
    mirror: TrialMirror | None = None
    state, value, summary = TrialState.FAIL, None, {}
    try:
        with Heartbeat(ctx.storage, trial._trial_id, sc.spec.reliability.heartbeat_seconds):
            params = suggest(trial, sc.space, sc.base)
            resume = _resume_point(trial, ctx.storage)
            if trial.user_attrs.get("fail_reason"):  # inherited from the failed attempt this one retries
                trial.set_user_attr("fail_reason", None)
            cfg = sc.config_for({**_runtime_overrides(sc), **params}, f"{sc.path} trial {n}")
            ceiling = batch_ceiling(trial.study, cfg)
            trial.set_user_attr("config", dump_config(cfg))
            trial.set_user_attr("output_dir", str(out))
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
            print(f"[{ctx.tag}] trial {n} start{' (resumed)' if resume else ''}: {shown}", flush=True)
            w = sc.spec.wandb
            mirror = TrialMirror(ctx.use_wandb and w.enabled, project=w.project or sc.name, group=w.group or sc.name,
                                 name=f"trial-{n}", config={**params, "trial": n, "study": sc.name},
                                 mode=w.mode, directory=ctx.output_root, entity=w.entity)

            def report(epoch: int, m: dict) -> None:
                with_store_retry(lambda: trial.report(m["macro_f1"], epoch), f"report trial {n}")
                mirror.log({k: m[k] for k in ("macro_f1", "accuracy", "train_loss", "val_loss", "lr",
                                              "images_per_second")} | {"epoch": epoch}, step=epoch)
                ctx.refresh_best(trial.study)
                best = "-" if ctx.best is None else f"{ctx.best:.4f}"
                print(f"[{ctx.tag}] trial {n} epoch {epoch}/{cfg.train.epochs} macro_f1={m['macro_f1']:.4f} "
                      f"loss={m['train_loss']:.4f} (study best {best})", flush=True)
                if m["final"]:  # its last epoch (or early stop): the trial is complete, not prunable
                    return
                if with_store_retry(trial.should_prune, f"ask the pruner about trial {n}"):
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}: macro_f1 {m['macro_f1']:.4f} below the median")

            result = fit(cfg, out, report, resume_from=resume, batch_ceiling=ceiling)
            if result["batch_size"] != cfg.train.batch_size:  # auto / capped: export the size that ran
                resolved = dump_config(cfg)
                resolved["train"]["batch_size"] = result["batch_size"]
                with_store_retry(lambda: trial.set_user_attr("config", resolved), f"record trial {n}")
            for k in ("per_class_f1", "best_epoch", "epochs_run", "accuracy", "resumed_at_epoch"):
                with_store_retry(lambda: trial.set_user_attr(k, result[k]), f"record trial {n}")
            state, value = TrialState.COMPLETE, result["macro_f1"]
            summary = {"macro_f1": value, "best_epoch": result["best_epoch"]}
    except optuna.TrialPruned as e:
        state, summary = TrialState.PRUNED, {"reason": str(e)}
    except UpdateFinishedTrialError:
        # the store was away longer than the heartbeat grace: another worker failed this trial and re-queued
        # it (the retry resumes from our checkpoint). Nothing to tell; nothing lost, nothing duplicated.
        print(f"[{ctx.tag}] trial {n} abandoned: it was re-queued while the store was unreachable", flush=True)
        if mirror:
            mirror.finish("FAIL", {"reason": "re-queued after a storage outage"})
        _free_memory()
        return TrialState.FAIL
    except (WorkerStopped, KeyboardInterrupt):
        _fail(trial, "worker stopped by a signal; the trial is re-queued")
        with_store_retry(lambda: _requeue_once(trial, ctx.storage), f"re-queue trial {n}")
        if mirror:
            mirror.finish("FAIL", {"reason": "worker stopped"})
        raise
    except torch.OutOfMemoryError as e:
        _fail(trial, f"out of memory: {str(e).splitlines()[0][:200]}; lower train.batch_size or image_size")
    except TrainingError as e:
        _fail(trial, str(e))
    except Exception as e:  # a bad trial never kills the worker
        _fail(trial, _reason(e))
        log.debug("trial %d crashed:\n%s", n, traceback.format_exc())
    finally:
        _free_memory()
    if state == TrialState.FAIL:
        summary = {"reason": trial.user_attrs.get("fail_reason", "")}
    _tell(trial, state, value)
    if mirror:
        mirror.finish(state.name, summary)
    if value is not None and (ctx.best is None or value > ctx.best):
        ctx.best = value
    what = f"macro_f1={value:.4f}" if value is not None else summary.get("reason", "")
    print(f"[{ctx.tag}] trial {n} {state.name} {what} in {time.perf_counter() - t0:.1f}s", flush=True)
    return state


def _runtime_overrides(sc: StudyConfig) -> dict:
    """The worker's CPU thread share goes into the trial's config, so an export retrains bit-for-bit."""
    threads = os.environ.get("SEARCH_NUM_THREADS")
    if threads and sc.base["train"]["num_threads"] is None:
        return {"train.num_threads": int(threads)}
    return {}


def _reason(e: BaseException) -> str:
    """One line: the error's first line, plus its last line when it wraps another (DataLoader workers do)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1:
        text += f" ({lines[-1]})"
    return f"{e.__class__.__name__}: {text}"[:400]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fail(trial: optuna.Trial, reason: str) -> None:
    log.warning("trial %d failed: %s", trial.number, reason)
    try:
        trial.set_user_attr("fail_reason", reason)
    except Exception:  # the store may be the thing that failed
        pass


def _tell(trial: optuna.Trial, state: TrialState, value: float | None) -> None:
    """Tell the outcome, waiting out a database outage; a retry after a lost reply finds it already told."""
    study = trial.study

    def once() -> None:
        try:
            study.tell(trial, value) if state == TrialState.COMPLETE else study.tell(trial, state=state)
        except (UpdateFinishedTrialError, ValueError) as e:  # "Cannot tell a COMPLETE trial." / "already finished"
            if "cannot tell" not in str(e).lower() and "finished" not in str(e).lower():
                raise

    with_store_retry(once, f"record the end of trial {trial.number}")


def _requeue_once(trial: optuna.Trial, storage) -> None:
    """Under the study lock, where stale trials are failed and retried, so that exactly one of us re-queues it;
    safe to repeat (a store retry) since it acts only while the trial is still RUNNING."""
    with budget_lock(storage, storage.url, trial.study.study_name):
        if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            trials = trial.study.get_trials(deepcopy=False)
            if not any(trial.number in t.system_attrs.get("retry_history", ()) for t in trials):  # not yet re-queued
                _requeue(trial, storage)
            _tell(trial, TrialState.FAIL, None)


def _requeue(trial: optuna.Trial, storage) -> None:
    """Put the interrupted trial's params back as a WAITING trial (resumes from its checkpoint)."""
    from .storage import RetryCallback

    frozen = storage.get_trial(trial._trial_id)
    RetryCallback(max_retry=None, inherit_intermediate_values=True)(trial.study, frozen)
