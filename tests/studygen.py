"""Tiny study files for end-to-end tests: digits subsets, test_resnet, 8 px, a second per trial."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_study(folder: Path, name: str = "tiny", *, epochs: int = 2, limit: int = 300, space: dict | None = None,
                pruner: dict | None = None, heartbeat: int = 10, n_trials: int = 4, sampler_seed: int = 0,
                extra_training: dict | None = None, max_failures: int | None = None) -> Path:
    training = {
        "seed": 0,
        "data": {"source": "digits", "limit": limit, "image_size": 8},
        "model": {"name": "test_resnet"},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "scheduler": {"name": "cosine"},
        "train": {"epochs": epochs, "batch_size": 64, "device": "cpu", "num_threads": 1},
    }
    for k, v in (extra_training or {}).items():
        training[k] = {**training.get(k, {}), **v}
    study = {
        "name": name,
        "n_trials": n_trials,
        "training": training,
        "search_space": space if space is not None else {
            "optimizer.lr": {"low": 1.0e-3, "high": 3.0e-2, "log": True},
            "model.dropout": {"low": 0.0, "high": 0.3},
        },
        "sampler": {"name": "tpe", "seed": sampler_seed, "n_startup_trials": 2},
        "pruner": pruner or {"name": "none"},
        "wandb": {"enabled": True, "mode": "offline"},
        "reliability": {"heartbeat_seconds": heartbeat, "max_failures": max_failures},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path
