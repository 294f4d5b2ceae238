"""A training step never makes the host wait for the GPU. The device-side augmentation only enqueues kernels,
and the train and eval loops read nothing back until the epoch ends. A device-to-host read (nonzero(), item(),
bool() of a device tensor), or a tensor made from Python data or host indices (a blocking host-to-device copy),
stalls the host until the GPU has drained its queue. Once per batch, that is a cost the model-only throughput
limit never pays.

Without a GPU: the augmentation runs on the meta device, where every device read fails, under a torch function
mode that flags tensors made from Python data on the device, host tensors or lists mixed into device ops, and
blocking copies to the device; the loops are checked by counting read-backs, which must not grow with the
number of batches. On a GPU (`bash benchmarks/device.sh smoke`), CUDA's own sync debug mode checks the same."""

from __future__ import annotations

import warnings

import albumentations as A
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from training import augment_ops
from training.augment import tensor_plan
from training.augment_ops import TENSOR_OPS
from training.data.loader import make_loader
from training.loop import evaluate, train_one_epoch
from training.runtime import Runtime

META = torch.device("meta")
FACTORIES = {"tensor", "as_tensor", "asarray", "new_tensor"}


def every_op(p: float) -> dict:
    return A.to_dict(A.Compose([
        A.HorizontalFlip(p=p), A.VerticalFlip(p=p), A.Affine(rotate=(-10, 10), scale=(0.9, 1.1), p=p),
        A.ShiftScaleRotate(p=p), A.RandomBrightnessContrast(p=p),
        A.RandomBrightnessContrast(brightness_by_max=False, p=p),
        A.HueSaturationValue(p=p), A.ColorJitter(p=p), A.GaussNoise(p=p), A.CoarseDropout(p=p), A.Normalize(p=p),
    ]))


