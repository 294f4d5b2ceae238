"""From a data config to train/val loaders: load samples, decode once (cached), drop bad images, split."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..augment import eval_normalization
from ..config import RunConfig
from ..errors import DataError
from .cache import decode_cached
from .images import unreadable_text
from .loader import HostRing, make_loader
from .samples import Samples
from .sources import load_samples
from .split import fold_indices, split_indices

__all__ = ["Prepared", "prepare_data"]

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    train: object
    val: object
    samples: Samples
    train_index: np.ndarray
    val_index: np.ndarray
    skipped: dict[str, str]      # name -> reason
    cache_built: bool
    split_train: int             # images on the train side of the config's split (also in a full-data run)

    @property
    def split_record(self) -> dict:
        names = self.samples.names
        return {"train": [names[i] for i in self.train_index], "val": [names[i] for i in self.val_index],
                "skipped": self.skipped, **self.samples.meta.get("curated", {})}


def _sample_weights(samples: Samples, index: np.ndarray) -> np.ndarray:
    """Inverse class frequency (multi-label: mean over the sample's positive labels)."""
    y = samples.targets[index]
    if samples.multilabel:
        inv = 1.0 / np.maximum(y.sum(axis=0), 1)
        pos = y.sum(axis=1)
        return np.where(pos > 0, (y * inv).sum(axis=1) / np.maximum(pos, 1), inv.mean())
    counts = np.bincount(y, minlength=len(samples.classes))
    return 1.0 / np.maximum(counts[y], 1)


def prepare_data(cfg: RunConfig, device: torch.device, channels_last: bool, batch_size: int,
                 dtype: torch.dtype = torch.float32, full_data: bool = False) -> Prepared:
    """``dtype``: of the batches the loaders yield (``Runtime.input_dtype``). ``full_data``: every image trains
    and there is no val loader (``val`` is None)."""
    d = cfg.data
    samples = load_samples(d)
    dec = decode_cached(samples, d, d.cache_dir)
    skipped = {samples.names[i]: why for i, why in dec.bad.items()}
    if skipped:
        listed = unreadable_text(skipped, len(samples), dec.path.with_suffix(".unreadable.txt"))
        if d.on_bad_image == "fail":
            raise DataError(f"{listed}; fix or remove {'it' if len(skipped) == 1 else 'them'}, or set "
                            "data.on_bad_image: skip")
        log.warning("skipped (data.on_bad_image: skip): %s", listed)
    good = np.asarray([i for i in range(len(samples)) if i not in dec.bad], dtype=np.int64)
    groups = samples.groups[good] if samples.groups is not None else None
    if d.folds is not None:
        tr, va = fold_indices(samples.targets[good], groups, d.folds, d.fold, d.split_seed, samples.multilabel,
                              samples.classes)
    else:
        tr, va = split_indices(samples.targets[good], groups, d.val_fraction, d.split_seed, samples.multilabel)
    split_train = len(tr)  # what the validated run trains on; a full-data retrain keeps that run's batch size
    if full_data:
        tr, va = np.arange(len(good)), np.arange(0)
    tr, va = good[tr], good[va]
    weights = _sample_weights(samples, tr) if d.weighted_sampler else None
    common = dict(spec=None, mean=cfg.augment.mean, std=cfg.augment.std, device=device,
                  channels_last=channels_last, seed=cfg.seed, num_workers=d.num_workers, dtype=dtype,
                  ring=HostRing(pin=device.type == "cuda"))  # train and val take turns on one set of buffers
    train = make_loader(dec.images, tr, samples.targets, batch_size=batch_size, shuffle=True, weights=weights,
                        **{**common, "spec": cfg.augment.train})
    mean, std = eval_normalization(cfg.augment)  # predict normalizes its images the same way
    val = None if full_data else make_loader(dec.images, va, samples.targets, batch_size=batch_size,
                                             shuffle=False, **{**common, "spec": cfg.augment.eval, "mean": mean,
                                                               "std": std})
    return Prepared(train, val, samples, tr, va, skipped, dec.built, split_train)
