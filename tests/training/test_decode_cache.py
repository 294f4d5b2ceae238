"""The decode-once cache: reused when nothing changed, rebuilt when a file changes, safe under concurrency."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import imagegen
from training import parse_config
from training.config import ImageFolderData
from training.data.cache import decode_cached
from training.data.images import read_rgb, resize_square
from training.data.prepare import prepare_data
from training.data.sources import load_samples


def _samples(root: Path):
    return load_samples(ImageFolderData(source="imagefolder", root=root))


@pytest.fixture
def folder(tmp_path):
    root, _ = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=3, n_per_class=6, size=24,
                                        exts=(".png", ".jpg"))
    return root


def test_second_decode_reuses_the_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    first = decode_cached(_samples(folder), 16, cache)
    assert first.built
    assert first.images.shape == (18, 16, 16, 3) and first.images.dtype == np.uint8
    s = _samples(folder)
    for i in (0, 7, 17):  # each row is that file, decoded and resized
        assert np.array_equal(first.images[i], resize_square(read_rgb(s.names[i]), 16))
    second = decode_cached(_samples(folder), 16, cache)  # fresh Samples, same files
    assert not second.built
    assert second.path == first.path
    assert np.array_equal(np.asarray(second.images), np.asarray(first.images))
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".lock", ".npy"]


def test_prepare_data_reports_reuse(folder, tmp_path):
    cfg = parse_config(imagegen.base_config({"source": "imagefolder", "root": str(folder)}, tmp_path))
    cpu = torch.device("cpu")
    assert prepare_data(cfg, cpu, False, 8).cache_built is True
    assert prepare_data(cfg, cpu, False, 8).cache_built is False


def test_changed_file_invalidates_the_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    s = _samples(folder)
    before = decode_cached(s, 16, cache)
    old = np.array(before.images)
    target = Path(s.names[4])
    st = target.stat()
    imagegen.save_image(np.full((24, 24, 3), (255, 0, 255), np.uint8), target)  # new content
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    after = decode_cached(_samples(folder), 16, cache)
    assert after.built and after.path != before.path
    new = np.asarray(after.images)
    assert not np.array_equal(new[4], old[4])
    assert np.abs(new[4].astype(int) - (255, 0, 255)).max() <= 2
    others = [i for i in range(len(s)) if i != 4]
    assert np.array_equal(new[others], old[others])


def test_touched_file_invalidates_the_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    s = _samples(folder)
    before = decode_cached(s, 16, cache)
    st = os.stat(s.names[0])
    os.utime(s.names[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert decode_cached(_samples(folder), 16, cache).built
    assert before.path.exists()  # the old entry is left alone


def test_other_size_or_added_file_is_another_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    a = decode_cached(_samples(folder), 16, cache)
    b = decode_cached(_samples(folder), 20, cache)
    assert b.built and b.images.shape == (18, 20, 20, 3) and b.path != a.path
    imagegen.save_image(imagegen.class_image(0, 24, np.random.default_rng(1)), folder / "class_0" / "new.png")
    c = decode_cached(_samples(folder), 16, cache)
    assert c.built and c.images.shape[0] == 19
    assert not decode_cached(_samples(folder), 16, cache).built


def _decode_in_child(root: str, cache: str, barrier, queue) -> None:
    samples = _samples(Path(root))
    barrier.wait(timeout=120)
    d = decode_cached(samples, 24, Path(cache))
    queue.put((os.getpid(), d.built, np.array(d.images), str(d.path), d.bad))


def test_two_processes_building_the_same_cache_get_identical_correct_arrays(tmp_path):
    # fork, not spawn: a spawned child spends seconds importing torch. The children only touch PIL, numpy and
    # threads (the images already have the decode size, so no cv2 resize), which are safe after fork.
    root, _ = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=4, n_per_class=40, size=24,
                                        exts=(".png", ".jpg"))
    cache = tmp_path / "cache"
    reference = np.array(decode_cached(_samples(root), 24, tmp_path / "reference").images)
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_decode_in_child, args=(str(root), str(cache), barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=180) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    (pid_a, built_a, img_a, path_a, bad_a), (pid_b, built_b, img_b, path_b, bad_b) = results
    assert pid_a != pid_b
    assert sorted([built_a, built_b]) == [False, True]  # exactly one decoded, the other waited and read
    assert path_a == path_b
    assert bad_a == bad_b == {}
    assert img_a.shape == (160, 24, 24, 3)
    assert np.array_equal(img_a, img_b)
    assert np.array_equal(img_a, reference)
    leftovers = [p.name for p in cache.iterdir() if ".tmp" in p.name]
    assert not leftovers
    assert not decode_cached(_samples(root), 24, cache).built
