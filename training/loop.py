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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.utils import get_total_norm

from .batch_probe import probe_max_batch, resolve_batch_size
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import MASK_FACTORS, RunConfig, dump_config
from .data.prepare import prepare_data
from .errors import ConfigError, NonFiniteLoss
from .files import atomic_path, write_atomic
from .losses import build_factorized_loss, build_loss, check_loss_fits
from .metrics import classification_metrics
from .models import build_model
from .optim import build_optimizer, param_groups
from .runtime import Runtime, resolve_runtime, seed_everything
from .schedules import build_scheduler

__all__ = ["fit", "train_one_epoch", "evaluate", "Callback", "NonFinite"]

log = logging.getLogger(__name__)
Callback = Callable[[int, dict], None]


def train_one_epoch(model: nn.Module, loader, loss_fn: nn.Module, opt: torch.optim.Optimizer,
                    sched, rt: Runtime, scaler: torch.amp.GradScaler | None) -> tuple[float, int, NonFinite | None]:
    """Mean training loss, images seen, and the first step whose loss or gradients were not finite (tracked on
    the device and read back once, with the loss: no host-GPU sync per step)."""
    model.train()
    total, n = torch.zeros((), device=rt.device), 0
    first_bad = torch.full((2,), -1, dtype=torch.long, device=rt.device)  # step of the first bad loss, gradients
    params = [p for g in opt.param_groups for p in g["params"]]
    step = -1
    for step, (x, y) in enumerate(loader):
        with rt.autocast():
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:  # inf gradients are how GradScaler finds its scale: it skips those steps itself
            scaler.scale(loss).backward()
            bad = ~torch.isfinite(loss.detach()).expand(2)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            grad_norm = get_total_norm([p.grad for p in params if p.grad is not None])
            bad = ~torch.isfinite(torch.stack([loss.detach().float(), grad_norm.float()]))
            opt.step()
        first_bad = torch.where(bad & (first_bad < 0), step, first_bad)
        sched.step()
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


def _class_weights(cfg: RunConfig, counts: np.ndarray, n: int, multilabel: bool) -> torch.Tensor | None:
    return _weights(cfg.loss.class_weights, counts, n, multilabel)


def _factor_weights(cfg: RunConfig, counts: np.ndarray, n: int) -> list[torch.Tensor | None]:
    """The factorized head's class weights, one tensor per head: balanced from that head's own train counts (the
    18 classes' counts summed over the other heads), a list split into the heads' parts in MASK_FACTORS order."""
    shape = tuple(MASK_FACTORS.values())
    grid, cw, start, out = counts.reshape(shape), cfg.loss.class_weights, 0, []
    for i, k in enumerate(shape):
        head_counts = grid.sum(axis=tuple(j for j in range(len(shape)) if j != i))
        out.append(_weights(cw[start:start + k] if isinstance(cw, list) else cw, head_counts, n, False))
        start += k
    return out


