"""An exponential moving average of a model's weights (``train.ema``), with timm's ``ModelEmaV3``.

It is updated after every optimizer step from the model that trains (not its compiled form), counts those steps
itself for the decay's warm-up, and checkpoints with them: a resumed run goes on averaging where it stopped.
Validation, best.pt (and so predict, explain and an export's retrain) use the average.
"""

from __future__ import annotations

from timm.utils import ModelEmaV3
from torch import nn

from .config import EmaConfig

__all__ = ["Ema", "build_ema"]


class Ema:
    def __init__(self, model: nn.Module, spec: EmaConfig) -> None:
        self.source = model
        self.average = ModelEmaV3(model, decay=spec.decay, use_warmup=spec.warmup)
        self.steps = 0

    @property
    def model(self) -> nn.Module:
        """The averaged model: what validates and what best.pt holds."""
        return self.average.module

    def update(self) -> None:
        self.steps += 1
        self.average.update(self.source, step=self.steps)

    def state_dict(self) -> dict:
        return {"weights": self.model.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["weights"])
        self.steps = int(state["steps"])


def build_ema(model: nn.Module, spec: EmaConfig | None) -> Ema | None:
    return None if spec is None else Ema(model, spec)
