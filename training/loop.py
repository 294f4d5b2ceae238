"""Train one configuration: ``fit(cfg, out_dir, callback)`` returns the best epoch's metrics.

The callback ``(epoch, metrics) -> None`` runs after every epoch and may raise to stop the run (that is how
the search prunes a trial); ``metrics["final"]`` is true on the run's last epoch (the planned last one, or an
early stop). The epoch's metrics.json is on disk before it runs, its checkpoint right after.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.special import expit
from torch import nn
from torch.nn.utils import get_total_norm

from .batch_probe import probe_max_batch, resolve_batch_size
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import RunConfig, dump_config
from .data.prepare import prepare_data
from .ema import Ema
from .errors import ConfigError, NonFiniteLoss
from .files import atomic_path, write_atomic
from .losses import check_loss_fits
from .metrics import classification_metrics
from .mix import BatchMix
from .parts import Parts, build_parts
from .run_folder import BEST_CHECKPOINT, CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE, SPLIT_FILE, save_predictions
from .runtime import Runtime, resolve_runtime, seed_everything

__all__ = ["fit", "train_one_epoch", "evaluate", "validate", "Callback", "NonFinite"]

log = logging.getLogger(__name__)
Callback = Callable[[int, dict], None]


def train_one_epoch(model: nn.Module, loader, loss_fn: nn.Module, opt: torch.optim.Optimizer,
                    sched, rt: Runtime, scaler: torch.amp.GradScaler | None, *, mix: BatchMix | None = None,
                    ema: Ema | None = None, accumulate: int = 1) -> tuple[float, int, NonFinite | None]:
    """Mean training loss, images seen, and the first step whose loss or gradients were not finite (tracked on
    the device and read back once, with the loss: no host-GPU sync per step). ``mix`` mixes each batch,
    ``accumulate`` batches make one optimizer step (the epoch's last step takes what is left), after which the
    schedule steps and ``ema`` averages."""
    model.train()
    total, n = torch.zeros((), device=rt.device), 0
    first_bad = torch.full((2,), -1, dtype=torch.long, device=rt.device)  # step of the first bad loss, gradients
    params = [p for g in opt.param_groups for p in g["params"]]
    steps, step = len(loader), -1
    opt.zero_grad(set_to_none=True)
    for step, (x, y) in enumerate(loader):
        inputs, target = mix(x, y) if mix is not None else (x, y)
        with rt.autocast():
            loss = loss_fn(model(inputs), target)
        group = min(accumulate, steps - step // accumulate * accumulate)  # batches in this optimizer step
        stepping = (step + 1) % accumulate == 0 or step + 1 == steps
        scaled = loss / group if group > 1 else loss
        bad = ~torch.isfinite(loss.detach()).expand(2)
        if scaler is not None:  # inf gradients are how GradScaler finds its scale: it skips those steps itself
            scaler.scale(scaled).backward()
            if stepping:
                scaler.step(opt)
                scaler.update()
        else:
            scaled.backward()
            if stepping:
                grad_norm = get_total_norm([p.grad for p in params if p.grad is not None])
                bad = ~torch.isfinite(torch.stack([loss.detach().float(), grad_norm.float()]))
                opt.step()
        first_bad = torch.where(bad & (first_bad < 0), step, first_bad)
        if stepping:
            opt.zero_grad(set_to_none=True)
            sched.step()
            if ema is not None:
                ema.update()
        total += loss.detach() * len(y)
        n += len(y)
    mean, bad_loss, bad_grad = torch.cat([total[None].float(), first_bad.float()]).tolist()
    return mean / max(n, 1), n, NonFinite.first(int(bad_loss), int(bad_grad), step + 1)


@dataclass(frozen=True)
class NonFinite:
    """Where an epoch first went non-finite: ``what`` is "loss" or "gradients", ``step`` counts from 1."""
    what: str
    step: int
    steps: int

    @staticmethod
    def first(loss_step: int, grad_step: int, steps: int) -> "NonFinite | None":
        if loss_step < 0 and grad_step < 0:
            return None
        if grad_step < 0 or 0 <= loss_step <= grad_step:  # the same step: the loss came first, its gradients after
            return NonFinite("loss", loss_step + 1, steps)
        return NonFinite("gradients", grad_step + 1, steps)

    def message(self, epoch: int, precision: str, loss_name: str, reduced: bool) -> str:
        step = f", step {self.step}/{self.steps}" if self.step else ""
        where = f"at epoch {epoch}{step} (precision {precision})"
        if self.what == "gradients":  # finite loss, non-finite backward: the lr did not cause this
            fix = "; set train.precision: fp32" if reduced else ""
            return (f"the gradients became non-finite {where} while the loss was still finite: the backward pass "
                    f"of loss '{loss_name}' or of the model overflowed{fix}")
        if self.step == 1 and epoch == 1:
            return f"the training loss was non-finite {where}, before any update: check the data and the loss settings"
        return f"the training loss became non-finite {where} after finite gradients: the weights diverged; " \
               "lower optimizer.lr" + (" or set train.precision: fp32" if reduced else "")


@torch.no_grad()
def evaluate(model: nn.Module, loader, loss_fn: nn.Module, rt: Runtime) -> tuple[np.ndarray, np.ndarray, float]:
    model.eval()
    scores, targets, total = [], [], torch.zeros((), device=rt.device)
    for x, y in loader:  # nothing read back until the end: no host-GPU sync per batch
        with rt.autocast():
            out = model(x).float()
        total += loss_fn(out, y) * len(y)
        scores.append(out)
        targets.append(y)
    s, t = torch.cat(scores).cpu().numpy(), torch.cat(targets).cpu().numpy()
    return s, t, float(total) / max(len(t), 1)


def fit(cfg: RunConfig, output_dir: str | Path, callback: Callback | None = None,
        resume_from: str | Path | None = None, batch_ceiling: int | None = None, full_data: bool = False) -> dict:
    """Train ``cfg``; ``batch_ceiling`` caps the batch size (``auto`` probes it on CUDA when not given).

    ``full_data``: train on every image, train and val together, for ``train.full_data_epochs`` epochs (else
    ``train.epochs``), with the schedule's horizon set to that count and no early stop. Nothing is validated:
    the metrics are None, and best.pt holds the last epoch's weights."""
    if full_data:
        epochs = cfg.train.full_data_epochs or cfg.train.epochs
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs, "patience": None})})
    out = Path(output_dir)
    rt = resolve_runtime(cfg.train)
    bs = _batch_size(cfg, rt, batch_ceiling)
    seed_everything(cfg.seed)
    data = prepare_data(cfg, rt.device, rt.channels_last, bs, rt.input_dtype, full_data=full_data)
    cfg = _record(cfg, rt, data, bs, out)
    parts = build_parts(cfg, rt, data)
    run = _resume(parts, data, Path(resume_from), out) if resume_from is not None else _Progress()
    return _train(cfg, parts, data, rt, out, callback, run)


