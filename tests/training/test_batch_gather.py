"""The tensor path's gather: batches come from reused host buffers (pinned on CUDA); every batch must still hold exactly the images its labels name, across epochs, partial batches and a consumer
slower than the producer (the case where a buffer is reused while an earlier batch could still be in use)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from training.data.loader import make_loader

CPU = torch.device("cpu")


def _images(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _check_epochs(images: np.ndarray, batch: int, epochs: int, slow: bool, shuffle: bool = True) -> int:
    n = len(images)
    ld = make_loader(images, np.arange(n), np.arange(n), batch_size=batch, spec=None, mean=(0, 0, 0),
                     std=(1, 1, 1), device=CPU, channels_last=False, shuffle=shuffle, seed=3)
    seen = 0
    for _ in range(epochs):
        ids = []
        for k, (x, y) in enumerate(ld):
            if slow and k % 2 == 0:
                time.sleep(0.01)  # let the producer run ahead and fill every buffer of the ring
            want = torch.from_numpy(images[y.numpy()]).permute(0, 3, 1, 2).float() / 255.0
            assert torch.equal(x, want), f"batch {k}: pixels do not belong to the labelled images"
            ids += y.tolist()
        assert sorted(ids) == list(range(n))  # each image exactly once per epoch
        seen += len(ids)
    return seen


@pytest.mark.parametrize("slow", [False, True], ids=["fast-consumer", "slow-consumer"])
def test_batches_hold_exactly_their_images_across_epochs(slow):
    assert _check_epochs(_images(203, 12), batch=16, epochs=3, slow=slow) == 3 * 203  # 203 = 12 x 16 + 11


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
