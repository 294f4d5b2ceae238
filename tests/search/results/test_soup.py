"""`search soup`: the top-k trials' weights averaged into one run folder that predict accepts; greedy never below
the best single trial; a soup of one trial is that trial; trials of another architecture are named and left out."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import imagegen
from incli import run_main
from training import fit, parse_config
from training.soup import average

DIGITS = {"source": "digits", "image_size": 16, "limit": 320}


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """Four finished runs as a study's trials leave them: three of one architecture (same init, other lr and
    weight decay: a sweep's neighbours) and one at another input size."""
    base = tmp_path_factory.mktemp("soup")
    runs = []
    for i, (lr, wd, size) in enumerate(((3e-3, 0.01, 16), (2e-3, 0.05, 16), (4e-3, 0.0, 16), (3e-3, 0.01, 12))):
        cfg = imagegen.base_config({**DIGITS, "image_size": size}, base, optimizer={"lr": lr, "weight_decay": wd},
                                   train={"epochs": 4, "batch_size": 32})
        r = fit(parse_config(cfg), base / f"trial-{i}")
        runs.append((base / f"trial-{i}", r["macro_f1"]))
    return runs


def _study(url: str, runs) -> None:
    study = optuna.create_study(study_name="soup", storage=url, direction="maximize")
    dist = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}
    for folder, value in runs:
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, params={"optimizer.lr": 0.01},
                                     distributions=dist, user_attrs={"output_dir": str(folder)}))


def test_soup_of_the_top_trials_writes_a_run_that_predict_takes(trials, tmp_path, capfd, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    odd = [(f, 1.0 if i == 3 else v) for i, (f, v) in enumerate(trials)]  # the other input size ranks first
    _study(url, odd)
    r = run_main(["soup", "--study", "soup", "--top-k", "4", "--storage", url, "--out", "soup"], cwd=tmp_path,
                 capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    # the trial at another input size ranks first, but most of the top share 16 px: the soup is theirs
    assert "note: trial 3 left out: another architecture: data.image_size [12, 12] (the soup's: [16, 16])" \
        in r.stdout, r.stdout
    rows = {line.rsplit(None, 2)[0]: float(line.rsplit(None, 2)[1]) for line in r.stdout.splitlines()
            if line.startswith(("best single", "uniform soup", "greedy soup", "soft-vote"))}
    assert len(rows) == 4, r.stdout
    best = next(v for k, v in rows.items() if k.startswith("best single"))
    greedy = next(v for k, v in rows.items() if k.startswith("greedy soup"))
    assert greedy >= best  # greedy starts from the best and keeps only what does not lower it
    out = tmp_path / "soup"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["macro_f1"] == pytest.approx(greedy, abs=5e-5) and metrics["soup"]["how"] == "greedy"
    assert all("trial-3" not in ing["folder"] for ing in metrics["soup"]["ingredients"])
    images, _ = imagegen.make_imagefolder(tmp_path / "imgs", n_classes=3, n_per_class=2, size=16)
    p = run_main(["predict", "--run", str(out), "--images", str(images), "--out", "pred.csv"], cwd=tmp_path,
                 capfd=capfd, monkeypatch=monkeypatch)
    assert p.returncode == 0, p.stderr
    again = run_main(["soup", "--study", "soup", "--top-k", "2", "--storage", url, "--out", "soup"], cwd=tmp_path,
                     capfd=capfd, monkeypatch=monkeypatch)
    assert again.returncode == 1 and "already holds a finished run" in again.stderr
    into = run_main(["soup", "--study", "soup", "--top-k", "2", "--storage", url, "--out", str(trials[0][0])],
                    cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert into.returncode == 1 and "one of the trials to average" in into.stderr


def test_a_soup_of_one_trial_is_that_trial(trials, tmp_path, capfd, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    _study(url, trials[:1])
    r = run_main(["soup", "--study", "soup", "--top-k", "1", "--storage", url, "--out", "one", "--uniform"],
                 cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    folder, value = trials[0]
    mine, theirs = (torch.load(f / "best.pt", weights_only=True) for f in (tmp_path / "one", folder))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["macro_f1"] == pytest.approx(value)


def test_average_means_floats_and_keeps_counts():
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    soup = average([a, b])
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0])) and int(soup["n"]) == 5


def test_runs_on_another_eval_path_or_split_do_not_go_into_one_soup(trials):
    from dataclasses import replace

    from training.soup import mismatch, read_ingredient

    first = read_ingredient(trials[0][0], "trial 0")
    same = read_ingredient(trials[1][0], "trial 1")
    assert mismatch(first, same) is None
    other_norm = replace(same, cfg=same.cfg.model_copy(update={"augment": same.cfg.augment.model_copy(
        update={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)})}))
    assert mismatch(first, other_norm).startswith("another eval path: normalization (mean, std)")
    assert "validated on other images" in mismatch(first, replace(same, val=same.val[1:]))
