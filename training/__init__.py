"""Train one image-classification configuration; report per-epoch metrics through a callback.

Knows nothing of Optuna: ``search`` drives it. Imports are lazy, so that reading a config or an error class
does not load torch.
"""

from importlib import import_module

from .errors import ConfigError, DataError, NonFiniteLoss, TrainingError

__all__ = ["RunConfig", "load_config", "parse_config", "fit", "train_one_epoch", "evaluate",
           "TrainingError", "ConfigError", "DataError", "NonFiniteLoss"]

_LAZY = {"RunConfig": "config", "load_config": "config", "parse_config": "config",
         "fit": "loop", "train_one_epoch": "loop", "evaluate": "loop"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'training' has no attribute '{name}'")
