"""What every data source produces: items to decode, targets, optional groups, class names."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Samples", "fingerprint_files"]


@dataclass
class Samples:
    """``load(i)`` returns item i as an RGB uint8 array (any size); ``key`` identifies the content."""

    names: list[str]                      # file path or synthetic id, for messages
    load: Callable[[int], np.ndarray]
    targets: np.ndarray                   # int64 [N] or float32 [N, C] when multilabel
    classes: list[str]
    key: str
    groups: np.ndarray | None = None
    multilabel: bool = False
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def class_counts(self) -> np.ndarray:
        if self.multilabel:
            return self.targets.sum(axis=0).astype(np.int64)
        return np.bincount(self.targets, minlength=len(self.classes))


def fingerprint_files(paths: list[str], extra: str) -> str:
    """Content identity for the decode cache: path, size and mtime of every file (cheap, no reads)."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:  # missing: decoding records it as bad, and on_bad_image decides
            h.update(f"{Path(p).resolve()}|missing\n".encode())
    return h.hexdigest()[:24]
