"""Unreadable images: data.on_bad_image fail -> one-line DataError naming the file; skip -> counted and left out."""

from __future__ import annotations

import json

import pytest

import imagegen
from training import DataError, fit, parse_config
from training.data.images import read_rgb

WRITERS = {
    "truncated_jpeg": lambda p: imagegen.write_truncated_jpeg(p.with_suffix(".jpg")),
    "zero_bytes": lambda p: imagegen.write_empty(p.with_suffix(".png")),
    "not_an_image": lambda p: imagegen.write_not_an_image(p.with_suffix(".jpeg")),
}


def _folder_with_bad(tmp_path, kinds):
    root, _ = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=3, n_per_class=8, size=16)
    bad = [WRITERS[k](root / "class_1" / f"zz_bad_{i}") for i, k in enumerate(kinds)]
    return root, bad


def _cfg(tmp_path, root, policy):
    return parse_config(imagegen.base_config({"source": "imagefolder", "root": str(root), "on_bad_image": policy},
                                             tmp_path))


@pytest.mark.parametrize("kind", list(WRITERS))
def test_read_rgb_raises_oserror_with_a_reason(tmp_path, kind):
    p = WRITERS[kind](tmp_path / "x")
    with pytest.raises(OSError) as ei:
        read_rgb(p)
    assert str(ei.value) and "\n" not in str(ei.value)


@pytest.mark.parametrize("kind", list(WRITERS))
def test_fail_policy_raises_one_line_data_error_naming_the_file(tmp_path, kind):
    root, (bad,) = _folder_with_bad(tmp_path, [kind])
    with pytest.raises(DataError) as ei:
        fit(_cfg(tmp_path, root, "fail"), tmp_path / "out")
    msg = str(ei.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    assert str(bad) in msg
    assert "on_bad_image: skip" in msg and "1 unreadable" in msg
    assert not (tmp_path / "out" / "last.pt").exists()


def test_fail_policy_is_the_default(tmp_path):
    root, (bad,) = _folder_with_bad(tmp_path, ["truncated_jpeg"])
    cfg = parse_config(imagegen.base_config({"source": "imagefolder", "root": str(root)}, tmp_path))
    assert cfg.data.on_bad_image == "fail"
    with pytest.raises(DataError, match="zz_bad_0.jpg"):
        fit(cfg, tmp_path / "out")


def test_skip_policy_trains_and_counts_the_skipped(tmp_path):
    root, bad = _folder_with_bad(tmp_path, list(WRITERS))
    r = fit(_cfg(tmp_path, root, "skip"), tmp_path / "out")
    assert r["skipped_images"] == 3
    assert r["n_train"] + r["n_val"] == 24
    assert r["epochs_run"] == 2
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    assert sorted(split["skipped"]) == sorted(str(p) for p in bad)
    assert all(split["skipped"].values())  # each with its reason
    used = set(split["train"]) | set(split["val"])
    assert not used & {str(p) for p in bad}
    # the same data again: the bad images come from the decode cache's record, still skipped
    r2 = fit(_cfg(tmp_path, root, "skip"), tmp_path / "out2")
    assert r2["skipped_images"] == 3


def test_fail_after_a_skip_run_still_fails(tmp_path):
    """The cache remembers bad images; a later run with 'fail' must not silently use that cache."""
    root, (bad,) = _folder_with_bad(tmp_path, ["zero_bytes"])
    fit(_cfg(tmp_path, root, "skip"), tmp_path / "out")
    with pytest.raises(DataError, match="zz_bad_0.png"):
        fit(_cfg(tmp_path, root, "fail"), tmp_path / "out2")


def test_csv_missing_file_is_skipped_with_skip_policy(tmp_path):
    f = imagegen.make_csv_multiclass(tmp_path / "csv", n_classes=2, n_per_class=8)
    with f.open("a") as fh:
        fh.write("img/missing.png,apple\n")
    cfg = parse_config(imagegen.base_config({"source": "csv", "file": str(f), "label_columns": ["label"],
                                             "on_bad_image": "skip"}, tmp_path))
    r = fit(cfg, tmp_path / "out")
    assert r["skipped_images"] == 1 and r["n_train"] + r["n_val"] == 16
