"""What a training trial tells Optuna, W&B and the terminal: every epoch, and every fold with ``cv:``.

Without cv the pruner sees each epoch's macro-F1 (steps 1, 2, ...). With cv it sees each fold's macro-F1
(steps 1..k): epochs of different folds are not comparable steps, folds of different trials are. A trial's last
epoch (or fold) is never pruned: it is complete.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from search.observe import per_class_metrics

__all__ = ["TrialReports"]

EPOCH_KEYS = ("macro_f1", "accuracy", "train_loss", "val_loss", "lr", "images_per_second")


class TrialReports:
    def __init__(self, lease, mirror, epochs: int, folds: int | None, say: Callable[[str], None],
                 best: Callable[[], float | None], progress=None, pruner: str = "median") -> None:
        """``progress``: where a live display takes each epoch (search/observe/progress); without one, each epoch is
        a line through ``say``."""
        self.lease, self.mirror, self.epochs, self.folds = lease, mirror, epochs, folds
        self.say, self.best, self.progress, self.pruner = say, best, progress, pruner
        self.fold = 0

    def epoch(self, epoch: int, m: dict) -> None:
        n = self.lease.number
        if self.folds is None:
            self.lease.report(m["macro_f1"], epoch)
        # one W&B step axis across folds: fold i's epochs follow fold i-1's
        step = self.fold * self.epochs + epoch
        self.mirror.log({k: m[k] for k in EPOCH_KEYS} | per_class_metrics(m["per_class_f1"])
                        | {"epoch": epoch, **self._fold_key()}, step=step)
        if self.progress is not None:
            self.progress.epoch(epoch, m, self.fold)
        else:
            best = self.best()
            fold = f" fold {self.fold + 1}/{self.folds}" if self.folds else ""
            self.say(f"trial {n}{fold} epoch {epoch}/{self.epochs} macro_f1={m['macro_f1']:.4f} "
                     f"loss={m['train_loss']:.4f} (study best {'-' if best is None else f'{best:.4f}'})")
        if self.folds is None and not m["final"]:
            self._prune_if_told(f"epoch {epoch}", m["macro_f1"])

    def fold_done(self, fold: int, result: dict) -> None:
        step = fold + 1
        self.lease.report(result["macro_f1"], step)
        self.mirror.log({"fold_macro_f1": result["macro_f1"], "fold": step}, step=(fold + 1) * self.epochs)
        self.fold = fold + 1
        if step < self.folds:
            self._prune_if_told(f"fold {step}/{self.folds}", result["macro_f1"])

    def _prune_if_told(self, where: str, value: float) -> None:
        if self.lease.should_prune():
            raise optuna.TrialPruned(f"pruned at {where} by the {self.pruner} pruner: macro_f1 {value:.4f}")

    def _fold_key(self) -> dict:
        return {"fold": self.fold + 1} if self.folds else {}
