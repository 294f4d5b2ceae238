"""No command replaces another run's results unasked: default run folders are new ones (runs/train/CONFIG-N,
runs/full/..., runs/seeds/..., runs/cv/...), and an explicit --output that holds a finished run is refused
unless --overwrite. The README's path (a validated run, then a full-data retrain of the same config) keeps both."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from incli import run_main
from training.run_folder import finished_run_in, new_run_folder

CFG = {"seed": 0, "data": {"source": "digits", "limit": 60, "image_size": 8}, "model": {"name": "test_resnet"},
       "optimizer": {"name": "adamw", "lr": 0.01}, "scheduler": {"name": "none"},
       "train": {"epochs": 1, "batch_size": 16, "device": "cpu", "num_threads": 1, "full_data_epochs": 1}}


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _search(tmp_path, capfd, monkeypatch, *args: str):
    r = run_main(list(args), cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    return r


def test_a_full_data_retrain_after_a_validated_run_leaves_both_intact(tmp_path, capfd, monkeypatch):
    (tmp_path / "best.yaml").write_text(yaml.safe_dump(CFG))
    r = _search(tmp_path, capfd, monkeypatch, "train", "--config", "best.yaml")
    validated = tmp_path / "runs" / "train" / "best-1"
    assert f"outputs in {validated.resolve()}" in r.stdout or "outputs in runs/train/best-1" in r.stdout
    before = _digests(validated)
    assert {"best.pt", "metrics.json", "split.json", "config.yaml"} <= set(before)

    r = _search(tmp_path, capfd, monkeypatch, "train", "--config", "best.yaml", "--full-data")
    assert "runs/full/best-1" in r.stdout
    r = _search(tmp_path, capfd, monkeypatch, "train", "--config", "best.yaml")  # a second validated run: a new one
    assert "runs/train/best-2" in r.stdout
    assert _digests(validated) == before, "a later run changed the validated run's files"
    assert finished_run_in(tmp_path / "runs" / "full" / "best-1") is not None


def test_an_output_holding_a_finished_run_is_refused_unless_overwrite(tmp_path, capfd, monkeypatch):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(CFG))
    _search(tmp_path, capfd, monkeypatch, "train", "--config", "cfg.yaml", "--seeds", "0,1", "--output", "out")
    before = _digests(tmp_path / "out")
    r = run_main(["train", "--config", "cfg.yaml", "--output", "out"], cwd=tmp_path, capfd=capfd,
                 monkeypatch=monkeypatch)
    assert r.returncode == 1 and r.stderr.count("error:") == 1
    assert "--output out already holds a finished run" in r.stderr and "--overwrite" in r.stderr
    assert _digests(tmp_path / "out") == before
    # --overwrite replaces it: the earlier seed runs go with it, nothing else of the folder does
    (tmp_path / "out" / "notes.txt").write_text("mine")
    _search(tmp_path, capfd, monkeypatch, "train", "--config", "cfg.yaml", "--output", "out", "--overwrite")
    assert (tmp_path / "out" / "metrics.json").is_file() and not (tmp_path / "out" / "seed-0").exists()
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_a_default_folder_is_not_left_behind_by_a_run_that_fails(tmp_path, capfd, monkeypatch):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**CFG, "data": {"source": "imagefolder", "root": "nowhere"}}))
    r = run_main(["train", "--config", "cfg.yaml"], cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_new_run_folders_count_up_from_the_highest_taken(tmp_path):
    assert new_run_folder(tmp_path, "best").name == "best-1"
    (tmp_path / "best-7").mkdir()
    (tmp_path / "best-x").mkdir()
    assert new_run_folder(tmp_path, "best").name == "best-8"
    assert new_run_folder(tmp_path, "my config!").name == "my-config-1"


@pytest.mark.parametrize("layout", ["run", "fold", "seed", "unfinished"])
def test_a_finished_run_is_one_with_metrics(tmp_path, layout):
    sub = {"run": tmp_path, "fold": tmp_path / "fold-0", "seed": tmp_path / "seed-3",
           "unfinished": tmp_path}[layout]
    sub.mkdir(exist_ok=True)
    (sub / ("config.yaml" if layout == "unfinished" else "metrics.json")).write_text("{}")
    assert (finished_run_in(tmp_path) is None) == (layout == "unfinished")
