"""Inference on finished runs (training/inference): the three input layouts, the CSV columns, agreement with the
run's own validation, multi-label decisions, voting and hflip TTA, checked against hand computations."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix

import imagegen
import rungen
from incli import run_main
from training.inference import predict, vote

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> rungen.Runs:
    return rungen.trained_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def test_images(tmp_path_factory) -> tuple[Path, list[str], list[int]]:
    """A folder of 16 px test images, nested, written in an order that is not the sorted one: 4 per class and
    4 of pure noise (on which the runs disagree). Returns (folder, sorted relative names, class or -1)."""
    root = tmp_path_factory.mktemp("test-images")
    rng = np.random.default_rng(7)
    made = {}
    for k in (2, 0, 1):
        for i in range(4):
            name = f"{'zb'[i % 2]}/c{k}-{i}.png" if k != 1 else f"a/deep/c{k}-{i}.png"
            imagegen.save_image(imagegen.class_image(k, 16, rng), root / name)
            made[name] = k
    for i in range(4):
        imagegen.save_image(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), root / f"noise-{i}.png")
        made[f"noise-{i}.png"] = -1
    names = sorted(made)
    return root, names, [made[n] for n in names]


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _cli(args, tmp_path, capfd, monkeypatch):
    r = run_main(["predict", *map(str, args)], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    assert not re.search(r"^[A-Z]+ [\w.]+: ", r.stdout + r.stderr, re.M), "a logger's raw line: " + r.stderr
    return r


# ---------------------------------------------------------------- layouts and columns

def test_folder_list_and_eval_layouts_one_row_per_image_in_input_order(runs, test_images, tmp_path, capfd,
                                                                       monkeypatch):
    root, names, _ = test_images
    want = rungen.hand_probabilities(runs.r1, [root / n for n in names], *rungen.NORMALIZE["r1"]).argmax(axis=1)
    expected = dict(zip(names, want))

    # a folder: every image under it, recursively, sorted by relative path
    _cli(["--run", runs.r1, "--images", root, "--out", tmp_path / "folder.csv"], tmp_path, capfd, monkeypatch)
    header, rows = _read(tmp_path / "folder.csv")
    assert header == ["image", "class", "index"]
    assert [r[0] for r in rows] == names
    assert [int(r[2]) for r in rows] == [int(expected[n]) for n in names]
    assert all(r[1] == runs.classes[int(r[2])] for r in rows)

    # a CSV list (its own order; paths relative to the CSV, one absolute) and a text list
    order = names[:]
    random.Random(3).shuffle(order)
    listed = [str(root / order[0])] + [f"imgs/{n}" for n in order[1:]]
    (tmp_path / "imgs").symlink_to(root, target_is_directory=True)
    (tmp_path / "list.csv").write_text("id,path\n" + "".join(f"{i},{p}\n" for i, p in enumerate(listed)))
    (tmp_path / "list.txt").write_text("# test images\n" + "\n".join(listed[::-1]) + "\n\n")
    for src, ids in (("list.csv", listed), ("list.txt", listed[::-1])):
        r = predict([runs.r1], tmp_path / src, tmp_path / f"{src}.out")
        header, rows = _read(tmp_path / f"{src}.out")
        assert header == ["image", "class", "index"] and [row[0] for row in rows] == ids
        by_name = [Path(p).relative_to(root if Path(p).is_absolute() else "imgs").as_posix() for p in ids]
        assert [int(row[2]) for row in rows] == [int(expected[n]) for n in by_name] == list(r.decision)

    # the mask eval layout: ImageID,ans in info.csv's order, given as the folder or as the file
    ev = tmp_path / "eval"
    ids = [f"{i:02d}{Path(n).stem}.png" for i, n in enumerate(order)]
    for image_id, n in zip(ids, order):
        (ev / "images").mkdir(parents=True, exist_ok=True)
        (ev / "images" / image_id).write_bytes((root / n).read_bytes())
    (ev / "info.csv").write_text("ImageID,ans\n" + "".join(f"{i},\n" for i in ids))
    for given in (ev, ev / "info.csv"):
        _cli(["--run", runs.r1, "--images", given, "--out", tmp_path / "sub.csv"], tmp_path, capfd, monkeypatch)
        header, rows = _read(tmp_path / "sub.csv")
        assert header == ["ImageID", "ans"]
        assert rows == [[i, str(int(expected[n]))] for i, n in zip(ids, order)]


def test_probabilities_columns_are_the_class_probabilities(runs, test_images, tmp_path, capfd, monkeypatch):
    root, names, _ = test_images
    _cli(["--run", runs.r2, "--images", root, "--out", tmp_path / "p.csv", "--probabilities"], tmp_path, capfd,
         monkeypatch)
    header, rows = _read(tmp_path / "p.csv")
    assert header == ["image", *runs.classes] and [r[0] for r in rows] == names
    got = np.asarray([[float(v) for v in r[1:]] for r in rows])
    hand = rungen.hand_probabilities(runs.r2, [root / n for n in names], *rungen.NORMALIZE["r2"])
    np.testing.assert_allclose(got, hand, atol=2e-6)  # written with 6 decimals


def test_multilabel_run_writes_a_0_1_column_per_label_at_its_threshold(runs, tmp_path):
    rng = np.random.default_rng(11)
    on = [[True, False, True], [False, False, False], [True, True, True], [False, True, False]] * 2
    for i, flags in enumerate(on):
        imagegen.save_image(imagegen.label_image(flags, 16, rng), tmp_path / "ml" / f"{i}.png")
    paths = sorted((tmp_path / "ml").glob("*.png"))
    r = predict([runs.multilabel], tmp_path / "ml", tmp_path / "ml.csv")
    header, rows = _read(tmp_path / "ml.csv")
    assert header == ["image", *runs.labels]
    hand = rungen.hand_probabilities(runs.multilabel, paths, *rungen.NORMALIZE["multilabel"], multilabel=True)
    want = (hand > 0.4).astype(int)  # the run's train.threshold, not 0.5
    assert [[int(v) for v in row[1:]] for row in rows] == want.tolist() == r.decision.tolist()
    assert {v for row in rows for v in row[1:]} <= {"0", "1"}


# ---------------------------------------------------------------- the run's own validation

@pytest.mark.parametrize("name", ["r1", "r2", "r3"])
def test_predicting_the_val_images_reproduces_the_runs_validation(runs, name, tmp_path, capfd, monkeypatch):
    """best.pt is the best epoch's weights and metrics.json holds that epoch's confusion matrix: predicting the
    val images of split.json must give exactly that matrix (same decoding, eval pipeline and normalization)."""
    run = getattr(runs, name)
    val = json.loads((run / "split.json").read_text())["val"]
    (tmp_path / "val.txt").write_text("\n".join(val))
    _cli(["--run", run, "--images", tmp_path / "val.txt", "--out", tmp_path / "val.csv"], tmp_path, capfd,
         monkeypatch)
    _, rows = _read(tmp_path / "val.csv")
    assert [r[0] for r in rows] == val
    truth = [runs.classes.index(Path(p).parent.name) for p in val]
    cm = confusion_matrix(truth, [int(r[2]) for r in rows], labels=range(len(runs.classes))).tolist()
    assert cm == json.loads((run / "metrics.json").read_text())["confusion_matrix"]


def test_a_factorized_portrait_run_with_a_crop_reproduces_its_validation(tmp_path, capfd, monkeypatch):
    """The mask task as users set it up: three heads, portrait input, a center crop before the resize."""
    from training import fit, parse_config
    from training.data.sources import load_samples

    images, _ = imagegen.make_mask_tree(tmp_path / "mask", n_people=8, size=16)
    data = {"source": "mask", "root": str(images), "image_size": [12, 8], "center_crop": [14, 10]}
    cfg = parse_config(imagegen.base_config(data, tmp_path, model={"head": "factorized"}, train={"epochs": 3}))
    fit(cfg, tmp_path / "run")
    val = json.loads((tmp_path / "run" / "split.json").read_text())["val"]
    (tmp_path / "val.txt").write_text("\n".join(val))
    _cli(["--run", tmp_path / "run", "--images", tmp_path / "val.txt", "--out", tmp_path / "val.csv"], tmp_path,
         capfd, monkeypatch)
    samples = load_samples(cfg.data)
    target = dict(zip(samples.names, samples.targets.tolist()))
    _, rows = _read(tmp_path / "val.csv")
    cm = confusion_matrix([target[p] for p in val], [int(r[2]) for r in rows], labels=range(18)).tolist()
    assert cm == json.loads((tmp_path / "run" / "metrics.json").read_text())["confusion_matrix"]


# ---------------------------------------------------------------- voting and TTA

def test_vote_by_hand_made_probabilities():
    a = np.array([[0.6, 0.4, 0.0], [0.9, 0.1, 0.0]], np.float32)
    b = np.array([[0.3, 0.7, 0.0], [0.45, 0.55, 0.0]], np.float32)
    c = np.array([[0.3, 0.7, 0.0], [0.45, 0.55, 0.0]], np.float32)
    # two runs disagree: a tie, won by the higher mean probability (0.55 for class 1 in row 0, 0.675 class 0 row 1)
    assert vote([a, b], "hard", False, [0.5, 0.5]).tolist() == [1, 0]
    # three runs: the majority (class 1 twice) beats a higher mean probability of class 0 (row 1: 0.6 > 0.4)
    assert vote([a, b, c], "hard", False, [0.5] * 3).tolist() == [1, 1]
    assert vote([a, b, c], "soft", False, [0.5] * 3).tolist() == [1, 0]
    # multi-label: per label; hard at each run's own threshold, a tie by the mean against the mean threshold
    p, q = np.array([[0.7, 0.2, 0.55]], np.float32), np.array([[0.25, 0.45, 0.2]], np.float32)
    # p says [1, 0, 1] (threshold 0.5), q [0, 1, 0] (0.4): every label tied; means 0.475, 0.325, 0.375 vs 0.45
    assert vote([p, q], "hard", True, [0.5, 0.4]).tolist() == [[1, 0, 0]]
    assert vote([p, q], "soft", True, [0.5, 0.4]).tolist() == [[1, 0, 0]]
    # q twice: its [0, 1, 0] is the majority; the means (0.4, 0.367, 0.317) are all below 0.433
    assert vote([p, q, q], "hard", True, [0.5, 0.4, 0.4]).tolist() == [[0, 1, 0]]
    assert vote([p, q, q], "soft", True, [0.5, 0.4, 0.4]).tolist() == [[0, 0, 0]]


def _hand_hard(probs: list[np.ndarray]) -> list[int]:
    out = []
    for i in range(len(probs[0])):
        votes = [int(p[i].argmax()) for p in probs]
        top = max(votes.count(c) for c in set(votes))
        tied = sorted(c for c in set(votes) if votes.count(c) == top)
        mean = sum(p[i] for p in probs) / len(probs)
        out.append(max(tied, key=lambda c: (mean[c], -c)))
    return out


def test_voting_equals_the_single_run_for_identical_runs_and_a_hand_vote_for_different_ones(runs, test_images):
    root = test_images[0]
    one = predict([runs.r1], root)
    for how in ("soft", "hard"):
        two = predict([runs.r1, runs.r1], root, how=how)
        assert two.decision.tolist() == one.decision.tolist()
        np.testing.assert_array_equal(two.probabilities, one.probabilities)
    single = [predict([r], root).probabilities for r in (runs.r1, runs.r2, runs.r3)]
    assert len({tuple(p.argmax(axis=1)) for p in single}) > 1, "the runs agree everywhere: the vote is untested"
    for subset in ([0, 1], [0, 1, 2]):
        ps = [single[k] for k in subset]
        group = [(runs.r1, runs.r2, runs.r3)[k] for k in subset]
        soft, hard = predict(group, root, how="soft"), predict(group, root, how="hard")
        np.testing.assert_allclose(soft.probabilities, sum(ps) / len(ps), atol=1e-6)
        assert soft.decision.tolist() == (sum(ps) / len(ps)).argmax(axis=1).tolist()
        assert hard.decision.tolist() == _hand_hard(ps)


def test_hflip_tta_is_the_mean_of_the_image_and_its_mirror_and_each_file_is_read_once(runs, test_images, tmp_path,
                                                                                      monkeypatch):
    root, names, _ = test_images
    for n in names:  # the mirror images as files of their own
        (tmp_path / "mirror" / n).parent.mkdir(parents=True, exist_ok=True)
        Image.open(root / n).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirror" / n)
    plain, mirrored = predict([runs.r3], root), predict([runs.r3], tmp_path / "mirror")

    import training.inference.passes as passes

    reads = []
    real = passes.read_rgb
    monkeypatch.setattr(passes, "read_rgb", lambda p: reads.append(p) or real(p))
    tta = predict([runs.r3], root, tmp_path / "tta.csv", tta="hflip", probabilities=True)
    np.testing.assert_allclose(tta.probabilities, (plain.probabilities + mirrored.probabilities) / 2, atol=1e-6)
    assert sorted(reads) == sorted(root / n for n in names)  # once, although the mirror image is predicted too

    reads.clear()  # two geometries (16 and 12 px), three runs, TTA: still one read per file
    predict([runs.r1, runs.r3, runs.r2], root, tta="hflip")
    assert len(reads) == len(names)


def test_images_decoded_in_chunks_give_the_same_rows(runs, test_images, monkeypatch):
    """Large sets are decoded a chunk at a time (the next while the models work): same rows, same order."""
    import training.inference.passes as passes

    root = test_images[0]
    whole = predict([runs.r1, runs.r3], root, tta="hflip")
    monkeypatch.setattr(passes, "CHUNK", 5)  # 16 images: chunks of 5, 5, 5, 1
    chunked = predict([runs.r1, runs.r3], root, tta="hflip")
    assert chunked.inputs.ids == whole.inputs.ids
    np.testing.assert_allclose(chunked.probabilities, whole.probabilities, atol=1e-6)