def _flat(v):
    if isinstance(v, (list, tuple)):
        for x in v:
            yield from _flat(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _flat(x)
    else:
        yield v


class HostSyncs(TorchFunctionMode):
    """Records the calls that would block the host on a GPU (device reads fail on meta by themselves)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        out = func(*args, **kwargs)
        ins = [t for t in _flat((args, kwargs)) if isinstance(t, torch.Tensor)]
        outs = [t for t in _flat(out) if isinstance(t, torch.Tensor)]
        on_device = any(t.device == META for t in ins + outs)
        if name in FACTORIES and any(t.device == META for t in outs):
            self.found.append(f"{name}(...) on the device: a tensor made from Python data")
        elif name in ("to", "cuda", "copy_"):
            src = args[1] if name == "copy_" else args[0]
            blocking = not (kwargs.get("non_blocking") or (name == "copy_" and len(args) > 2 and args[2]))
            if src.device.type == "cpu" and any(t.device == META for t in outs) and blocking:
                self.found.append(f"Tensor.{name}: a blocking copy to the device")
        elif on_device and any(t.device.type == "cpu" and t.dim() > 0 for t in ins):
            self.found.append(f"{name}: a host tensor in a device op (copied to the device, blocking)")
        elif on_device and name in ("__getitem__", "__setitem__") and any(isinstance(a, list) for a in args[1:2]):
            self.found.append(f"{name} with a list index (copied to the device, blocking)")
        return out


def test_the_checker_catches_what_it_looks_for():
    x = torch.empty(4, device=META)
    with HostSyncs() as rec:
        torch.tensor([0.5, 0.5], device=META)
        x.new_tensor([1.0])
        torch.asarray([1.0], device=META)
        torch.ones(2).to(META)
        torch.empty(2, device=META).copy_(torch.ones(2))
        x[torch.tensor([0, 2])]
        x[[0, 2]]
        x.index_select(0, torch.tensor([1]))
        # allowed: an asynchronous copy (from page-locked memory on CUDA), a 0-dim host scalar, Python scalars
        torch.ones(2).to(META, non_blocking=True)
        x * torch.tensor(2.0)
        torch.where(x > 0, x, 1.0)
    assert len(rec.found) == 8, rec.found
    with pytest.raises((RuntimeError, NotImplementedError)):
        (x > 0).nonzero()
    with pytest.raises(RuntimeError):
        bool(x.sum() > 0)


@pytest.mark.parametrize("p", [0.5, 1.0, 0.0])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
def test_device_augmentation_never_blocks_the_host(p, dtype):
    loader = make_loader(np.zeros((16, 24, 24, 3), np.uint8), np.arange(16), np.zeros(16, np.int64), batch_size=8,
                         spec=every_op(p), mean=(0.5,) * 3, std=(0.25,) * 3, device=META, channels_last=True,
                         shuffle=True, dtype=dtype)
    x = torch.empty((8, 24, 24, 3), dtype=torch.uint8, device=META)
    loader.augment(x)  # the first batch may make the pipeline's constants
    torch.manual_seed(0)
    with HostSyncs() as rec:
        outs = [loader.augment(x) for _ in range(6)]  # p=0.5: subsets of many sizes; p=1 and p=0: all and none
    assert rec.found == []
    assert all(o.shape == (8, 3, 24, 24) and o.dtype == dtype and o.is_contiguous(memory_format=torch.channels_last)
               for o in outs)


@pytest.mark.parametrize("name", TENSOR_OPS.names())
def test_every_op_keeps_the_batch_dtype(name):
    """fp16 in, fp16 out: a float32 parameter that slipped in would promote the rest of the pipeline to fp32."""
    ((op_name, args),) = tensor_plan([{"__class_fullname__": name, "p": 1.0}])  # the op's defaults, always applied
    x = torch.empty((8, 3, 24, 24), dtype=torch.float16, device=META)
    assert TENSOR_OPS.get_or_none(op_name)(x, args).dtype == torch.float16


class ReadBacks(TorchFunctionMode):
    """Counts the calls that bring a value back to the host."""

    NAMES = {"cpu", "numpy", "tolist", "item", "__float__", "__int__", "__bool__", "__index__"}

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += getattr(func, "__name__", "") in self.NAMES
        return func(*args, **(kwargs or {}))


def _reads(n_batches: int) -> tuple[int, int]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4,))) for _ in range(n_batches)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    rt = Runtime(torch.device("cpu"), None, False)
    with ReadBacks() as train_reads:
        loss, n, bad = train_one_epoch(model, batches, torch.nn.CrossEntropyLoss(), opt, sched, rt, None)
    assert n == 4 * n_batches and np.isfinite(loss) and bad is None
    with ReadBacks() as eval_reads:
        scores, targets, val_loss = evaluate(model, batches, torch.nn.CrossEntropyLoss(), rt)
    assert scores.shape == (4 * n_batches, 3) and len(targets) == 4 * n_batches and np.isfinite(val_loss)
    return train_reads.n, eval_reads.n


def test_train_and_eval_loops_read_back_per_epoch_not_per_batch():
    two, seven = _reads(2), _reads(7)
    assert two == seven, f"read-backs (train, eval) grow with the batches: {two} for 2, {seven} for 7"
    assert seven[0] >= 1 and seven[1] >= 1  # the epoch's loss and scores do come back, once


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode needs a GPU")


@cuda
def test_on_cuda_augmentation_and_train_steps_never_synchronize():
    dev = torch.device("cuda")
    loader = make_loader(np.zeros((64, 64, 64, 3), np.uint8), np.arange(64), np.zeros(64, np.int64), batch_size=32,
                         spec=every_op(0.5), mean=(0.5,) * 3, std=(0.25,) * 3, device=dev, channels_last=True,
                         shuffle=True, dtype=torch.float16)
    x = torch.randint(0, 256, (32, 64, 64, 3), dtype=torch.uint8, device=dev)
    assert augment_ops._host_index(torch.rand(32) < 0.5, x).is_pinned()
    loader.augment(x)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = [(loader.augment(x), torch.randint(0, 3, (32,), device=dev)) for _ in range(6)]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 3)).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    rt = Runtime(dev, torch.bfloat16, True)
    loss_fn = torch.nn.CrossEntropyLoss()
    train_one_epoch(model, batches, loss_fn, opt, sched, rt, None)  # warm-up: cudnn autotuning, lazy state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            train_one_epoch(model, batches, loss_fn, opt, sched, rt, None)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message) for w in seen if "synchroniz" in str(w.message).lower()]
    assert len(syncs) == 1, syncs  # the epoch's mean loss, read once at the end
