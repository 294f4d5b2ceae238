"""Augmentation: the tensor path when every op has a tensor version, the albumentations CPU path otherwise;
both apply the pipeline, and training from the CPU path still learns."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

import imagegen
from training import ConfigError, fit, parse_config
from training.augment import tensor_plan
from training.data.loader import AlbumentationsBatches, TensorBatches
from training.data.prepare import prepare_data

CPU = torch.device("cpu")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def spec(*transforms) -> dict:
    return A.to_dict(A.Compose(list(transforms)))


TENSOR_ONLY = spec(A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5), A.Affine(rotate=(-10, 10), p=0.5),
                   A.CoarseDropout(p=0.5), A.GaussNoise(p=0.5))
WITH_TOGRAY = spec(A.HorizontalFlip(p=0.5), A.ToGray(p=0.5))
WITH_CLAHE = spec(A.CLAHE(p=1.0))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    imgs, _ = imagegen.make_imagefolder(root / "data", n_classes=4, n_per_class=24, size=16)
    return {"source": "imagefolder", "root": str(imgs), "cache_dir": str(root / "cache")}


def test_tensor_plan_for_supported_ops_is_a_list():
    plan = tensor_plan(TENSOR_ONLY)
    assert isinstance(plan, list)
    assert [name for name, _ in plan] == ["HorizontalFlip", "RandomBrightnessContrast", "Affine", "CoarseDropout",
                                          "GaussNoise"]
    assert tensor_plan(None) == []
    # the other accepted spellings: the inner transform dict and a bare list
    assert [n for n, _ in tensor_plan(TENSOR_ONLY["transform"])] == [n for n, _ in plan]
    assert [n for n, _ in tensor_plan([{"__class_fullname__": "VerticalFlip", "p": 1.0}])] == ["VerticalFlip"]


@pytest.mark.parametrize("pipeline", [WITH_TOGRAY, WITH_CLAHE, spec(A.Affine(shear=10, p=1.0)),
                                      spec(A.Normalize(normalization="min_max"))],
                         ids=["ToGray", "CLAHE", "Affine-shear", "Normalize-min_max"])
def test_tensor_plan_is_none_when_an_op_or_argument_has_no_tensor_version(pipeline):
    assert tensor_plan(pipeline) is None


def test_prepare_picks_the_path(folder):
    def loaders(train, eval_=None):
        cfg = parse_config(imagegen.base_config(folder, augment={"train": train, "eval": eval_}))
        p = prepare_data(cfg, CPU, False, 16)
        return type(p.train), type(p.val)

    assert loaders(TENSOR_ONLY) == (TensorBatches, TensorBatches)
    assert loaders(WITH_TOGRAY) == (AlbumentationsBatches, TensorBatches)
    assert loaders(None, WITH_CLAHE) == (TensorBatches, AlbumentationsBatches)


def _unnormalize(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(STD)[None, :, None, None] + torch.tensor(MEAN)[None, :, None, None]


def _first_batch(folder, train):
    cfg = parse_config(imagegen.base_config(folder, augment={"train": train}))
    p = prepare_data(cfg, CPU, False, 16)
    x, y = next(iter(p.train))
    return p, x, y


def test_cpu_path_applies_the_pipeline_and_normalizes_once(folder):
    p, x, y = _first_batch(folder, spec(A.ToGray(p=1.0)))
    assert isinstance(p.train, AlbumentationsBatches)
    assert x.shape == (16, 3, 16, 16) and x.dtype == torch.float32
    raw = _unnormalize(x)
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and torch.allclose(raw[:, 1], raw[:, 2], atol=1e-5)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert len(set(y.tolist())) > 1  # shuffled across classes


def test_cpu_path_with_its_own_normalize_is_not_normalized_again(folder):
    p, x, _ = _first_batch(folder, spec(A.ToGray(p=1.0), A.Normalize(mean=0.0, std=1.0, max_pixel_value=255.0)))
    assert isinstance(p.train, AlbumentationsBatches)
    assert x.min() >= -1e-5 and x.max() <= 1 + 1e-5  # the pipeline's Normalize: [0, 1], no second (x - mean) / std
    assert torch.allclose(x[:, 0], x[:, 2], atol=1e-5)


@pytest.mark.parametrize("train", [spec(A.HorizontalFlip(p=0.5), A.Normalize(mean=0.5, std=0.5)),
                                   spec(A.ToGray(p=0.2), A.Normalize(mean=0.5, std=0.5))], ids=["tensor", "cpu"])
def test_val_without_its_own_normalize_is_normalized_like_train(folder, train):
    """Train normalizes with mean = std = 0.5 (seed 000's pipeline); val has no pipeline: it must get the same
    normalization, not augment.mean/std (ImageNet's)."""
    cfg = parse_config(imagegen.base_config(folder, augment={"train": train, "eval": None}))
    p = prepare_data(cfg, CPU, False, 16)
    xt, _ = next(iter(p.train))  # a scalar mean/std (0.5) works on both paths
    assert xt.min() >= -1 - 1e-5 and xt.max() <= 1 + 1e-5
    x, _ = next(iter(p.val))
    assert x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5 and x.min() < -0.5  # (x - 0.5) / 0.5 spans [-1, 1]
    cfg_plain = parse_config(imagegen.base_config(folder))
    xp, _ = next(iter(prepare_data(cfg_plain, CPU, False, 16).val))
    assert torch.allclose(_unnormalize(xp), x * 0.5 + 0.5, atol=1e-5)  # same pixels, other normalization


def test_tensor_path_applies_the_pipeline(folder):
    plain_p, plain_x, plain_y = _first_batch(folder, None)
    flip_p, flip_x, flip_y = _first_batch(folder, spec(A.HorizontalFlip(p=1.0)))
    assert isinstance(flip_p.train, TensorBatches)
    assert torch.equal(plain_y, flip_y)  # same seed, same order
    assert torch.allclose(flip_x, plain_x.flip(3))


def test_training_from_the_cpu_path_learns(folder, tmp_path):
    pipeline = spec(A.ToGray(p=0.3), A.CLAHE(p=0.3))
    cfg = parse_config(imagegen.base_config(folder, augment={"train": pipeline}, train={"epochs": 5},
                                            scheduler={"name": "cosine", "warmup_epochs": 0.5}))
    r = fit(cfg, tmp_path / "out")
    assert r["macro_f1"] >= 0.8  # chance is 0.25
    assert r["history"][-1]["train_loss"] < 0.5 * r["history"][0]["train_loss"]
    assert all(np.isfinite(h["train_loss"]) for h in r["history"])


def test_training_from_the_tensor_path_learns(folder, tmp_path):
    cfg = parse_config(imagegen.base_config(folder, augment={"train": spec(A.RandomBrightnessContrast(p=0.5),
                                                                            A.GaussNoise(std_range=(0.02, 0.05)))},
                                            train={"epochs": 5}, scheduler={"name": "cosine", "warmup_epochs": 0.5}))
    r = fit(cfg, tmp_path / "out")
    assert r["macro_f1"] >= 0.8
    assert r["history"][-1]["train_loss"] < 0.5 * r["history"][0]["train_loss"]


def test_cpu_path_with_dataloader_workers(folder, tmp_path):
    cfg = parse_config(imagegen.base_config({**folder, "num_workers": 1}, augment={"train": spec(A.ToGray(p=0.5))},
                                            train={"epochs": 2}))
    p = prepare_data(cfg, CPU, False, 16)
    assert isinstance(p.train, AlbumentationsBatches) and p.train.num_workers == 1
    seen = sum(len(y) for _, y in p.train)
    assert seen == len(p.train_index)
    r = fit(cfg, tmp_path / "out")
    assert r["epochs_run"] == 2 and all(np.isfinite(h["train_loss"]) for h in r["history"])


def test_bad_pipeline_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as ei:
        parse_config({"augment": {"train": {"transform": {"__class_fullname__": "Compose", "p": 1.0,
                                                          "transforms": [{"__class_fullname__": "Blurr", "p": 1.0}]}}}})
    assert "\n" not in str(ei.value) and "augment.train" in str(ei.value) and "Blurr" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        parse_config({"augment": {"eval": 42}})
    assert "\n" not in str(ei.value) and "augment.eval" in str(ei.value)


def test_the_normalization_val_inherits_from_train():
    from training.augment import pipeline_normalization

    half = ((0.5,) * 3, (0.5,) * 3)
    assert pipeline_normalization(spec(A.HorizontalFlip(), A.Normalize(mean=0.5, std=0.5))) == half
    assert pipeline_normalization(spec(A.Sequential([A.Normalize(mean=0.5, std=0.5)], p=1.0))) == half
    mean, std = pipeline_normalization(spec(A.Normalize(mean=(0.5, 0.4, 0.3), std=(0.25,) * 3, max_pixel_value=1.0)))
    assert mean == pytest.approx((0.5 / 255, 0.4 / 255, 0.3 / 255)) and std == pytest.approx((0.25 / 255,) * 3)
    assert pipeline_normalization(spec(A.Normalize(mean=0.5, std=0.5, p=0.5))) is None  # not always applied
    assert pipeline_normalization(spec(A.OneOf([A.Normalize(mean=0.5, std=0.5)], p=1.0))) is None
    assert pipeline_normalization(spec(A.Normalize(normalization="min_max"))) is None  # with a warning
    assert pipeline_normalization(None) is None
