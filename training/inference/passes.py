"""Every run's class probabilities for every input image, through each run's own eval path.

Each image file is read once, whatever the number of runs and TTA passes: a chunk of files is decoded in a
thread pool (the next chunk while the models work on this one), each decoded image is fitted once per distinct
run geometry (``fit_image``: the decode cache's crop and resize), and the mirror image of TTA is the fitted array
flipped, never the file read again. Batches then go through the same loader as validation (``make_loader`` with
``augment.eval`` and ``eval_normalization``), so a run predicts its own val images exactly as it validated them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..augment import eval_normalization
from ..data.images import fit_image, read_rgb, unreadable_text
from ..data.loader import HostRing, make_loader
from ..errors import DataError, one_line
from ..runtime import Runtime
from .runs import Run

__all__ = ["run_probabilities", "TTA", "CHUNK"]

log = logging.getLogger(__name__)
TTA = ("hflip",)
CHUNK = 1024  # images decoded and fitted at a time: bounded host memory for any number of test images


def _prepare(path: Path, geometries: dict[tuple, object]) -> dict[tuple, np.ndarray]:
    """One file, read once, as each geometry's fitted uint8 HxWx3 image."""
    try:
        img = read_rgb(path)
    except (OSError, ValueError) as e:  # unreadable, truncated, empty (as the decode cache sees them)
        raise _Unreadable(path) from e
    try:
        return {g: fit_image(img, data_cfg) for g, data_cfg in geometries.items()}
    except DataError as e:  # e.g. smaller than data.center_crop: the message lacks the file
        raise DataError(f"{path}: {e}") from None


class _Unreadable(Exception):
    """A file that cannot be read: the whole input is then checked, so that the error names every such file."""


def _unreadable(paths: list[Path], pool: ThreadPoolExecutor, list_file: Path) -> DataError:
    def check(path: Path) -> str | None:
        try:
            read_rgb(path)
            return None
        except (OSError, ValueError) as e:
            return one_line(e, with_type=False)

    bad = {str(p): why for p, why in zip(paths, pool.map(check, paths)) if why is not None}
    return DataError(f"{unreadable_text(bad, len(paths), list_file)}; a prediction needs every image: replace or "
                     f"remove {'the file' if len(bad) == 1 else 'them'}")


def _chunks(paths: list[Path], prepare: Callable[[Path], dict], pool: ThreadPoolExecutor) -> Iterator[dict]:
    """Per chunk: geometry -> [n, H, W, 3] uint8. The next chunk decodes while the caller works on this one; a
    file that cannot be read raises here, the first one in input order."""
    def collect(futures: list[Future]) -> dict:
        rows = [f.result() for f in futures]
        return {g: np.stack([r[g] for r in rows]) for g in rows[0]}

    pending: list[Future] | None = None
    for start in range(0, len(paths), CHUNK):
        futures = [pool.submit(prepare, p) for p in paths[start:start + CHUNK]]
        if pending is not None:
            yield collect(pending)
        pending = futures
    if pending:
        yield collect(pending)


@torch.no_grad()
def _forward(model: nn.Module, images: np.ndarray, run: Run, rt: Runtime, batch_size: int,
             ring: HostRing) -> np.ndarray:
    """[n, C] probabilities (softmax; sigmoid for multi-label) of uint8 ``images`` on the run's eval path."""
    mean, std = eval_normalization(run.cfg.augment)
    loader = make_loader(images, np.arange(len(images)), np.zeros(len(images), np.int64), batch_size=batch_size,
                         spec=run.cfg.augment.eval, mean=mean, std=std, device=rt.device,
                         channels_last=rt.channels_last, shuffle=False, seed=run.cfg.seed,
                         num_workers=run.cfg.data.num_workers, ring=ring, dtype=rt.input_dtype)
    out = []
    for x, _ in loader:  # in input order; read back once per chunk
        with rt.autocast():
            logits = model(x).float()
        out.append(torch.sigmoid(logits) if run.multilabel else torch.softmax(logits, dim=1))
    return torch.cat(out).cpu().numpy()


def _checked(chunks: Iterator[dict], paths: list[Path], pool: ThreadPoolExecutor, list_file: Path) -> Iterator[dict]:
    try:
        yield from chunks
    except _Unreadable:
        raise _unreadable(paths, pool, list_file) from None


def run_probabilities(paths: list[Path], runs: list[Run], models: list[nn.Module], runtimes: list[Runtime],
                      batch_sizes: list[int], tta: str | None = None,
                      unreadable_list: Path | None = None) -> list[np.ndarray]:
    """Each run's [N, C] float32 probabilities for ``paths``; with ``tta="hflip"``, the mean of each image's
    and its mirror image's. An unreadable file stops it with an error naming every unreadable file (more than
    a few: listed in ``unreadable_list``, default a file in the temporary folder)."""
    unreadable_list = unreadable_list or Path(tempfile.gettempdir()) / "imgsearch-unreadable.txt"
    if tta is not None and tta not in TTA:
        raise ValueError(f"unknown TTA {tta!r}")
    geometries = {r.geometry: r.cfg.data for r in runs}
    ring = HostRing(pin=any(rt.device.type == "cuda" for rt in runtimes))  # the passes take turns on its buffers
    per_run: list[list[np.ndarray]] = [[] for _ in runs]
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        chunks = _chunks(paths, lambda p: _prepare(p, geometries), pool)
        for fitted in _checked(chunks, paths, pool, unreadable_list):
            mirrored = {g: np.ascontiguousarray(a[:, :, ::-1]) for g, a in fitted.items()} if tta else {}
            for k, (run, model, rt, bs) in enumerate(zip(runs, models, runtimes, batch_sizes)):
                p = _forward(model, fitted[run.geometry], run, rt, bs, ring)
                if tta == "hflip":
                    p = (p + _forward(model, mirrored[run.geometry], run, rt, bs, ring)) / 2
                per_run[k].append(p)
            log.info("predicted %d/%d images", sum(len(p) for p in per_run[0]), len(paths))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [np.concatenate(p).astype(np.float32, copy=False) for p in per_run]
