"""The tensor path's gather: batches come from reused host buffers (pinned on CUDA); every batch must still hold
exactly the images its labels name, across epochs, partial batches and a consumer slower than the producer (the
case where a buffer is reused while an earlier batch could still be in use)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from training.data.loader import HostRing, make_loader

CPU = torch.device("cpu")


def _images(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _loader(images: np.ndarray, batch: int, device=CPU, ring: HostRing | None = None, index=None, seed: int = 3):
    index = np.arange(len(images)) if index is None else index
    return make_loader(images, index, np.arange(len(images)), batch_size=batch, spec=None, mean=(0, 0, 0),
                       std=(1, 1, 1), device=device, channels_last=False, shuffle=True, seed=seed, ring=ring)


def _exact(images: np.ndarray, x: torch.Tensor, y: torch.Tensor) -> bool:
    """x holds exactly the uint8 images y names (back in uint8 levels: a GPU divides by 255 as a multiply by
    1/255, which may differ from the CPU's division in the last bit)."""
    want = torch.from_numpy(images[y.cpu().numpy()]).permute(0, 3, 1, 2)
    return torch.equal((x.cpu().double() * 255).round().to(torch.uint8), want)


def _check_epochs(images: np.ndarray, batch: int, epochs: int, slow: bool, device=CPU,
                  ring: HostRing | None = None) -> int:
    n = len(images)
    ld = _loader(images, batch, device, ring)
    seen = 0
    for _ in range(epochs):
        ids = []
        for k, (x, y) in enumerate(ld):
            if slow and k % 2 == 0:
                time.sleep(0.01)  # let the producer run ahead and fill every buffer of the ring
            assert _exact(images, x, y), f"batch {k}: pixels do not belong to the labelled images"
            ids += y.tolist()
        assert sorted(ids) == list(range(n))  # each image exactly once per epoch
        seen += len(ids)
    return seen


@pytest.mark.parametrize("slow", [False, True], ids=["fast-consumer", "slow-consumer"])
def test_batches_hold_exactly_their_images_across_epochs(slow):
    assert _check_epochs(_images(203, 12), batch=16, epochs=3, slow=slow) == 3 * 203  # 203 = 12 x 16 + 11


def test_depth_one_ring_and_a_shared_ring_stay_exact():
    images = _images(203, 12)
    assert _check_epochs(images, batch=16, epochs=2, slow=True, ring=HostRing(pin=False, depth=1)) == 2 * 203
    with pytest.raises(ValueError, match="depth"):
        HostRing(pin=False, depth=0)


def test_train_and_val_share_one_ring_taking_turns():
    images = _images(120, 10)
    ring = HostRing(pin=False)
    train = _loader(images, 16, ring=ring, index=np.arange(100))
    val = _loader(images, 16, ring=ring, index=np.arange(100, 120))
    for _ in range(2):
        for x, y in train:
            assert _exact(images, x, y)
        for x, y in val:
            assert _exact(images, x, y) and y.min() >= 100
    assert sum(b is not None for b in ring.slots) == len(ring.slots)  # one set of buffers for both
    assert all(b.shape[0] == 16 for b in ring.slots)


def test_breaking_off_an_epoch_and_overlapping_passes_stay_exact():
    """A pass abandoned midway, then a new one; and two passes open at once (the second gets its own
    buffers instead of ones the first still uses)."""
    images = _images(150, 10)
    ld = _loader(images, 8)
    for k, (x, y) in enumerate(ld):
        assert _exact(images, x, y)
        if k == 3:
            break
    a, b = iter(ld), iter(ld)
    for (xa, ya), (xb, yb) in zip(a, b):
        time.sleep(0.002)
        assert _exact(images, xa, ya) and _exact(images, xb, yb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the pinned-buffer + copy-event path needs a GPU")
def test_pinned_ring_with_copy_events_on_cuda():
    images = _images(517, 32)
    assert _check_epochs(images, batch=64, epochs=3, slow=True, device=torch.device("cuda")) == 3 * 517


def test_an_index_outside_the_cache_is_refused():
    with pytest.raises(IndexError, match="out of range"):
        make_loader(_images(10, 8), np.arange(11), np.arange(11), batch_size=4, spec=None, mean=(0, 0, 0),
                    std=(1, 1, 1), device=CPU, channels_last=False, shuffle=False)


def test_order_depends_only_on_seed_and_epoch():
    """Resume and retrain rely on it: a fresh loader with the same seed replays the same batches."""
    images = _images(64, 8)

    def epochs(seed: int) -> list[list[int]]:
        ld = make_loader(images, np.arange(64), np.arange(64), batch_size=8, spec=None, mean=(0, 0, 0),
                         std=(1, 1, 1), device=CPU, channels_last=False, shuffle=True, seed=seed)
        return [[i for _, y in ld for i in y.tolist()] for _ in range(2)]

    first = epochs(5)
    assert first == epochs(5) and first != epochs(6)
    assert first[0] != first[1] and first[0] != list(range(64))  # reshuffled every epoch


def test_a_training_pass_drops_a_last_batch_of_one_image_and_validation_keeps_it():
    """BatchNorm cannot train on one image at a 1x1 feature map: a shuffled pass of 33 images in batches of 16
    yields 2 batches, leaving out a different image each epoch; an unshuffled (validation) pass yields all 33."""
    images = _images(33, 8)
    ld = _loader(images, batch=16)
    left_out = set()
    for _ in range(4):
        batches = [y.tolist() for _, y in ld]
        assert [len(b) for b in batches] == [16, 16] and len(ld) == 2
        left_out |= set(range(33)) - {i for b in batches for i in b}
    assert len(left_out) > 1
    val = make_loader(images, np.arange(33), np.arange(33), batch_size=16, spec=None, mean=(0, 0, 0),
                      std=(1, 1, 1), device=CPU, channels_last=False, shuffle=False)
    assert [len(y) for _, y in val] == [16, 16, 1] and len(val) == 3


def test_a_trial_whose_train_split_leaves_one_image_over_trains_at_a_1x1_feature_map(tmp_path):
    import json

    import imagegen
    from training import fit, parse_config

    data = {"source": "digits", "image_size": 16, "limit": 120}  # test_resnet: a 1x1 map before its BatchNorm
    fit(parse_config(imagegen.base_config(data, tmp_path, train={"epochs": 1, "batch_size": 16})), tmp_path / "probe")
    n = len(json.loads((tmp_path / "probe" / "split.json").read_text())["train"])
    r = fit(parse_config(imagegen.base_config(data, tmp_path, train={"epochs": 2, "batch_size": n - 1})),
            tmp_path / "run")
    assert len(r["history"]) == 2
