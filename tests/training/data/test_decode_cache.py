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
from training.data.images import fit_image, read_rgb, resize_square
from training.data.prepare import prepare_data
from training.data.sources import load_samples
from training.errors import DataError


def _samples(root: Path):
    return load_samples(ImageFolderData(source="imagefolder", root=root))


def _at(image_size, center_crop=None) -> ImageFolderData:
    """A data config for its geometry: decode_cached reads only its hw and center_crop."""
    return ImageFolderData(source="imagefolder", root=Path("unused"), image_size=image_size, center_crop=center_crop)


@pytest.fixture
def folder(tmp_path):
    root, _ = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=3, n_per_class=6, size=24,
                                        exts=(".png", ".jpg"))
    return root


def test_second_decode_reuses_the_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    first = decode_cached(_samples(folder), _at(16), cache)
    assert first.built
    assert first.images.shape == (18, 16, 16, 3) and first.images.dtype == np.uint8
    s = _samples(folder)
    for i in (0, 7, 17):  # each row is that file, decoded and resized
        assert np.array_equal(first.images[i], resize_square(read_rgb(s.names[i]), 16))
    second = decode_cached(_samples(folder), _at(16), cache)  # fresh Samples, same files
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
    before = decode_cached(s, _at(16), cache)
    old = np.array(before.images)
    target = Path(s.names[4])
    st = target.stat()
    imagegen.save_image(np.full((24, 24, 3), (255, 0, 255), np.uint8), target)  # new content
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    after = decode_cached(_samples(folder), _at(16), cache)
    assert after.built and after.path != before.path
    new = np.asarray(after.images)
    assert not np.array_equal(new[4], old[4])
    assert np.abs(new[4].astype(int) - (255, 0, 255)).max() <= 2
    others = [i for i in range(len(s)) if i != 4]
    assert np.array_equal(new[others], old[others])


def test_touched_file_invalidates_the_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    s = _samples(folder)
    before = decode_cached(s, _at(16), cache)
    st = os.stat(s.names[0])
    os.utime(s.names[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert decode_cached(_samples(folder), _at(16), cache).built
    assert before.path.exists()  # the old entry is left alone


def test_other_size_or_added_file_is_another_cache(folder, tmp_path):
    cache = tmp_path / "cache"
    a = decode_cached(_samples(folder), _at(16), cache)
    b = decode_cached(_samples(folder), _at(20), cache)
    assert b.built and b.images.shape == (18, 20, 20, 3) and b.path != a.path
    imagegen.save_image(imagegen.class_image(0, 24, np.random.default_rng(1)), folder / "class_0" / "new.png")
    c = decode_cached(_samples(folder), _at(16), cache)
    assert c.built and c.images.shape[0] == 19
    assert not decode_cached(_samples(folder), _at(16), cache).built


def test_geometry_keys_the_cache_s_and_s_s_share_hw_orders_and_crops_do_not(folder, tmp_path):
    cache, s = tmp_path / "cache", _samples(folder)
    square = decode_cached(s, _at(16), cache)
    assert not decode_cached(s, _at([16, 16]), cache).built  # the same geometry: one entry
    entries = {square.path}
    for image_size, crop in (([16, 24], None), ([24, 16], None), ([16, 24], [20, 12]), ([16, 24], [12, 20]),
                             (16, [20, 12])):
        cfg = _at(image_size, crop)
        d = decode_cached(s, cfg, cache)
        assert d.built and d.images.shape == (18, *cfg.hw, 3) and d.path not in entries, (image_size, crop)
        entries.add(d.path)
        for i in (0, 11):  # each row is fit_image of that file: crop, then resize to (H, W)
            assert np.array_equal(d.images[i], fit_image(read_rgb(s.names[i]), cfg))
    assert not decode_cached(s, _at([24, 16]), cache).built  # and each is found again


def test_a_crop_larger_than_an_image_fails_the_build_and_leaves_nothing(tmp_path):
    root, _ = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=2, n_per_class=4, size=24)
    small = root / "class_1" / "001.png"
    imagegen.save_image(np.zeros((20, 30, 3), np.uint8), small)  # 20 high: below the crop's 22
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as e:
        decode_cached(_samples(root), _at(16, (22, 22)), cache)
    msg = str(e.value)
    assert msg.startswith(f"{small}: image is 20x30 (HxW), smaller than data.center_crop = [22, 22]"), msg
    assert "1 of 8 images" in msg and "at most [20, 24]" in msg and "data.on_bad_image: skip does not" in msg
    assert [p.name for p in cache.iterdir()] == [p.name for p in cache.glob("*.lock")]  # no .npy, .json, .tmp
    assert decode_cached(_samples(root), _at(16, (20, 24)), cache).images.shape == (8, 16, 16, 3)


def _decode_in_child(root: str, cache: str, barrier, queue) -> None:
    samples = _samples(Path(root))
    barrier.wait(timeout=120)
    d = decode_cached(samples, _at(24), Path(cache))
    queue.put((os.getpid(), d.built, np.array(d.images), str(d.path), d.bad))


def test_two_processes_building_the_same_cache_get_identical_correct_arrays(tmp_path):
    # fork, not spawn: a spawned child spends seconds importing torch. The children only touch PIL, numpy and
    # threads (the images already have the decode size, so no cv2 resize), which are safe after fork.
    root, _ = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=4, n_per_class=40, size=24,
                                        exts=(".png", ".jpg"))
    cache = tmp_path / "cache"
    reference = np.array(decode_cached(_samples(root), _at(24), tmp_path / "reference").images)
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
    assert not decode_cached(_samples(root), _at(24), cache).built
