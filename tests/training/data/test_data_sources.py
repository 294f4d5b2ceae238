"""Every data source on small generated images: samples, class mapping, and a short training run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import imagegen
from training import ConfigError, DataError, fit, parse_config
from training.data.images import read_rgb
from training.data.sources import load_samples


def _cfg(tmp_path: Path, data: dict, **sections):
    return parse_config(imagegen.base_config(data, tmp_path, **sections))


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    return msg


# ---------------------------------------------------------------- images of any mode load as RGB

def test_grey_rgba_palette_images_load_as_rgb(tmp_path):
    grey = read_rgb(imagegen.write_grey(tmp_path / "g.png", value=90, size=12))
    rgba = read_rgb(imagegen.write_rgba(tmp_path / "a.png", rgb=(200, 30, 40), alpha=60, size=12))
    pal = read_rgb(imagegen.write_palette(tmp_path / "p.png", rgb=(20, 160, 220), size=12))
    for img in (grey, rgba, pal):
        assert img.shape == (12, 12, 3) and img.dtype == np.uint8
    assert (grey == 90).all()
    assert (rgba == (200, 30, 40)).all()  # alpha dropped, colour kept
    assert (pal == (20, 160, 220)).all()  # palette index mapped to its colour


def test_grey_jpeg_and_palette_gif_load_as_rgb(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((10, 14), 200, np.uint8), "L").save(tmp_path / "g.jpg", quality=95)
    im = Image.fromarray(np.ones((10, 14), np.uint8), "P")
    im.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    im.save(tmp_path / "p.gif")
    g, p = read_rgb(tmp_path / "g.jpg"), read_rgb(tmp_path / "p.gif")
    assert g.shape == p.shape == (10, 14, 3)
    assert np.abs(g.astype(int) - 200).max() <= 2
    assert (p == (250, 10, 10)).all()


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    a = (np.arange(256, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0 .. 65535
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    img = read_rgb(tmp_path / "g16.png")
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert np.abs(img[..., 0].astype(int) - np.arange(256).reshape(16, 16)).max() <= 1


# ---------------------------------------------------------------- imagefolder

def test_imagefolder_samples(tmp_path):
    root, classes = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=3, n_per_class=[5, 6, 7],
                                              exts=(".png", ".jpg", ".jpeg", ".bmp"))
    (root / "class_0" / "notes.txt").write_text("not an image")
    (root / "class_1" / ".hidden.png").write_bytes(b"")
    s = load_samples(_cfg(tmp_path, {"source": "imagefolder", "root": str(root)}).data)
    assert s.classes == classes
    assert len(s) == 18 and not s.multilabel and s.groups is None
    assert np.bincount(s.targets).tolist() == [5, 6, 7]
    for name, t in zip(s.names, s.targets):
        assert Path(name).parent.name == classes[t]
    assert {Path(n).suffix for n in s.names} == {".png", ".jpg", ".jpeg", ".bmp"}


def test_imagefolder_trains_with_grey_rgba_and_palette_images(tmp_path):
    root, classes = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=4, n_per_class=12, size=20,
                                              exts=(".png", ".png", ".jpg"), modes=(None, "RGBA", "P", "L"))
    r = fit(_cfg(tmp_path, {"source": "imagefolder", "root": str(root)}, train={"epochs": 3}), tmp_path / "out")
    assert set(r["per_class_f1"]) == set(classes)
    assert r["n_train"] + r["n_val"] == 48 and r["n_val"] == 12
    assert r["epochs_run"] == 3 and r["skipped_images"] == 0
    assert r["macro_f1"] >= 0.6  # colour + stripes: far above chance (0.25) after three short epochs


@pytest.mark.parametrize("layout, match", [("missing", "does not exist"), ("one_class", "at least 2"),
                                           ("empty_class", "holds no images")])
def test_imagefolder_errors(tmp_path, layout, match):
    root = tmp_path / "imgs"
    if layout != "missing":
        imagegen.make_imagefolder(root, n_classes=2 if layout == "empty_class" else 1, n_per_class=3)
    if layout == "empty_class":
        (root / "class_2").mkdir()
    with pytest.raises(DataError) as ei:
        load_samples(_cfg(tmp_path, {"source": "imagefolder", "root": str(root)}).data)
    msg = _one_line(ei.value)
    assert match in msg and str(root) in msg


# ---------------------------------------------------------------- csv, multi-class

def test_csv_multiclass_samples_and_explicit_class_order(tmp_path):
    f = imagegen.make_csv_multiclass(tmp_path / "csv", n_classes=3, n_per_class=5)
    s = load_samples(_cfg(tmp_path, {"source": "csv", "file": str(f), "label_columns": ["label"]}).data)
    assert s.classes == ["apple", "banana", "cherry"]
    assert np.bincount(s.targets).tolist() == [5, 5, 5]
    assert all(Path(n).is_file() and Path(n).parent == f.parent / "img" for n in s.names)
    # an explicit class list fixes the index of each class
    s2 = load_samples(_cfg(tmp_path, {"source": "csv", "file": str(f), "label_columns": ["label"],
                                      "classes": ["cherry", "apple", "banana", "durian"]}).data)
    assert s2.classes == ["cherry", "apple", "banana", "durian"]
    rows = list(csv.DictReader(f.open()))
    for row, t, t2 in zip(rows, s.targets, s2.targets):
        assert s.classes[t] == s2.classes[t2] == row["label"]
    assert s2.targets.tolist() != s.targets.tolist()


def test_csv_root_option_and_custom_columns(tmp_path):
    f = imagegen.make_csv_multiclass(tmp_path / "csv", n_classes=2, n_per_class=3, image_column="file",
                                     label_column="kind")
    rows = list(csv.DictReader(f.open()))
    moved = tmp_path / "meta" / "list.csv"
    moved.parent.mkdir()
    moved.write_text(f.read_text())
    s = load_samples(_cfg(tmp_path, {"source": "csv", "file": str(moved), "image_column": "file",
                                     "label_columns": ["kind"], "root": str(f.parent)}).data)
    assert [Path(n) for n in s.names] == [f.parent / r["file"] for r in rows]


def test_csv_multiclass_trains_with_groups(tmp_path):
    f = imagegen.make_csv_multiclass(tmp_path / "csv", n_classes=4, n_per_class=12, n_groups=6)
    cfg = _cfg(tmp_path, {"source": "csv", "file": str(f), "label_columns": ["label"], "group_column": "group"},
               train={"epochs": 3})
    r = fit(cfg, tmp_path / "out")
    assert set(r["per_class_f1"]) == {"apple", "banana", "cherry", "date"}
    assert r["n_train"] + r["n_val"] == 48
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    group_of = {str(f.parent / row["path"]): row["group"] for row in csv.DictReader(f.open())}
    assert not {group_of[p] for p in split["train"]} & {group_of[p] for p in split["val"]}


@pytest.mark.parametrize("problem, match", [
    ("missing_column", "missing column(s) label"),
    ("unknown_class", "is not in data.classes"),
    ("missing_file", "does not exist"),
    ("no_rows", "no rows"),
    ("one_class", "at least 2"),
])
def test_csv_errors_are_one_line(tmp_path, problem, match):
    f = imagegen.make_csv_multiclass(tmp_path / "csv", n_classes=2, n_per_class=3)
    data = {"source": "csv", "file": str(f), "label_columns": ["label"]}
    lines = f.read_text().splitlines()
    if problem == "missing_column":
        f.write_text("\n".join(line.replace(",label", ",kind", 1) if i == 0 else line for i, line in enumerate(lines)))
    elif problem == "unknown_class":
        data["classes"] = ["apple"]  # 'banana' rows are not in it
    elif problem == "missing_file":
        f.write_text("\n".join(lines + ["img/nope.png,apple"]) + "\n")
    elif problem == "no_rows":
        f.write_text(lines[0] + "\n")
    elif problem == "one_class":
        f.write_text("\n".join([lines[0]] + [line for line in lines[1:] if line.endswith("apple")]) + "\n")
    with pytest.raises(DataError) as ei:
        load_samples(_cfg(tmp_path, data).data)
    msg = _one_line(ei.value)
    assert match in msg and str(f) in msg
    if problem == "missing_file":
        assert "nope.png" in msg and "row 8" in msg


# ---------------------------------------------------------------- csv, multi-label

LABELS = ["red", "green", "blue"]


def test_csv_multilabel_samples(tmp_path):
    f = imagegen.make_csv_multilabel(tmp_path / "ml", labels=LABELS, n=20)
    s = load_samples(_cfg(tmp_path, {"source": "csv", "file": str(f), "label_columns": LABELS}).data)
    assert s.multilabel and s.classes == LABELS
    assert s.targets.shape == (20, 3) and s.targets.dtype == np.float32
    assert set(np.unique(s.targets)) == {0.0, 1.0}
    # the CSV columns are what the targets hold, row by row
    rows = list(csv.DictReader(f.open()))
    assert s.targets.tolist() == [[float(r[c]) for c in LABELS] for r in rows]


@pytest.mark.parametrize("loss", ["bce", "soft_margin"])
def test_csv_multilabel_trains(tmp_path, loss):
    f = imagegen.make_csv_multilabel(tmp_path / "ml", labels=LABELS, n=64, size=16)
    cfg = _cfg(tmp_path, {"source": "csv", "file": str(f), "label_columns": LABELS},
               loss={"name": loss}, train={"epochs": 6})
    r = fit(cfg, tmp_path / "out")
    assert set(r["per_class_f1"]) == set(LABELS)  # macro-F1 over labels, not label combinations
    assert r["macro_f1"] == pytest.approx(np.mean(list(r["per_class_f1"].values())), abs=1e-5)
    assert len(r["confusion_matrix"]) == 3 and np.asarray(r["confusion_matrix"]).shape == (3, 2, 2)
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in r["history"])
    # all-positive guessing scores ~0.67 macro-F1 and ~1/8 exact match; the patches are learnt
    assert r["macro_f1"] >= 0.9 and r["accuracy"] >= 0.75
    assert r["macro_f1"] > r["history"][0]["macro_f1"]


def test_csv_multilabel_rejects_non_binary_values(tmp_path):
    f = imagegen.make_csv_multilabel(tmp_path / "ml", labels=LABELS, n=8)
    lines = f.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",2"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as ei:
        load_samples(_cfg(tmp_path, {"source": "csv", "file": str(f), "label_columns": LABELS}).data)
    msg = _one_line(ei.value)
    assert "row 4" in msg and "'blue'" in msg and "'2'" in msg


@pytest.mark.parametrize("kind, loss", [("multilabel", "ce"), ("multilabel", "focal"), ("single", "bce"),
                                        ("single", "soft_margin")])
def test_loss_must_fit_the_label_kind(tmp_path, kind, loss):
    if kind == "multilabel":
        data = {"source": "csv", "file": str(imagegen.make_csv_multilabel(tmp_path / "d", labels=LABELS, n=12)),
                "label_columns": LABELS}
    else:
        data = {"source": "csv", "file": str(imagegen.make_csv_multiclass(tmp_path / "d", 2, 6)),
                "label_columns": ["label"]}
    with pytest.raises(ConfigError) as ei:
        fit(_cfg(tmp_path, data, loss={"name": loss}), tmp_path / "out")
    msg = _one_line(ei.value)
    assert f"loss.name = '{loss}'" in msg
    assert ("bce or soft_margin" if kind == "multilabel" else "ce or focal") in msg


# ---------------------------------------------------------------- mask layout

def test_mask_class_mapping(tmp_path):
    images, people = imagegen.make_mask_tree(tmp_path, n_people=12, junk=True)
    s = load_samples(_cfg(tmp_path, {"source": "mask", "root": str(images)}).data)
    assert len(s.classes) == 18
    assert len(s) == 12 * 7  # the ._ junk files and folder are ignored
    by_folder = {p.folder: p for p in people}
    seen = set()
    for name, t, g in zip(s.names, s.targets, s.groups):
        p = by_folder[Path(name).parent.name]
        stem = Path(name).stem
        assert t == imagegen.mask_class(stem, p.gender, p.age), name
        assert g == p.id
        seen.add(int(t))
    assert {Path(n).suffix for n in s.names} == {".jpg", ".jpeg", ".png"}
    # the class names follow the same index: mask*6 + gender*3 + age
    assert s.classes[0] == "wear/male/young" and s.classes[17] == "not_worn/female/old"
    assert s.classes[1 * 6 + 1 * 3 + 1] == "incorrect/female/middle"
    assert len(seen) >= 12


def test_mask_state_gender_and_age_bins(tmp_path):
    images, _ = imagegen.make_mask_tree(tmp_path, n_people=4, ages=[29, 30, 58, 60], genders=["female"])
    cfg_default = _cfg(tmp_path, {"source": "mask", "root": str(images)})
    cfg_58 = _cfg(tmp_path, {"source": "mask", "root": str(images), "age_bins": [30, 58]})
    for cfg, bins in ((cfg_default, (30, 60)), (cfg_58, (30, 58))):
        s = load_samples(cfg.data)
        got = {(Path(n).parent.name.rsplit("_", 1)[1], Path(n).stem): int(t) for n, t in zip(s.names, s.targets)}
        # normal = 2, female = 1
        assert got[("29", "normal")] == 2 * 6 + 3 + 0
        assert got[("30", "normal")] == 2 * 6 + 3 + 1
        assert got[("60", "incorrect_mask")] == 1 * 6 + 3 + 2
        assert got[("29", "mask3")] == 0 * 6 + 3 + 0
        # the 58-year-old is middle aged by default and old with age_bins (30, 58)
        assert got[("58", "mask1")] == (3 + 1 if bins == (30, 60) else 3 + 2)
        assert got[("58", "normal")] == 12 + (3 + 1 if bins == (30, 60) else 3 + 2)


def test_mask_trains_with_18_classes(tmp_path):
    images, _ = imagegen.make_mask_tree(tmp_path, n_people=12)
    cfg = _cfg(tmp_path, {"source": "mask", "root": str(images), "val_fraction": 0.25})
    r = fit(cfg, tmp_path / "out")
    assert len(r["per_class_f1"]) == 18
    assert r["n_train"] + r["n_val"] == 84
    assert np.asarray(r["confusion_matrix"]).shape == (18, 18)
    assert r["epochs_run"] == 2


@pytest.mark.parametrize("problem, match", [("bad_folder", "is not <id>_<male|female>_<race>_<age>"),
                                            ("bad_file", "is not mask1..mask5"),
                                            ("no_people", "holds no person folders")])
def test_mask_layout_errors(tmp_path, problem, match):
    images, people = imagegen.make_mask_tree(tmp_path, n_people=2)
    if problem == "bad_folder":
        (images / "000009_robot_Asian_20").mkdir()
    elif problem == "bad_file":
        imagegen.save_image(np.zeros((8, 8, 3), np.uint8), images / people[0].folder / "selfie.png")
    else:
        import shutil

        for p in people:
            shutil.rmtree(images / p.folder)
    with pytest.raises(DataError) as ei:
        load_samples(_cfg(tmp_path, {"source": "mask", "root": str(images)}).data)
    assert match in _one_line(ei.value)
