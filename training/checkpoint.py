"""Epoch checkpoints: everything needed to resume a run where it stopped (model, optimizer, schedule,
epoch, RNG, history). Loaded with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .files import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
          "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(("MT19937", np.asarray(st["numpy"], dtype=np.uint32), st["numpy_pos"], 0, 0.0))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, **state) -> None:
    with atomic_path(path) as tmp:  # never a half-written checkpoint
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
