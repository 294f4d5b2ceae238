"""Valid names per registry, for config validation."""

from __future__ import annotations

__all__ = ["valid"]


def valid(kind: str) -> list[str]:
    from .losses import LOSSES
    from .optim import OPTIMIZERS
    from .schedules import SCHEDULES

    return {"loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULES}[kind].names()
