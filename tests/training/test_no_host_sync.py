"""A training step never makes the host wait for the GPU. The device-side augmentation only enqueues kernels,
and the train and eval loops read nothing back until the epoch ends. A device-to-host read (nonzero(), item(),
bool() of a device tensor), or a tensor made from Python data (a blocking host-to-device copy), stalls the host
until the GPU has drained its queue. Once per batch, that is a cost the model-only throughput limit never pays.

The augmentation is checked on the meta device, where every device read fails, under a torch function mode
that flags tensors made from Python data on the device and blocking copies to it. The loops are checked on the CPU by
counting scalar reads."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from training.data.loader import make_loader
from training.loop import evaluate, train_one_epoch
from training.runtime import Runtime

META = torch.device("meta")
aten = torch.ops.aten


def every_op(p: float) -> dict:
    return A.to_dict(A.Compose([
        A.HorizontalFlip(p=p), A.VerticalFlip(p=p), A.Affine(rotate=(-10, 10), scale=(0.9, 1.1), p=p),
        A.ShiftScaleRotate(p=p), A.RandomBrightnessContrast(p=p), A.RandomBrightnessContrast(brightness_by_max=False, p=p),
        A.HueSaturationValue(p=p), A.ColorJitter(p=p), A.GaussNoise(p=p), A.CoarseDropout(p=p), A.Normalize(p=p),
    ]))


class HostSyncs(TorchFunctionMode):
    """Records the calls that would block the host on a GPU: tensors made from Python data on the device and
    blocking copies from the host to the device (device reads fail on meta by themselves)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name in ("tensor", "as_tensor") and isinstance(out, torch.Tensor) and out.device == META:
            self.found.append(f"torch.{name}(..., device=meta): a tensor made from Python data")
        if name in ("to", "cuda", "copy_") and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            src = args[1] if name == "copy_" else args[0]
            blocking = not (kwargs.get("non_blocking") or (name == "copy_" and len(args) > 2 and args[2]))
            if src.device.type == "cpu" and out.device == META and blocking:
                self.found.append(f"Tensor.{name}: a blocking copy to the device")
        return out


def test_the_checker_catches_what_it_looks_for():
    x = torch.empty(4, device=META)
    with HostSyncs() as rec:
        torch.tensor([0.5, 0.5], device=META)
        torch.ones(2).to(META)
        torch.empty(2, device=META).copy_(torch.ones(2))
        torch.ones(2).to(META, non_blocking=True)  # the allowed kind (from page-locked memory on CUDA)
        torch.ones(2).to(torch.float16)
    assert len(rec.found) == 3, rec.found
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
        outs = [loader.augment(x) for _ in range(6)]  # p=0.5: subsets of every size, the empty and full one too
    assert rec.found == []
    assert all(o.shape == (8, 3, 24, 24) and o.dtype == dtype and o.is_contiguous(memory_format=torch.channels_last)
               for o in outs)


class ScalarReads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += func is aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def test_train_and_eval_loops_read_back_once_per_epoch_not_per_batch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4,))) for _ in range(7)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    rt = Runtime(torch.device("cpu"), None, False)
    with ScalarReads() as reads:
        loss, n = train_one_epoch(model, batches, torch.nn.CrossEntropyLoss(), opt, sched, rt, None)
    assert n == 28 and np.isfinite(loss) and reads.n == 1
    with ScalarReads() as reads:
        scores, targets, val_loss = evaluate(model, batches, torch.nn.CrossEntropyLoss(), rt)
    assert scores.shape == (28, 3) and len(targets) == 28 and np.isfinite(val_loss) and reads.n == 1
