"""Batches from the decoded uint8 cache: the tensor path augments whole batches on the device; the CPU path
runs albumentations per image in DataLoader workers."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from ..augment import build_compose, tensor_plan
from ..augment_ops import apply_plan

__all__ = ["make_loader", "HostRing", "TensorBatches", "AlbumentationsBatches"]


def _kept(n: int, batch_size: int, shuffle: bool) -> int:
    """Images a pass yields: a training (shuffled) pass drops a last batch of exactly one image, a different one
    each epoch. BatchNorm cannot train on one image once a network's feature map is 1x1 (32 px and below with
    resnet or efficientnet: "Expected more than 1 value per channel"), and one image's step is noise anyway."""
    return n - 1 if shuffle and n > 1 and n % batch_size == 1 else n


def _order(n: int, shuffle: bool, weights: np.ndarray | None, gen: torch.Generator) -> torch.Tensor:
    if weights is not None:
        return torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), n, replacement=True, generator=gen)
    return torch.randperm(n, generator=gen) if shuffle else torch.arange(n)


class _Normalizer:
    """The last stage of every loader: (x - mean) / std unless the pipeline normalized already, then the model's
    input dtype and memory format."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool, dtype: torch.dtype) -> None:
        mean = torch.tensor(mean, dtype=torch.float64)[None, :, None, None]
        std = torch.tensor(std, dtype=torch.float64)[None, :, None, None]
        # (x - mean) / std as one fused multiply-add, with constants in the batch's dtype (no promotion)
        self.scale, self.shift = ((1.0 / std).to(device, dtype), (-mean / std).to(device, dtype))
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor, done: bool) -> torch.Tensor:
        x = x.to(self.dtype)
        x = x if done else torch.addcmul(self.shift, x, self.scale)
        return x.contiguous(memory_format=self.memory_format)


class HostRing:
    """Reused host buffers for gathered uint8 batches, page-locked on CUDA: one copy per batch from the cache
    straight into memory the GPU can read, with no allocation and no second copy into pinned memory. A trial's
    train and val loaders share one ring (they never iterate at the same time; an overlapping iteration gets a
    private ring rather than a buffer still in use).

    Slot k is reused by batch k + len(ring). By then the consumer has taken batch k (at most ``depth`` batches
    wait in the prefetch queue, one is being gathered, one is held by the upload stage), so on CUDA its copy
    has been enqueued and recorded in ``events``; the producer waits on that event before overwriting. On the
    CPU the consumer converts each batch to float before taking the next, so no wait is needed."""

    def __init__(self, pin: bool, depth: int = 3) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.pin, self.depth, self.k, self.busy = pin, depth, 0, False
        self.slots: list[torch.Tensor | None] = [None] * (depth + 3)
        self.events: list = [None] * (depth + 3)

    def take(self, n: int, row_shape: tuple, capacity: int) -> tuple[torch.Tensor, int]:
        i = self.k % len(self.slots)
        self.k += 1
        if (ev := self.events[i]) is not None:
            ev.synchronize()  # the copy that last read this slot has finished
            self.events[i] = None
        buf = self.slots[i]
        if buf is None or buf.shape[1:] != row_shape or buf.shape[0] < n:
            buf = self.slots[i] = torch.empty((max(n, capacity), *row_shape), dtype=torch.uint8, pin_memory=self.pin)
        return buf[:n], i

    def release(self, i: int, event) -> None:
        self.events[i] = event

    @contextlib.contextmanager
    def claimed(self) -> Iterator[HostRing]:
        """This ring for one pass over a loader, or a private one if another pass still holds it."""
        if self.busy:
            yield HostRing(self.pin, self.depth)
            return
        self.busy, self.k = True, 0  # from slot 0: a short (val) pass touches only the first slots
        try:
            yield self
        finally:
            self.busy = False


class TensorBatches:
    """Gathers uint8 batches from the (memory-mapped) cache in a background thread into reused (pinned)
    buffers, uploads them on a side stream, augments on the device in ``norm.dtype`` (fp16 under CUDA autocast:
    half the memory traffic of fp32, and 11 significant bits against uint8's 8)."""

    def __init__(self, images: np.ndarray, index: np.ndarray, targets: np.ndarray, batch_size: int,
                 plan: list, norm: _Normalizer, device: torch.device, shuffle: bool,
                 weights: np.ndarray | None, seed: int, ring: HostRing | None = None) -> None:
        self.images, self.index, self.targets = images, index, torch.as_tensor(targets)
        self.batch_size, self.plan, self.norm, self.device = batch_size, plan, norm, device
        self.shuffle, self.weights, self.seed, self.epoch = shuffle, weights, seed, 0
        self.ring = ring or HostRing(pin=device.type == "cuda")
        if len(index) and not 0 <= int(index.min()) <= int(index.max()) < len(images):
            raise IndexError(f"sample index out of range for a cache of {len(images)} images")

    def __len__(self) -> int:
        return (_kept(len(self.index), self.batch_size, self.shuffle) + self.batch_size - 1) // self.batch_size

    def _gather(self, ring: HostRing) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = self.index[_order(len(self.index), self.shuffle, self.weights, gen).numpy()]
        order = order[:_kept(len(order), self.batch_size, self.shuffle)]
        rows, capacity = tuple(self.images.shape[1:]), min(self.batch_size, len(order))
        for s in range(0, len(order), self.batch_size):
            idx = np.sort(order[s:s + self.batch_size])  # sorted: sequential reads from the memory map
            x, slot = ring.take(len(idx), rows, capacity)
            # mode="clip" (indices are checked above): with the default "raise", numpy buffers `out` and copies
            # every batch twice, 3x slower on a 38 MB batch
            np.take(self.images, idx, axis=0, out=x.numpy(), mode="clip")
            y = self.targets[idx]
            yield x, (y.pin_memory() if ring.pin else y), slot

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """A uint8 NHWC batch on the device -> the model's input: augmented and normalized, in ``norm.dtype``."""
        x = x.permute(0, 3, 1, 2)
        x = torch.div(x, 255.0, out=torch.empty_like(x, dtype=self.norm.dtype))  # -> [0, 1], one kernel
        x, done = apply_plan(x, self.plan)
        return self.norm(x, done)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.epoch += 1
        with self.ring.claimed() as ring:
            for x, y in _uploaded(_prefetch(self._gather(ring), ring.depth), self.device, ring):
                yield self.augment(x), y


def _uploaded(batches: Iterator, device: torch.device, ring: HostRing) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Host-to-device copies on a side stream, one batch ahead, so they overlap the previous training step."""
    if device.type != "cuda":
        for x, y, _slot in batches:
            yield x, y
        return
    copy_stream = torch.cuda.Stream(device)
    compute = torch.cuda.current_stream(device)

    def upload(batch):
        x, y, slot = batch
        with torch.cuda.stream(copy_stream):
            xg, yg = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(copy_stream)
        ring.release(slot, done)  # the producer may overwrite the slot once this copy has finished
        return xg, yg, done

    pending = None
    for batch in batches:
        nxt = upload(batch)
        if pending is not None:
            yield _ready(pending, compute)
        pending = nxt
    if pending is not None:
        yield _ready(pending, compute)


def _ready(pending, compute) -> tuple[torch.Tensor, torch.Tensor]:
    xg, yg, done = pending
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
        self.compose, self.epoch_seed = None, 0

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        if self.compose is None:  # built lazily: once per epoch, in each worker process or in this one
            self.compose = build_compose(self.spec)
            # a worker's torch seed comes from the epoch's generator; without workers, the epoch seed itself:
            # either way the draws depend only on (seed, epoch), so a resumed run repeats them
            in_worker = get_worker_info() is not None
            self.compose.set_random_seed((torch.initial_seed() if in_worker else self.epoch_seed) % 2**32)
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
        return (_kept(len(self.ds), self.batch_size, self.shuffle) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        self.epoch += 1
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        self.ds.compose, self.ds.epoch_seed = None, self.seed * 1000 + self.epoch
        order = _order(len(self.ds), self.shuffle, self.weights, gen).tolist()
        order = order[:_kept(len(order), self.batch_size, self.shuffle)]
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
                weights: np.ndarray | None = None, seed: int = 0, num_workers: int = 0, ring: HostRing | None = None,
                dtype: torch.dtype = torch.float32):
    """``ring``: host buffers to share with the run's other loader (see HostRing); ``dtype``: of the batches
    it yields (``Runtime.input_dtype``)."""
    norm = _Normalizer(mean, std, device, channels_last, dtype)
    plan = tensor_plan(spec)
    if plan is not None:
        return TensorBatches(images, index, targets, batch_size, plan, norm, device, shuffle, weights, seed, ring)
    return AlbumentationsBatches(images, index, targets, batch_size, spec, norm, device, shuffle, weights,
                                 seed, num_workers)
