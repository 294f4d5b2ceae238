"""Augmentation pipelines, written in albumentations' own serialized form (``A.to_dict``).

Two places run them, with the same meaning:
* **tensor path** (GPU when there is one): when every op of a pipeline is in :data:`TENSOR_OPS`, it runs on
  whole batches on the training device (``augment_ops.py``);
* **CPU path**: anything else runs per image through albumentations itself, in DataLoader workers.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import albumentations as A

from . import augment_ops
from .augment_ops import TENSOR_OPS
from .errors import one_line

log = logging.getLogger(__name__)

__all__ = ["parse_pipeline", "build_compose", "tensor_plan", "pipeline_normalization", "eval_normalization",
           "TENSOR_OPS"]


def _with_p(t: Any) -> Any:
    """A transform written without ``p`` gets its class's own default (Normalize: 1.0, HorizontalFlip: 0.5);
    albumentations' from_dict would silently use 0.5 for all of them."""
    if not isinstance(t, dict) or "p" in t or not isinstance(t.get("__class_fullname__"), str):
        return t
    cls = getattr(A, t["__class_fullname__"].rsplit(".", 1)[-1], None)
    try:
        p = inspect.signature(cls).parameters["p"].default if cls else None
    except (TypeError, ValueError, KeyError):
        p = None
    return {**t, "p": p} if isinstance(p, (int, float)) else t


def _as_dict(spec: Any) -> dict:
    """Accept the full ``A.to_dict`` output, its inner ``transform`` dict, or a bare list of transforms."""
    if isinstance(spec, list):
        return {"transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [_with_p(t) for t in spec]}}
    if isinstance(spec, dict) and isinstance(spec.get("transform"), dict):
        inner = spec["transform"]
        if isinstance(inner.get("transforms"), list):
            inner = {**inner, "transforms": [_with_p(t) for t in inner["transforms"]]}
        return {**spec, "transform": inner}
    if isinstance(spec, dict) and "__class_fullname__" in spec:
        if spec["__class_fullname__"] not in ("Compose", "albumentations.core.composition.Compose"):
            return _as_dict([spec])
        return {"transform": spec}
    raise ValueError("an augmentation pipeline is a list of transforms or albumentations' serialized form "
                     "({'transform': {'__class_fullname__': 'Compose', 'transforms': [...]}})")


def build_compose(spec: Any) -> A.Compose:
    d = _as_dict(spec)
    try:
        return A.from_dict(d)
    except Exception as e:  # albumentations raises many types for bad names/args
        raise ValueError(f"albumentations cannot build it: {one_line(e)}") from None


def parse_pipeline(spec: Any) -> A.Compose:
    """Validate a pipeline; raises ValueError naming the problem."""
    return build_compose(spec)


def tensor_plan(spec: Any) -> list[tuple[str, dict]] | None:
    """[(op, args)] when every transform of the pipeline has a tensor implementation, else None (CPU path)."""
    if spec is None:
        return []
    compose = build_compose(spec)
    d = A.to_dict(compose)["transform"]
    plan = []
    for t in d["transforms"]:
        name = t["__class_fullname__"].rsplit(".", 1)[-1]
        op = TENSOR_OPS.get_or_none(name)
        if op is None or not augment_ops.supports(name, t):
            return None
        plan.append((name, t))
    return plan


def pipeline_normalization(spec: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) on [0, 1] pixels of the pipeline's always-applied standard Normalize (at the top level or
    inside an always-applied Sequential), or None: the normalization val images must get when the eval
    pipeline has none of its own."""
    if spec is None:
        return None
    return _normalization(A.to_dict(build_compose(spec))["transform"]["transforms"])


def eval_normalization(augment) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for images of the eval path (``augment``: an AugmentConfig): validation and prediction alike.
    An eval pipeline with a Normalize of its own applies it (the loader then skips this); without one, eval
    images are normalized as training was: by the train pipeline's Normalize when it has one (e.g.
    mean = std = 0.5), else by augment.mean/std."""
    return pipeline_normalization(augment.train) or (augment.mean, augment.std)


def _normalization(transforms: list[dict]) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    for t in transforms:
        name = t["__class_fullname__"].rsplit(".", 1)[-1]
        if t.get("p", 1.0) < 1.0:
            continue
        if name in ("Sequential", "Compose") and isinstance(t.get("transforms"), list):
            if (found := _normalization(t["transforms"])) is not None:
                return found
            continue
        if name != "Normalize":
            continue
        if t.get("normalization", "standard") != "standard":
            log.warning("the train pipeline's Normalize uses normalization=%r, which val (no Normalize of its "
                        "own) cannot repeat: add the same Normalize to augment.eval", t["normalization"])
            return None
        return augment_ops.normalize_stats(t)
    return None
