"""`search audit`: out-of-fold probabilities from k grouped folds, then cleanlab. On a generated set whose labels
are right but for a few flipped ones, the flipped images come first; the CSV works as data.exclude and
data.relabel; a mask person whose images agree on another gender is named."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

import imagegen
from incli import run_main
from training import fit, parse_config
from training.audit import audit
from training.data.sources import load_samples

FLIPPED = 4


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    """6 learnable classes of 14 images; FLIPPED of them moved into another class's folder."""
    tmp = tmp_path_factory.mktemp("audit")
    root, _ = imagegen.make_imagefolder(tmp / "imgs", n_classes=6, n_per_class=14, size=16, seed=5)
    classes = sorted(p.name for p in root.iterdir())
    moved = []
    for k in range(FLIPPED):  # image 0 of class k is labelled class k+1
        src = sorted((root / classes[k]).iterdir())[0]
        dst = root / classes[k + 1] / f"flipped_{src.name}"
        shutil.move(src, dst)
        moved.append(str(dst))
    cfg = imagegen.base_config({"source": "imagefolder", "root": str(root)}, tmp, train={"epochs": 6},
                               optimizer={"name": "adamw", "lr": 0.01})
    result = audit(parse_config(cfg), tmp / "audit", folds=3)
    return tmp, cfg, moved, result


def test_the_flipped_labels_come_first(flipped):
    _, _, moved, r = flipped
    assert r.n_images == 6 * 14
    assert {i.name for i in r.issues[:FLIPPED]} == set(moved), [i.name for i in r.issues[:8]]
    for i in r.issues[:FLIPPED]:  # each one's suggested label is the class it was taken from
        assert i.suggested != i.given
    rows = list(csv.DictReader(r.csv.open()))
    assert [row["path"] for row in rows] == [i.name for i in r.issues]
    assert r.sheet is not None and r.sheet.is_file()


