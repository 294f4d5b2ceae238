"""Non-square inputs and center crops: data.image_size S or [H, W], data.center_crop [H, W] before the resize."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

import imagegen
from training import fit, parse_config
from training.data.images import crop_center, fit_image
from training.data.loader import TensorBatches
from training.data.prepare import prepare_data
from training.errors import DataError


def test_image_size_resolves_to_hw_and_dumps_as_written():
    for image_size, hw in ((224, (224, 224)), ([320, 256], (320, 256)), ([256, 320], (256, 320)),
                           ([64, 64], (64, 64))):
        cfg = parse_config({"data": {"image_size": image_size}})
        assert cfg.data.hw == hw
        assert parse_config(cfg.model_dump(mode="json")).data.model_dump(mode="json")["image_size"] == image_size
    assert parse_config({"data": {"center_crop": [450, 360]}}).data.center_crop == (450, 360)
    assert parse_config({"data": {}}).data.center_crop is None


@pytest.mark.parametrize("crop", [(7, 4), (6, 5), (9, 9), (1, 9)])
def test_center_crop_takes_the_middle_as_albumentations(crop):
    img = np.random.default_rng(0).integers(0, 256, (9, 12, 3), dtype=np.uint8)  # odd and even margins
    assert np.array_equal(crop_center(img, crop), A.CenterCrop(*crop)(image=img)["image"])


def test_fit_image_crops_then_resizes_to_h_w():
    img = np.zeros((40, 30, 3), np.uint8)
    img[...] = (0, 0, 255)  # blue margin
    img[10:30, 10:20] = (255, 0, 0)  # a red 20 x 10 middle
    data = parse_config({"data": {"image_size": [16, 8], "center_crop": [20, 10]}}).data
    out = fit_image(img, data)
    assert out.shape == (16, 8, 3) and (out == (255, 0, 0)).all()  # only the crop, resized to (H, W)
    whole = fit_image(img, parse_config({"data": {"image_size": [16, 12]}}).data)
    assert whole.shape == (16, 12, 3) and (whole[0] == (0, 0, 255)).all()  # no crop: the margin stays
    with pytest.raises(DataError, match=r"image is 40x30 \(HxW\), smaller than data.center_crop = \[20, 31\]"):
        fit_image(img, parse_config({"data": {"center_crop": [20, 31]}}).data)


def _portrait_folder(root, n_classes: int = 4, n_per_class: int = 16):
    """Portrait 40 x 30 (H x W) images of imagegen's learnable classes."""
    rng = np.random.default_rng(0)
    for k in range(n_classes):
        for i in range(n_per_class):
            imagegen.save_image(imagegen.class_image(k, 40, rng)[:, 5:35], root / f"class_{k}" / f"{i:03d}.png")
    return root


def test_a_non_square_run_trains(tmp_path):
    root = _portrait_folder(tmp_path / "imgs")
    cfg = parse_config(imagegen.base_config(
        {"source": "imagefolder", "root": str(root), "image_size": [24, 16], "center_crop": [36, 24]}, tmp_path,
        augment={"train": [{"__class_fullname__": "HorizontalFlip", "p": 0.5},
                           {"__class_fullname__": "ShiftScaleRotate", "p": 0.5, "shift_limit": 0.0625,
                            "scale_limit": 0.1, "rotate_limit": 15}]},
        optimizer={"lr": 1e-3}, train={"epochs": 4}))
    data = prepare_data(cfg, torch.device("cpu"), False, 16)
    assert isinstance(data.train, TensorBatches)  # the pipeline runs on the tensor path
    x, _ = next(iter(data.train))
    assert tuple(x.shape) == (16, 3, 24, 16)
    r = fit(cfg, tmp_path / "run")
    first = r["history"][0]["macro_f1"]
    assert r["macro_f1"] > first + 0.3 and r["macro_f1"] >= 0.9, [h["macro_f1"] for h in r["history"]]


def test_a_crop_larger_than_an_image_is_an_error_even_with_on_bad_image_skip(tmp_path):
    root = _portrait_folder(tmp_path / "imgs", n_classes=2, n_per_class=3)
    cfg = parse_config(imagegen.base_config({"source": "imagefolder", "root": str(root), "image_size": [24, 16],
                                             "center_crop": [36, 32], "on_bad_image": "skip"}, tmp_path))
    with pytest.raises(DataError, match=r"class_0/000.png: image is 40x30 \(HxW\), smaller than data.center_crop "
                                        r"= \[36, 32\]; 6 of 6 images .* at most \[40, 30\]"):
        prepare_data(cfg, torch.device("cpu"), False, 8)
