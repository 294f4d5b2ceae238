"""`search explain`: class-activation maps of a run, through pytorch-grad-cam. On a task where only one region
of the image decides the class, the map peaks in that region; a ViT's tokens are laid back on their grid; a
model without a layer to map is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import imagegen
from incli import run_main
from training import ConfigError, fit, parse_config
from training.inference.explain import _checked_forward, explain, target_layer
from training.mistakes import mistakes
from training.models import build_model

SIZE = 64  # test_resnet's last stage is then 2 x 2: one cell per quadrant
FLIPPED = 5


@pytest.fixture(scope="module")
def quadrant_run(tmp_path_factory):
    """Two classes told apart by the colour of the top-left quadrant alone; the other quadrants are the other
    class's colour as often as their own (noise that says nothing). FLIPPED images per class sit in the other
    class's folder: the val mistakes of a model that learned the quadrant."""
    tmp = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(0)
    colours = np.asarray([[220, 40, 40], [40, 40, 220]], np.float32)
    for k in range(2):
        for i in range(40 + FLIPPED):
            img = np.empty((SIZE, SIZE, 3), np.float32)
            half = SIZE // 2
            for r in range(2):
                for c in range(2):
                    colour = colours[k] if (r, c) == (0, 0) else colours[rng.integers(2)]
                    img[r * half:(r + 1) * half, c * half:(c + 1) * half] = colour
            img += rng.normal(0, 20, img.shape)
            label = k if i < 40 else 1 - k
            imagegen.save_image(np.clip(img, 0, 255).astype(np.uint8), tmp / "imgs" / f"c{label}" / f"{k}{i:02d}.png")
    cfg = imagegen.base_config({"source": "imagefolder", "root": str(tmp / "imgs"), "image_size": SIZE}, tmp,
                               train={"epochs": 10}, optimizer={"name": "adamw", "lr": 0.01})
    r = fit(parse_config(cfg), tmp / "run")
    assert r["macro_f1"] > 0.8, r["macro_f1"]  # it learned the quadrant, and the flipped ones it gets wrong
    return tmp


def test_the_map_peaks_in_the_region_that_decides_the_class(quadrant_run, tmp_path):
    images = [p for p in sorted((quadrant_run / "imgs").rglob("*.png"))[::8] if _true_class(p) == p.parent.name]
    (tmp_path / "list.txt").write_text("\n".join(map(str, images)) + "\n")
    done = explain(quadrant_run / "run", tmp_path / "out", images=tmp_path / "list.txt")
    assert len(done) == len(images)
    half = SIZE // 2
    peaks = [float(e.cam[:half, :half].mean()) > max(float(e.cam[:half, half:].mean()),
                                                      float(e.cam[half:, :half].mean()),
                                                      float(e.cam[half:, half:].mean())) for e in done]
    assert sum(peaks) >= 0.8 * len(done), peaks
    assert (tmp_path / "out" / "explain.png").is_file() and len(list((tmp_path / "out").glob("0*.png"))) == len(done)


def _true_class(path) -> str:
    """The class an image of the fixture was drawn as (its name's first digit); its folder may say otherwise."""
    return f"c{path.name[0]}"


def test_search_explain_defaults_to_the_runs_val_mistakes(quadrant_run, tmp_path, capfd, monkeypatch):
    split = json.loads((quadrant_run / "run" / "split.json").read_text())
    val = [Path(n) for n in split["val"]]
    flipped = {str(p) for p in val if _true_class(p) != p.parent.name}
    assert flipped, "the seeded split validates some flipped images"
    r = run_main(["explain", "--run", str(quadrant_run / "run"), "--out", "maps"], cwd=tmp_path, capfd=capfd,
                 monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert "val mistakes" in r.stdout and (tmp_path / "maps" / "explain.png").is_file()
    explained = {m.name for m in mistakes(quadrant_run / "run", 32)}
    assert flipped <= explained  # the flipped images are what the model gets wrong, and what is explained
    assert len(list((tmp_path / "maps").glob("0*.png"))) == len(explained)


def test_a_vit_is_mapped_on_its_token_grid_at_the_runs_size_and_a_model_without_stages_is_one_line():
    from pytorch_grad_cam import GradCAM

    model = build_model(parse_config({"model": {"name": "test_vit"}}).model, 3).eval()
    x = torch.rand(2, 3, 32, 32)  # not the model's default 160 px: a 2 x 2 grid of 16 px patches
    layer, reshape = target_layer(model, "test_vit", (32, 32))
    tokens = torch.zeros(2, model.backbone.num_prefix_tokens + 4, 64)
    assert reshape(tokens).shape == (2, 64, 2, 2)
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        assert cam(input_tensor=x, targets=None).shape == (2, 32, 32)
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    with pytest.raises(ConfigError, match="explain finds the layer to map"):
        target_layer(plain, "mlp")
    assert timm.is_model("test_vit")


def test_a_small_input_maps_the_last_stage_that_is_more_than_one_cell():
    """test_resnet's layer4 is one cell at 32 px (a flat map): layer3's 2 x 2 is mapped there, layer4 at 64 px."""
    model = build_model(parse_config({"model": {"name": "test_resnet"}}).model, 3).eval()
    assert target_layer(model, "test_resnet", (32, 32))[0] is model.backbone.layer3
    assert target_layer(model, "test_resnet", (64, 64))[0] is model.backbone.layer4
    layer, reshape = target_layer(model, "test_resnet", (32, 32))
    from pytorch_grad_cam import GradCAM

    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=torch.rand(2, 3, 32, 32), targets=None)
    assert all(m.max() > m.min() for m in maps)  # not flat


def test_channels_last_stages_are_laid_back_and_a_wrong_layout_is_one_line():
    """swin's stages give N x H x W x C: mapped as they come, its 7 rows would be read as channels."""
    model = build_model(parse_config({"model": {"name": "swin_tiny_patch4_window7_224"}}).model, 3).eval()
    x = torch.rand(1, 3, 224, 224)
    layer, reshape = target_layer(model, "swin", (224, 224))
    assert _checked_forward(model, x, layer, reshape, "swin").shape == (1, 3)
    with pytest.raises(ConfigError, match=r"gives \(1, 7, 7, 768\), not a batch of feature maps"):
        _checked_forward(model, x, layer, None, "swin")
