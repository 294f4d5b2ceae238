"""Mixup and CutMix on whole batches, on the training device (``augment.mix``).

A mixed batch pairs each image with the batch's reverse (``x.flip(0)``, as timm's batch mode does): mixup blends
the two images by ``lam``, CutMix pastes a box of the partner whose area is ``1 - lam`` (as timm's ``rand_bbox``:
centred anywhere, clipped to the image, ``lam`` corrected to the area pasted). The targets mix by
the same ``lam``: one-hot rows for single-label data, the multi-hot rows themselves for multi-label data, so the
loss gets soft targets (training/losses.py takes them in ce, focal, bce and soft_margin; label smoothing composes).

``lam`` and the choice of mixup or CutMix come from a generator seeded by (run seed, epoch): a resumed run mixes
its remaining epochs exactly as the uninterrupted run would.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import MixConfig

__all__ = ["BatchMix", "build_mix"]


class BatchMix:
    """``(x, y) -> (x, soft targets)`` for a batch; a batch left unmixed (``prob``) keeps its hard targets."""

    def __init__(self, spec: MixConfig, num_classes: int, multilabel: bool, seed: int) -> None:
        self.spec, self.num_classes, self.multilabel, self.seed = spec, num_classes, multilabel, seed
        self.rng = np.random.default_rng([seed, 0])

    def start_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, epoch])

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.spec
        if self.rng.random() >= s.prob:
            return x, y
        cutmix = s.name == "cutmix" or (s.name == "both" and self.rng.random() < s.switch_prob)
        lam = float(self.rng.beta(*(2 * [s.cutmix_alpha if cutmix else s.mixup_alpha])))
        partner = x.flip(0)
        if cutmix:
            (y0, y1, x0, x1), lam = self._box(x.shape[-2:], lam)
            x = x.clone()
            x[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
        else:
            x = x * lam + partner * (1.0 - lam)
        t = y.float() if self.multilabel else F.one_hot(y, self.num_classes).float()
        return x, t * lam + t.flip(0) * (1.0 - lam)

    def _box(self, hw: torch.Size, lam: float) -> tuple[tuple[int, int, int, int], float]:
        h, w = hw
        cut = np.sqrt(1.0 - lam)
        cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
        y0, y1 = np.clip([cy - int(h * cut) // 2, cy + int(h * cut) // 2], 0, h)
        x0, x1 = np.clip([cx - int(w * cut) // 2, cx + int(w * cut) // 2], 0, w)
        return (int(y0), int(y1), int(x0), int(x1)), 1.0 - float((y1 - y0) * (x1 - x0)) / (h * w)


def build_mix(spec: MixConfig, num_classes: int, multilabel: bool, seed: int) -> BatchMix | None:
    return None if spec.name == "none" else BatchMix(spec, num_classes, multilabel, seed)