def _weights(cw: str | list[float] | None, counts: np.ndarray, n: int, multilabel: bool) -> torch.Tensor | None:
    if cw is None:
        return None
    if cw == "balanced":
        w = (n - counts) / np.maximum(counts, 1) if multilabel else n / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(w, dtype=torch.float32)
    if len(cw) != len(counts):
        raise ConfigError(f"loss.class_weights has {len(cw)} values but the data has {len(counts)} classes")
    return torch.tensor(cw, dtype=torch.float32)


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
    if cfg.train.batch_size == "auto" and batch_ceiling is None:
        batch_ceiling = probe_max_batch(cfg, rt, num_outputs=1000)
    bs = resolve_batch_size(cfg.train.batch_size, batch_ceiling)
    if bs < 1:
        h, w = cfg.data.hw
        raise ConfigError(f"model.name = '{cfg.model.name}' at {h}x{w}px does not fit this GPU even "
                          "at batch 8; lower data.image_size or use a smaller model")
    seed_everything(cfg.seed)
    data = prepare_data(cfg, rt.device, rt.channels_last, bs, rt.input_dtype, full_data=full_data)
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
    out.mkdir(parents=True, exist_ok=True)  # only once the data and its split are known to be usable
    write_atomic(out / "config.yaml", yaml.safe_dump(dump_config(cfg), sort_keys=False))
    lr_scale = bs / 256 if cfg.optimizer.scale_lr_with_batch else 1.0
    s = data.samples
    check_loss_fits(cfg.loss.name, s.multilabel)
    write_atomic(out / "split.json", json.dumps({"split_seed": cfg.data.split_seed, **data.split_record}, indent=1))

    model = build_model(cfg.model, len(s.classes)).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    counts = np.bincount(s.targets[data.train_index], minlength=len(s.classes)) if not s.multilabel \
        else s.targets[data.train_index].sum(axis=0)
    if cfg.model.head == "factorized":  # the sum of one configured loss per head
        loss_fn = build_factorized_loss(cfg.loss.name, tuple(MASK_FACTORS.values()), gamma=cfg.loss.gamma,
                                        label_smoothing=cfg.loss.label_smoothing,
                                        weights=_factor_weights(cfg, counts, len(data.train_index))).to(rt.device)
    else:
        weight = _class_weights(cfg, counts, len(data.train_index), s.multilabel)
        loss_fn = build_loss(cfg.loss.name, gamma=cfg.loss.gamma, label_smoothing=cfg.loss.label_smoothing,
                             weight=weight).to(rt.device)
    o = cfg.optimizer
    groups = param_groups(model, model.head, o.lr * lr_scale, (o.backbone_lr or o.lr) * lr_scale, o.weight_decay)
    opt = build_optimizer(o.name, groups, momentum=o.momentum, nesterov=o.nesterov, betas=o.betas)
    sched = build_scheduler(opt, cfg.scheduler, cfg.train.epochs, len(data.train))
    scaler = torch.amp.GradScaler(rt.device.type) if rt.dtype == torch.float16 else None
    step_fn = torch.compile(model) if cfg.train.compile else model

    start, history, best, stopped = 0, [], None, False
    if resume_from is not None:
        ck = load_checkpoint(Path(resume_from))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        start, history, best = ck["epoch"], json.loads(ck["history"]), json.loads(ck["best"]) if ck["best"] else None
        stopped = bool(ck.get("stopped"))  # it had stopped early: nothing left to train
        data.train.epoch = start
        _adopt(Path(resume_from).parent, out)
        log.info("resumed from %s at epoch %d", resume_from, start)

    result = None
    last_epoch = start if stopped else cfg.train.epochs
    for epoch in range(start + 1, last_epoch + 1):
        t0 = time.perf_counter()
        train_loss, seen, bad = train_one_epoch(step_fn, data.train, loss_fn, opt, sched, rt, scaler)
        if bad is None and not math.isfinite(train_loss):
            bad = NonFinite("loss", 0, len(data.train))  # no step known
        if bad is not None:
            raise NonFiniteLoss(bad.message(epoch, rt.precision, cfg.loss.name, rt.dtype is not None))
        m = _validate(step_fn, data, loss_fn, rt, cfg.train.threshold)
        m.update(epoch=epoch, train_loss=train_loss, lr=opt.param_groups[-1]["lr"],
                 seconds=time.perf_counter() - t0, images_per_second=seen / (time.perf_counter() - t0))
        history.append({k: v for k, v in m.items() if k != "confusion_matrix"})
        if best is None or m["macro_f1"] is None or m["macro_f1"] > best["macro_f1"]:  # no val: the latest
            best = m
            with atomic_path(out / "best.pt") as tmp:  # a run killed mid-save keeps its previous best.pt
                torch.save(model.state_dict(), tmp)
        stopped = bool(cfg.train.patience) and epoch - best["epoch"] >= cfg.train.patience
        result = {**_result(best, history, out, data), "resumed_at_epoch": start}
        write_atomic(out / "metrics.json", json.dumps(result, indent=1))
        if callback is not None:  # before the checkpoint: a run killed in between resumes at this epoch and
            # reports it again (ignored), instead of resuming after an unreported epoch
            callback(epoch, {**m, "final": stopped or epoch == last_epoch})
        save_checkpoint(out / "last.pt", model=model.state_dict(), optimizer=opt.state_dict(),
                        scheduler=sched.state_dict(), epoch=epoch, rng=rng_state(),
                        scaler=scaler.state_dict() if scaler is not None else None, stopped=stopped,
                        history=json.dumps(history), best=json.dumps(best))
        if stopped:
            log.info("early stop at epoch %d: no better macro-F1 for %d epochs", epoch, cfg.train.patience)
            break
    if result is None:  # resumed from a run that had already finished (last epoch, or stopped early)
        result = {**_result(best, history, out, data), "resumed_at_epoch": start}
        write_atomic(out / "metrics.json", json.dumps(result, indent=1))
    return result


def _adopt(previous: Path, out: Path) -> None:
    """A retried trial trains in a folder of its own: the interrupted run's best weights and checkpoint come
    along, so that the folder is a whole run (predict reads its best.pt, a second retry resumes from its
    last.pt) even when the retry improves on nothing or dies before its first epoch."""
    if previous.resolve() == out.resolve():
        return
    for name in ("best.pt", "last.pt"):
        if (previous / name).is_file():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(previous / name, tmp)


def _validate(model: nn.Module, data, loss_fn: nn.Module, rt: Runtime, threshold: float) -> dict:
    """The epoch's validation metrics; all None in a full-data run, which has no val images."""
    if data.val is None:
        return dict.fromkeys(("macro_f1", "accuracy", "per_class_f1", "confusion_matrix", "val_loss"))
    scores, targets, val_loss = evaluate(model, data.val, loss_fn, rt)
    s = data.samples
    return {**classification_metrics(scores, targets, s.classes, s.multilabel, threshold), "val_loss": val_loss}


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