def _batch_size(cfg: RunConfig, rt: Runtime, ceiling: int | None) -> int:
    """The batch the data is prepared with: a number, capped to the ceiling; ``auto``: the ceiling (probed on
    CUDA when not given), which _record may lower once the data's size is known."""
    if cfg.train.batch_size == "auto" and ceiling is None:
        ceiling = probe_max_batch(cfg, rt, num_outputs=1000)
    bs = resolve_batch_size(cfg.train.batch_size, ceiling)
    if bs < 1:
        h, w = cfg.data.hw
        raise ConfigError(f"model.name = '{cfg.model.name}' at {h}x{w}px does not fit this GPU even "
                          "at batch 8; lower data.image_size or use a smaller model")
    return bs


def _record(cfg: RunConfig, rt: Runtime, data, bs: int, out: Path) -> RunConfig:
    """The config with the batch that runs, written to the run folder with the split (made only now, once the
    data and its split are known to be usable)."""
    check_loss_fits(cfg.loss.name, data.samples.multilabel)
    if cfg.train.batch_size == "auto":  # as large as memory allows, but at least 8 steps per epoch of the split's
        ceiling = bs  # train side (also for full data)
        bs = min(bs, max(8, 2 ** int(np.log2(max(data.split_train // 8, 1)))))
        for loader in (data.train, data.val):
            if loader is not None:
                loader.batch_size = bs
        log.info("train.batch_size: auto -> %d (%s%s)", bs, f"the largest that fits this GPU is {ceiling}"
                 if rt.device.type == "cuda" else f"{ceiling} on CPU",
                 f"; lowered to keep at least 8 steps per epoch of {data.split_train} train images" if bs < ceiling
                 else "")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": bs})})
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / CONFIG_FILE, yaml.safe_dump(dump_config(cfg), sort_keys=False))
    write_atomic(out / SPLIT_FILE, json.dumps({"split_seed": cfg.data.split_seed, **data.split_record}, indent=1))
    return cfg


@dataclass
class _Progress:
    """Where a run stands: the epochs done, their history, the best epoch, whether it stopped early."""
    start: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    stopped: bool = False


def _resume(parts: Parts, data, checkpoint: Path, out: Path) -> _Progress:
    ck = load_checkpoint(checkpoint)
    parts.model.load_state_dict(ck["model"])
    parts.opt.load_state_dict(ck["optimizer"])
    parts.sched.load_state_dict(ck["scheduler"])
    set_rng_state(ck["rng"])
    if parts.scaler is not None and ck.get("scaler"):
        parts.scaler.load_state_dict(ck["scaler"])
    if parts.ema is not None and ck.get("ema"):  # a run saved without one starts its average here
        parts.ema.load_state_dict(ck["ema"])
    data.train.epoch = ck["epoch"]
    _adopt(checkpoint.parent, out)
    log.info("resumed from %s at epoch %d", checkpoint, ck["epoch"])
    return _Progress(ck["epoch"], json.loads(ck["history"]), json.loads(ck["best"]) if ck["best"] else None,
                     bool(ck.get("stopped")))  # stopped: it had stopped early, nothing left to train


def _train(cfg: RunConfig, parts: Parts, data, rt: Runtime, out: Path, callback: Callback | None,
           run: _Progress) -> dict:
    """The epoch loop: train, validate, keep the best weights, write the metrics, report, checkpoint."""
    last_epoch = run.start if run.stopped else cfg.train.epochs
    result = None
    for epoch in range(run.start + 1, last_epoch + 1):
        m = _epoch(cfg, parts, data, rt, epoch)
        probabilities, targets = m.pop("probabilities", None), m.pop("targets", None)
        run.history.append({k: v for k, v in m.items() if k != "confusion_matrix"})
        if run.best is None or m["macro_f1"] is None or m["macro_f1"] > run.best["macro_f1"]:  # no val: the latest
            run.best = m
            with atomic_path(out / BEST_CHECKPOINT) as tmp:  # a run killed mid-save keeps its previous best.pt
                torch.save(parts.kept.state_dict(), tmp)
            if probabilities is not None:  # the best epoch's val predictions: its mistakes, a label audit
                save_predictions(out, probabilities, targets)
        run.stopped = bool(cfg.train.patience) and epoch - run.best["epoch"] >= cfg.train.patience
        result = {**_result(run.best, run.history, out, data), "resumed_at_epoch": run.start}
        write_atomic(out / METRICS_FILE, json.dumps(result, indent=1))
        if callback is not None:  # before the checkpoint: a run killed in between resumes at this epoch and
            # reports it again (ignored), instead of resuming after an unreported epoch
            callback(epoch, {**m, "final": run.stopped or epoch == last_epoch})
        save_checkpoint(out / LAST_CHECKPOINT, model=parts.model.state_dict(), optimizer=parts.opt.state_dict(),
                        scheduler=parts.sched.state_dict(), epoch=epoch, rng=rng_state(),
                        scaler=parts.scaler.state_dict() if parts.scaler is not None else None, stopped=run.stopped,
                        ema=parts.ema.state_dict() if parts.ema is not None else None,
                        history=json.dumps(run.history), best=json.dumps(run.best))
        if run.stopped:
            log.info("early stop at epoch %d: no better macro-F1 for %d epochs", epoch, cfg.train.patience)
            break
    if result is None:  # resumed from a run that had already finished (last epoch, or stopped early)
        result = {**_result(run.best, run.history, out, data), "resumed_at_epoch": run.start}
        write_atomic(out / METRICS_FILE, json.dumps(result, indent=1))
    return result


def _epoch(cfg: RunConfig, parts: Parts, data, rt: Runtime, epoch: int) -> dict:
    """One epoch trained and validated: its metrics (a non-finite loss or gradient raises, saying which)."""
    t0 = time.perf_counter()
    if parts.mix is not None:
        parts.mix.start_epoch(epoch)
    train_loss, seen, bad = train_one_epoch(parts.step_fn, data.train, parts.loss_fn, parts.opt, parts.sched, rt,
                                            parts.scaler, mix=parts.mix, ema=parts.ema, accumulate=parts.accumulate)
    if bad is None and not math.isfinite(train_loss):
        bad = NonFinite("loss", 0, len(data.train))  # no step known
    if bad is not None:
        raise NonFiniteLoss(bad.message(epoch, rt.precision, cfg.loss.name, rt.dtype is not None))
    m = validate(parts.evaluated, data, parts.loss_fn, rt, cfg.train.threshold)
    m.update(epoch=epoch, train_loss=train_loss, lr=parts.opt.param_groups[-1]["lr"],
             seconds=time.perf_counter() - t0, images_per_second=seen / (time.perf_counter() - t0))
    return m


def _adopt(previous: Path, out: Path) -> None:
    """A retried trial trains in a folder of its own: the interrupted run's best weights and checkpoint come
    along, so that the folder is a whole run (predict reads its best.pt, a second retry resumes from its
    last.pt) even when the retry improves on nothing or dies before its first epoch."""
    if previous.resolve() == out.resolve():
        return
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
        if (previous / name).is_file():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(previous / name, tmp)


def validate(model: nn.Module, data, loss_fn: nn.Module, rt: Runtime, threshold: float) -> dict:
    """The epoch's validation metrics; all None in a full-data run, which has no val images."""
    if data.val is None:
        return dict.fromkeys(("macro_f1", "accuracy", "per_class_f1", "confusion_matrix", "val_loss"))
    scores, targets, val_loss = evaluate(model, data.val, loss_fn, rt)
    s = data.samples
    probabilities = expit(scores) if s.multilabel else _softmax(scores)  # expit: no overflow for large logits
    return {**classification_metrics(scores, targets, s.classes, s.multilabel, threshold), "val_loss": val_loss,
            "probabilities": probabilities.astype(np.float32), "targets": targets}


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _result(best: dict, history: list[dict], out: Path, data) -> dict:
    validated = {} if data.val is not None else {"validation": "none: a full-data retrain trains on every image"}
    return {**validated,
        "macro_f1": best["macro_f1"], "accuracy": best["accuracy"], "best_epoch": best["epoch"],
        "epochs_run": len(history), "per_class_f1": best["per_class_f1"],
        "confusion_matrix": best["confusion_matrix"], "output_dir": str(out),
        "classes": list(data.samples.classes), "multilabel": data.samples.multilabel,
        "batch_size": data.train.batch_size, "n_train": len(data.train_index), "n_val": len(data.val_index),
        "skipped_images": len(data.skipped),
        "history": history,
    }
