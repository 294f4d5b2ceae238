"""`search report`: one offline HTML page with a PNG per figure. On a finished tiny study (a median pruner, so
trials get pruned) every figure is drawn, each PNG opens and is not blank, the page references every one and
nothing outside its folder. A study that holds too little for a figure (one completed trial; trials without
reports or run folders) still gets a page, which says what it leaves out and why. A cv trial's confusion
matrix sums its folds. Trained studies run in-process on SQLite; the hand-made one also on Postgres."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from incli import run_main
from search import load_study
from search.observe.report import read_best_run, write_report
from search.store import open_storage
from search.workers import open_study, work
from studygen import write_study

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")

SPACE = {"optimizer.lr": {"low": 1.0e-7, "high": 3.0e-2, "log": True}, "model.dropout": {"low": 0.0, "high": 0.3}}
STUDY_PNGS = {"history.png", "importances.png", "parallel.png", "slices.png", "intermediate.png", "time.png",
              "f1_per_hour.png"}
BEST_PNGS = {"best_per_class_f1.png", "best_confusion_matrix.png", "best_curves.png", "best_errors.png"}


def _run_study(folder: Path, name: str, lrs: tuple[float, ...], *, epochs: int, cv: int | None = None,
               limit: int = 300, device: str = "cpu") -> str:
    url = f"sqlite:///{folder / 'studies.db'}"
    path = write_study(folder, name, epochs=epochs, n_trials=len(lrs), limit=limit, space=SPACE,
                       pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
                       extra_training={"train": {"device": device}})
    if cv:
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "cv": {"folds": cv}}))
    sc = load_study(str(path))
    study = open_study(sc, open_storage(url), url)
    for lr in lrs:
        study.enqueue_trial({"optimizer.lr": lr})
    work(sc, url, n_trials=len(lrs), output_root=folder / "runs", use_wandb=False, worker_index=0)
    return url


def _report(url: str, name: str, cwd: Path, capfd, monkeypatch, *extra: str):
    return run_main(["report", "--study", name, "--storage", url, "--out", "report", *extra], cwd=cwd,
                    capfd=capfd, monkeypatch=monkeypatch)


def _links(page: Path) -> list[str]:
    return re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page.read_text())


def _assert_not_blank(png: Path) -> None:
    with Image.open(png) as im:
        assert im.format == "PNG", png.name
        im.load()
        lo_hi = im.convert("RGB").getextrema()
    assert any(lo != hi for lo, hi in lo_hi), f"{png.name} is a single colour"


def test_a_finished_study_gets_every_figure_as_a_png_the_page_links_locally(tmp_path, capfd, monkeypatch):
    # two trials that learn, then weak ones the median pruner stops at their first epoch
    url = _run_study(tmp_path, "rep", (0.02, 0.01, 1.0e-7, 0.015, 1.0e-7), epochs=3)
    trials = optuna.load_study(study_name="rep", storage=open_storage(url)).trials
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}

    r = _report(url, "rep", tmp_path, capfd, monkeypatch)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no stray warning lines from matplotlib or Optuna
    out = tmp_path / "report"
    assert r.stdout.strip() == f"wrote report/index.html with {len(STUDY_PNGS | BEST_PNGS)} figures"
    pngs = {p.name for p in out.glob("*.png")}
    assert pngs == STUDY_PNGS | BEST_PNGS
    for name in pngs:
        _assert_not_blank(out / name)
    links = _links(out / "index.html")
    assert set(links) == pngs, "the page references each PNG, and nothing else"
    assert not [u for u in links if re.match(r"(?i)https?:|//", u)]
    text = (out / "index.html").read_text()
    assert "<script" not in text and "<link" not in text and "Left out" not in text
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert f"Best: trial {best.number}, macro_f1 {best.value:.4f}" in text
    assert "CPU-hour" in text  # the studies train on train.device: cpu
    assert not list(out.glob(".*.tmp")), "no temporary file is left behind"
    assert "states.png" not in text and "Trials by state" not in text  # the header already counts the states
    _assert_findings(text, optuna.load_study(study_name="rep", storage=open_storage(url)))


def _assert_findings(text: str, study: optuna.Study) -> None:
    """Under its figure, each finding states this study's numbers: the best trial, the importances and how few
    trials they rest on, which trials were pruned after which epoch, the hours, and the best rate."""
    found = [html.unescape(f) for f in re.findall(r'<p class="finding">(.*?)</p>', text)]
    assert len(found) == 5, found
    history, importances, intermediate, time, rate = found
    best, trials = study.best_trial, study.trials
    assert history.startswith(f"The best macro_f1, {best.value:.4f}, came from trial {best.number}")
    ranked = optuna.importance.get_param_importances(study)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert importances.startswith("Most important: " + ", ".join(f"{k} {v:.2f}" for k, v in ranked.items())
                                  + f"; from {len(done)} completed trials, too few for a firm ranking")
    said = {}  # "trials 2-4 after epoch 1; trial 6 after epoch 2" -> {2: 1, 3: 1, 4: 1, 6: 2}
    for numbers, epoch in re.findall(r"trials? ([-, \d]+) after epoch (\d+)", intermediate):
        for run in numbers.split(", "):
            first, _, last = run.partition("-")
            said |= {n: int(epoch) for n in range(int(first), int(last or first) + 1)}
    assert said == {t.number: t.last_step for t in trials if t.state == TrialState.PRUNED}
    assert intermediate.startswith("Pruned: ")
    assert intermediate.endswith(f"{len(done)} completed trials reported up to epoch 3.")
    hours = {t.number: t.duration.total_seconds() / 3600 for t in trials}
    assert time.startswith(f"{len(trials)} finished trials ran {sum(hours.values()):.3g} CPU-hours in all (")
    per_hour = {t.number: t.value / hours[t.number] for t in done}
    fastest = max(per_hour, key=per_hour.get)  # which one it is depends on the machine's speed

    def spent(n: int) -> str:
        return f"{per_hour[n]:,.0f} (macro_f1 {trials[n].value:.4f} in {hours[n]:.3g} CPU-hours)"

    assert rate == (f"The best trial, {fastest}, also bought the most macro_f1 per CPU-hour: {spent(fastest)}."
                    if fastest == best.number else f"Most macro_f1 per CPU-hour: trial {fastest}, {spent(fastest)}; "
                    f"the best trial, {best.number}, bought {spent(best.number)}. A high rate marks a cheap trial, "
                    "not a better model.")


def test_a_study_with_one_completed_trial_still_gets_a_page(tmp_path, capfd, monkeypatch):
    url = _run_study(tmp_path, "one", (0.02,), epochs=2)
    r = _report(url, "one", tmp_path, capfd, monkeypatch)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "report"
    text = (out / "index.html").read_text()
    for line in ("Left out: parameter importances: needs 2 completed trials, the study has 1.",
                 "Left out: parallel coordinates: needs 2 completed trials, the study has 1.",
                 "Left out: slice plots: needs 2 completed trials, the study has 1."):
        assert line in text
    assert "left out (the page says why): Parameter importances, Parallel coordinates, Slices" in r.stdout
    drawn = {p.name for p in out.glob("*.png")}
    assert drawn == STUDY_PNGS - {"importances.png", "parallel.png", "slices.png"} | BEST_PNGS
    assert set(_links(out / "index.html")) == drawn
    for name in drawn:
        _assert_not_blank(out / name)
    # a best trial whose images cannot be read now (its data moved) loses its errors sheet, not the page
    [run_cfg] = (tmp_path / "runs").rglob("config.yaml")
    cfg = yaml.safe_load(run_cfg.read_text())
    data = {k: v for k, v in cfg["data"].items() if k != "limit"}  # digits' own key
    run_cfg.write_text(yaml.safe_dump({**cfg, "data": {**data, "source": "imagefolder", "root": "moved"}}))
    r = run_main(["report", "--study", "one", "--storage", url, "--out", "again"], cwd=tmp_path, capfd=capfd,
                 monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "again" / "index.html").read_text()
    [said] = [line for line in re.findall(r"Left out:[^<]*", text) if "mistakes" in line]
    assert said.startswith("Left out: its mistakes could not be shown:")
    assert "data.root: folder &#x27;moved&#x27; does not exist" in said
    assert {p.name for p in (tmp_path / "again").glob("*.png")} == drawn - {"best_errors.png"}


def test_a_trial_records_where_train_device_auto_ran_and_the_report_counts_its_hours(tmp_path, capfd,
                                                                                    monkeypatch):
    url = _run_study(tmp_path, "where", (0.02, 0.01), epochs=1, limit=120, device="auto")
    trials = optuna.load_study(study_name="where", storage=open_storage(url)).trials
    ran_on = "cpu" if not torch.cuda.is_available() else f"cuda:0 {torch.cuda.get_device_name(0)}"
    assert [t.user_attrs["device"] for t in trials] == [ran_on] * 2
    assert [t.user_attrs["device_kind"] for t in trials] == ["CPU" if ran_on == "cpu" else "GPU"] * 2
    assert all(t.user_attrs["config"]["train"]["device"] == "auto" for t in trials)  # the export stays portable
    r = _report(url, "where", tmp_path, capfd, monkeypatch)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "report" / "index.html").read_text()
    unit = "CPU-hour" if ran_on == "cpu" else "GPU-hour"
    assert unit in text and "device-hour" not in text and "train.device is auto" not in text
    assert f"<td>{ran_on}</td>" in text


def _bare_study(url: str) -> None:
    """Trials added by hand: no intermediate values, no run folder, no recorded config."""
    study = optuna.create_study(study_name="bare", storage=url, direction="maximize")
    dist = {"optimizer.lr": FloatDistribution(1e-4, 1e-1, log=True)}
    for value, lr in ((0.5, 0.001), (0.7, 0.01), (0.6, 0.05)):
        study.add_trial(create_trial(value=value, params={"optimizer.lr": lr}, distributions=dist))


def test_what_a_study_cannot_show_is_left_out_with_the_reason(storage_url, tmp_path, capfd, monkeypatch):
    url = storage_url  # SQLite and the real Postgres: the report reads the store through Optuna alone
    _bare_study(url)
    r = _report(url, "bare", tmp_path, capfd, monkeypatch)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "report" / "index.html").read_text()
    assert ("Left out: parameter importances: the study searches 1 parameter(s); importances rank two or more."
            in text)
    assert "Left out: intermediate values: no trial reported one, so a pruner had nothing to judge." in text
    # the confusion matrix, the curves and the mistakes: all from the run folder
    assert text.count("Left out: trial 1 records no output_dir (it was not run by this tool).") == 3
    assert "Left out: trial 1 records no per_class_f1." in text
    # added trials start and end at the same instant: no time to divide by
    assert "Left out: macro_f1 per device-hour: no completed trial has a measured duration." in text
    # one parameter: its slice is still drawn, unranked
    assert {p.name for p in (tmp_path / "report").glob("*.png")} == STUDY_PNGS - {
        "importances.png", "intermediate.png", "f1_per_hour.png"}


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capfd, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    _bare_study(url)
    r = _report(url, "bair", tmp_path, capfd, monkeypatch)
    assert r.returncode == 1 and r.stderr.startswith("error: no study 'bair'") and "bare" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "report").exists()
    (tmp_path / "report").write_text("not a folder")
    r = _report(url, "bare", tmp_path, capfd, monkeypatch)
    assert r.returncode == 1 and r.stderr.splitlines() == [
        "error: --out report is a file; give a folder for index.html and its PNGs"]
    (tmp_path / "report").unlink()
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.txt").write_text("mine")
    r = _report(url, "bare", tmp_path, capfd, monkeypatch)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "holds other files" in r.stderr
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["notes.txt"]


def test_a_cv_trials_confusion_matrix_sums_its_folds_and_each_fold_has_curves(tmp_path):
    url = _run_study(tmp_path, "cvrep", (0.02,), epochs=1, cv=2, limit=200)
    study = optuna.load_study(study_name="cvrep", storage=open_storage(url))
    best = read_best_run(study.best_trial)
    folds = [json.loads((Path(best.trial.user_attrs["output_dir"]) / f"fold-{i}" / "metrics.json").read_text())
             for i in range(2)]
    assert best.folds == 2 and best.per_class_f1 == study.best_trial.user_attrs["per_class_f1"]
    n = len(best.classes)
    assert best.confusion == [[folds[0]["confusion_matrix"][i][j] + folds[1]["confusion_matrix"][i][j]
                               for j in range(n)] for i in range(n)]
    assert sum(map(sum, best.confusion)) == 200  # out of fold: every image once
    r = write_report(study, tmp_path / "report")
    assert {"best_curves_fold-0.png", "best_curves_fold-1.png", "best_confusion_matrix.png"} <= set(r.images)
    for name in r.images:
        _assert_not_blank(tmp_path / "report" / name)
    assert "its 2 folds summed, so every image counts once" in r.page.read_text()
