"""Batches from the decoded uint8 cache: the tensor path augments whole batches on the device; the CPU path
runs albumentations per image in DataLoader workers."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..augment import build_compose, tensor_plan
from ..augment_ops import apply_plan

__all__ = ["make_loader", "TensorBatches", "AlbumentationsBatches"]


def _order(n: int, shuffle: bool, weights: np.ndarray | None, gen: torch.Generator) -> torch.Tensor:
    if weights is not None:
        return torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), n, replacement=True, generator=gen)
    return torch.randperm(n, generator=gen) if shuffle else torch.arange(n)


class _Normalizer:
    def __init__(self, mean, std, device: torch.device, channels_last: bool) -> None:
        self.mean = torch.tensor(mean, device=device)[None, :, None, None]
        self.std = torch.tensor(std, device=device)[None, :, None, None]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor, done: bool) -> torch.Tensor:
        x = x if done else (x - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)


class TensorBatches:
    """Gathers uint8 batches from the (memory-mapped) cache in a background thread, augments on the device."""

    def __init__(self, images: np.ndarray, index: np.ndarray, targets: np.ndarray, batch_size: int,
                 plan: list, norm: _Normalizer, device: torch.device, shuffle: bool,
                 weights: np.ndarray | None, seed: int) -> None:
        self.images, self.index, self.targets = images, index, torch.as_tensor(targets)
        self.batch_size, self.plan, self.norm, self.device = batch_size, plan, norm, device
        self.shuffle, self.weights, self.seed, self.epoch = shuffle, weights, seed, 0

    def __len__(self) -> int:
        return (len(self.index) + self.batch_size - 1) // self.batch_size

    def _gather(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = self.index[_order(len(self.index), self.shuffle, self.weights, gen).numpy()]
        pin = self.device.type == "cuda"
        for s in range(0, len(order), self.batch_size):
            idx = np.sort(order[s:s + self.batch_size])  # sorted: sequential reads from the memory map
            x = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
            y = self.targets[idx]
            yield (x.pin_memory() if pin else x), y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.epoch += 1
        for x, y in _uploaded(_prefetch(self._gather()), self.device):
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x, done = apply_plan(x, self.plan)
            yield self.norm(x, done), y


def _uploaded(batches: Iterator, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Host-to-device copies on a side stream, one batch ahead, so they overlap the previous training step."""
    if device.type != "cuda":
        yield from batches
        return
    copy_stream = torch.cuda.Stream(device)
    compute = torch.cuda.current_stream(device)

    def upload(batch):
        with torch.cuda.stream(copy_stream):
            xg, yg = (t.to(device, non_blocking=True) for t in batch)
            done = torch.cuda.Event()
            done.record(copy_stream)
        return xg, yg, done, batch  # keep the pinned host tensors alive until the copy is done

    pending = None
    for batch in batches:
        nxt = upload(batch)
        if pending is not None:
            yield _ready(pending, compute)
        pending = nxt
    if pending is not None:
        yield _ready(pending, compute)


def _ready(pending, compute) -> tuple[torch.Tensor, torch.Tensor]:
    xg, yg, done, _host = pending
    compute.wait_event(done)
    xg.record_stream(compute)  # the allocator must not reuse them while compute reads them
    yg.record_stream(compute)
    return xg, yg


def _prefetch(it: Iterator, depth: int = 3) -> Iterator:
    """Run a producer in a thread so reading the cache overlaps the training step."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def run() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as e:  # surfaced in the consumer
            q.put(e)
        q.put(end)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)


class _AlbuDataset(Dataset):
    def __init__(self, images: np.ndarray, index: np.ndarray, targets: np.ndarray, spec) -> None:
        self.images, self.index, self.targets, self.spec = images, index, targets, spec
        self.compose = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        if self.compose is None:  # built lazily, one per worker process, seeded from the loader's generator
            self.compose = build_compose(self.spec)
            self.compose.set_random_seed(torch.initial_seed() % 2**32)
        img = self.compose(image=np.array(self.images[self.index[i]]))["image"]  # a writable copy
        done = img.dtype != np.uint8
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return (x.float() if done else x.float().div_(255.0)), self.targets[self.index[i]], done


class AlbumentationsBatches:
    """The CPU path: albumentations per image in DataLoader workers, for ops without a tensor version."""

    def __init__(self, images: np.ndarray, index: np.ndarray, targets: np.ndarray, batch_size: int, spec,
                 norm: _Normalizer, device: torch.device, shuffle: bool, weights: np.ndarray | None,
                 seed: int, num_workers: int) -> None:
        self.ds = _AlbuDataset(images, index, targets, spec)
        self.batch_size, self.norm, self.device, self.num_workers = batch_size, norm, device, num_workers
        self.shuffle, self.weights, self.seed, self.epoch = shuffle, weights, seed, 0

    def __len__(self) -> int:
        return (len(self.ds) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        self.epoch += 1
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = _order(len(self.ds), self.shuffle, self.weights, gen).tolist()
        dl = DataLoader(self.ds, batch_size=self.batch_size, sampler=order, num_workers=self.num_workers,
                        pin_memory=self.device.type == "cuda", persistent_workers=False,
                        worker_init_fn=_seed_worker, generator=gen)
        for x, y, done in dl:
            x = x.to(self.device, non_blocking=True)
            yield self.norm(x, bool(done[0])), y.to(self.device, non_blocking=True)


def _seed_worker(worker_id: int) -> None:
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(images: np.ndarray, index: np.ndarray, targets: np.ndarray, *, batch_size: int, spec,
                mean, std, device: torch.device, channels_last: bool, shuffle: bool,
                weights: np.ndarray | None = None, seed: int = 0, num_workers: int = 0):
    norm = _Normalizer(mean, std, device, channels_last)
    plan = tensor_plan(spec)
    if plan is not None:
        return TensorBatches(images, index, targets, batch_size, plan, norm, device, shuffle, weights, seed)
    return AlbumentationsBatches(images, index, targets, batch_size, spec, norm, device, shuffle, weights,
                                 seed, num_workers)