def test_the_issues_csv_works_as_exclude_and_relabel(flipped, tmp_path):
    tmp, cfg, moved, r = flipped
    top = tmp_path / "top.csv"
    with r.csv.open() as fh, top.open("w", newline="") as out:
        rows = list(csv.DictReader(fh))[:FLIPPED]
        w = csv.DictWriter(out, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    base = parse_config(cfg).data
    excluded = load_samples(base.model_copy(update={"exclude": top}))
    assert len(excluded) == 6 * 14 - FLIPPED and not set(moved) & set(excluded.names)
    relabeled = load_samples(base.model_copy(update={"relabel": top}))
    fixed = {n: relabeled.classes[int(t)] for n, t in zip(relabeled.names, relabeled.targets) if n in moved}
    assert fixed == {row["path"]: row["suggested"] for row in rows}
    # each is its own data set to the decode cache, and a run records what it left out and changed
    assert len({load_samples(base).key, excluded.key, relabeled.key}) == 3
    run = parse_config({**cfg, "data": {**cfg["data"], "exclude": str(top)}, "train": {**cfg["train"], "epochs": 1}})
    fit(run, tmp_path / "run")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["excluded"] == sorted(moved) and not set(moved) & set(split["train"] + split["val"])
    assert len(split["train"]) + len(split["val"]) == 6 * 14 - FLIPPED


def test_a_multilabel_audit_ranks_the_flipped_labels_first_and_its_suggestions_undo_them(tmp_path):
    f = imagegen.make_csv_multilabel(tmp_path / "ml", n=90, size=16, seed=1)
    rows = list(csv.DictReader(f.open()))
    truth = {r["path"]: dict(r) for r in rows}
    for i in (5, 20, 41, 66):  # one label each turned the other way
        label = ("red", "green", "blue")[i % 3]
        rows[i][label] = str(1 - int(rows[i][label]))
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = imagegen.base_config({"source": "csv", "file": str(f), "label_columns": ["red", "green", "blue"]},
                               tmp_path, train={"epochs": 8}, loss={"name": "bce"},
                               optimizer={"name": "adamw", "lr": 0.01})
    r = audit(parse_config(cfg), tmp_path / "audit", folds=3)
    top = [Path(i.name).name for i in r.issues[:4]]
    assert sorted(top) == ["005.png", "020.png", "041.png", "066.png"], [(i.name, i.score) for i in r.issues]
    with r.csv.open() as fh, (tmp_path / "fix.csv").open("w", newline="") as out:
        fixes = list(csv.DictReader(fh))[:4]
        w = csv.DictWriter(out, fieldnames=list(fixes[0]))
        w.writeheader()
        w.writerows(fixes)
    fixed = load_samples(parse_config({**cfg, "data": {**cfg["data"], "relabel": str(tmp_path / "fix.csv")}}).data)
    for name, target in zip(fixed.names, fixed.targets):
        rel = str(Path(name).relative_to(f.parent))
        assert [int(v) for v in target] == [int(truth[rel][c]) for c in ("red", "green", "blue")], rel


def test_search_audit_from_a_cv_prints_what_it_found(flipped, tmp_path, capfd, monkeypatch):
    tmp, _, _, r = flipped
    out = run_main(["audit", "--from-cv", str(tmp / "audit" / "folds"), "--out", "again"], cwd=tmp_path,
                   capfd=capfd, monkeypatch=monkeypatch)
    assert out.returncode == 0, out.stderr
    assert f"{len(r.issues)} of {6 * 14} images look mislabeled" in out.stdout
    assert (tmp_path / "again" / "label_issues.csv").read_text() == r.csv.read_text()


def test_a_mask_person_whose_images_say_another_gender_is_named(tmp_path):
    images, people = imagegen.make_mask_tree(tmp_path / "mask", n_people=36, size=16, seed=2)
    victim = people[0]  # male on disk: labelled female
    (images / victim.folder).rename(images / victim.folder.replace("_male_", "_female_"))
    cfg = imagegen.base_config({"source": "mask", "root": str(images)}, tmp_path, train={"epochs": 8},
                               optimizer={"name": "adamw", "lr": 0.01})
    r = audit(parse_config(cfg), tmp_path / "audit", folds=3)
    named = [line for line in r.people if line.startswith(f"person {victim.id}:")]
    assert named and "given female" in named[0] and "say male" in named[0] and "for gender" in named[0], r.people
    assert len(r.people) <= 3, r.people  # the others' labels are right: few (if any) false alarms


def test_an_earlier_audit_is_refused_or_cleared_whole(tmp_path):
    """--out naming an earlier audit: refused; with --overwrite its files and all its folds go first (a
    3-fold audit's fold-2 must not join a 2-fold one)."""
    from training.audit import OUTPUTS
    from training.errors import ConfigError
    from training.run_folder import output_folder

    out = tmp_path / "aud"
    (out / "folds" / "fold-2").mkdir(parents=True)
    for name in ("label_issues.csv", "label_issues.png", "oof_probabilities.csv", "notes.txt"):
        (out / name).write_text("x")
    with pytest.raises(ConfigError, match="already holds a finished run .*label_issues.csv.*--overwrite"):
        with output_folder(out, tmp_path / "runs", "x", False, option="--out", outputs=OUTPUTS):
            pass
    with output_folder(out, tmp_path / "runs", "x", True, option="--out", outputs=OUTPUTS) as folder:
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # the user's own file stays


def test_search_audit_reads_an_earlier_audits_folds_and_refuses_a_partial_cv(flipped, tmp_path, capfd,
                                                                              monkeypatch):
    tmp, _, _, r = flipped
    out = run_main(["audit", "--from-cv", str(tmp / "audit"), "--out", "again"], cwd=tmp_path, capfd=capfd,
                   monkeypatch=monkeypatch)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "again" / "label_issues.csv").read_text() == r.csv.read_text()
    shutil.copytree(tmp / "audit" / "folds", tmp_path / "partial")
    shutil.rmtree(tmp_path / "partial" / "fold-1")
    out = run_main(["audit", "--from-cv", "partial", "--out", "half"], cwd=tmp_path, capfd=capfd,
                   monkeypatch=monkeypatch)
    assert out.returncode != 0 and out.stderr.count("error:") == 1
    assert "its 2 folds validate" in out.stderr and f"of the data set's {6 * 14} images" in out.stderr
    assert not (tmp_path / "half").exists()
