"""Train/val split: grouped (no person on both sides), seeded (same seed, same split), stratified."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import imagegen
from training import DataError, parse_config
from training.data.prepare import prepare_data
from training.data.split import split_indices

CPU = torch.device("cpu")
pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")


@pytest.fixture(scope="module")
def mask_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("mask")
    images, people = imagegen.make_mask_tree(root, n_people=20, size=16)
    return images, people, root / "cache"


def _prepare(images, cache, **data):
    cfg = parse_config(imagegen.base_config({"source": "mask", "root": str(images), "cache_dir": str(cache),
                                             "val_fraction": 0.25, **data}))
    return prepare_data(cfg, CPU, False, 16)


def _people(prep, index):
    return {str(prep.samples.groups[i]) for i in index}


@pytest.mark.parametrize("split_seed", [0, 1, 7])
def test_no_person_in_both_train_and_val(mask_images, split_seed):
    images, people, cache = mask_images
    p = _prepare(images, cache, split_seed=split_seed)
    tr, va = _people(p, p.train_index), _people(p, p.val_index)
    assert tr and va and not tr & va
    assert tr | va == {x.id for x in people}
    assert len(p.train_index) + len(p.val_index) == 20 * 7
    assert not set(p.train_index.tolist()) & set(p.val_index.tolist())
    # whole people move: each side holds all seven images of its people
    assert len(p.val_index) == 7 * len(va)
    assert 0.1 <= len(va) / 20 <= 0.4


def test_same_seed_same_split_other_seed_other_split(mask_images):
    images, _, cache = mask_images
    a, b = _prepare(images, cache, split_seed=3), _prepare(images, cache, split_seed=3)
    assert np.array_equal(a.train_index, b.train_index) and np.array_equal(a.val_index, b.val_index)
    others = [_prepare(images, cache, split_seed=s).val_index for s in (4, 5)]
    assert any(not np.array_equal(a.val_index, o) for o in others)
    # the split does not depend on the training seed
    cfg = imagegen.base_config({"source": "mask", "root": str(images), "cache_dir": str(cache),
                                "val_fraction": 0.25, "split_seed": 3}, seed=99)
    c = prepare_data(parse_config(cfg), CPU, False, 16)
    assert np.array_equal(a.val_index, c.val_index)


def test_split_indices_is_deterministic_and_seed_dependent():
    y = np.repeat(np.arange(4), 25)
    a = split_indices(y, None, 0.2, seed=0)
    b = split_indices(y, None, 0.2, seed=0)
    c = split_indices(y, None, 0.2, seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    for tr, va in (a, c):
        assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)  # sorted, no duplicates
        assert len(va) == 20 and not set(tr) & set(va) and len(tr) + len(va) == 100


def test_stratified_split_keeps_class_proportions():
    y = np.repeat([0, 1, 2, 3], [120, 60, 16, 4])
    for seed in range(3):
        tr, va = split_indices(y, None, 0.25, seed)
        counts = np.bincount(y[va], minlength=4)
        assert np.all(np.abs(counts - np.array([30, 15, 4, 1])) <= 1), counts
        assert counts[3] >= 1  # even the rarest class is in val


def test_grouped_stratified_split_keeps_proportions_roughly():
    # 40 groups of 5 images, a group holds one class; class 1 is a quarter of the groups
    groups = np.repeat(np.arange(40), 5)
    y = np.where(groups % 4 == 0, 1, 0)
    tr, va = split_indices(y, groups, 0.25, seed=0)
    assert not set(groups[tr]) & set(groups[va])
    share = y[va].mean()
    assert 0.1 <= share <= 0.4
    assert 0.15 <= len(va) / len(y) <= 0.35




@pytest.mark.parametrize("val_fraction", [
    0.1, 0.2, 0.25, 0.3,
    0.4,
])
def test_grouped_split_honours_val_fraction(val_fraction):
    groups = np.repeat(np.arange(50), 4)
    y = np.tile([0, 1, 2, 3], 50)
    tr, va = split_indices(y, groups, val_fraction, seed=0)
    assert not set(groups[tr]) & set(groups[va])
    assert abs(len(va) / len(y) - val_fraction) <= 0.05


def test_grouped_split_with_few_groups_falls_back_and_stays_grouped():
    groups = np.repeat(np.array(["a", "b", "c"]), 4)
    y = np.tile([0, 1], 6)
    tr, va = split_indices(y, groups, 0.2, seed=0)  # 3 groups < 5 folds: shuffle split by group
    assert len(tr) and len(va) and not set(groups[tr]) & set(groups[va])


def test_multilabel_split_is_disjoint_and_seeded():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 3)) < 0.5).astype(np.float32)
    a = split_indices(y, None, 0.25, 0, multilabel=True)
    b = split_indices(y, None, 0.25, 0, multilabel=True)
    assert np.array_equal(a[1], b[1]) and not set(a[0]) & set(a[1]) and len(a[0]) + len(a[1]) == 60


def test_split_errors_are_one_line():
    with pytest.raises(DataError) as ei:
        split_indices(np.array([0, 1, 0]), None, 0.2, 0)
    assert "\n" not in str(ei.value) and "at least 4" in str(ei.value)
    with pytest.raises(DataError) as ei:
        split_indices(np.array([0, 1, 0, 1, 0]), np.array(["p"] * 5), 0.2, 0)
    assert "\n" not in str(ei.value) and "one group" in str(ei.value)
