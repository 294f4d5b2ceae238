"""`search train` in a subprocess: one JSON line last on stdout; a bad config is one 'error:' line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import imagegen
from training import load_config

SEARCH = Path(sys.executable).parent / "search"
DEMO = imagegen.ROOT / "studies" / "demo.yaml"
# every test here runs the real CLI in a subprocess, and each start spends seconds importing torch
pytestmark = pytest.mark.slow
RESULT_KEYS = {"macro_f1", "accuracy", "best_epoch", "epochs_run", "per_class_f1", "output_dir"}


def _start(tmp_path: Path, config: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SEARCH_CACHE_DIR=str(tmp_path / "cache"),
               WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    return subprocess.Popen([str(SEARCH), "train", "--config", str(config), "--output", str(tmp_path / "out"), *extra],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen, timeout: float = 240) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"search train ran past {timeout}s; stderr: {err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _train(tmp_path: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return _wait(_start(tmp_path, config, *extra))


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """The short CLI runs, started together: each spends seconds importing torch, so they overlap on 2 cores."""
    started = {}
    d = tmp_path_factory.mktemp("json")
    root, _ = imagegen.make_imagefolder(d / "imgs", n_classes=3, n_per_class=8, size=16)
    cfg = d / "run.yaml"
    cfg.write_text(yaml.safe_dump(imagegen.base_config({"source": "imagefolder", "root": str(root)},
                                                       train={"epochs": 2})))
    started["json"] = (d, _start(d, cfg, "--json"))
    d = tmp_path_factory.mktemp("unknown_key")
    (d / "bad.yaml").write_text("optimizer: {name: adamw, lrr: 0.1}\ntrain: {device: cpu}\n")
    started["unknown_key"] = (d, _start(d, d / "bad.yaml", "--json"))
    d = tmp_path_factory.mktemp("missing_data")
    (d / "bad.yaml").write_text(yaml.safe_dump(imagegen.base_config({"source": "imagefolder",
                                                                    "root": str(d / "nowhere")})))
    started["missing_data"] = (d, _start(d, d / "bad.yaml", "--json"))
    try:
        return {name: (d, _wait(p)) for name, (d, p) in started.items()}
    finally:
        for _, p in started.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no stdout; stderr: {proc.stderr[-2000:]}"
    r = json.loads(lines[-1])
    assert isinstance(r, dict)
    return r


def test_train_json_prints_the_result_as_the_last_stdout_line(quick_runs):
    tmp_path, proc = quick_runs["json"]
    r = _last_json(proc)
    classes = sorted(p.name for p in (tmp_path / "imgs").iterdir())
    assert RESULT_KEYS <= set(r)
    assert r["epochs_run"] == 2 and 1 <= r["best_epoch"] <= 2
    assert set(r["per_class_f1"]) == set(classes)
    assert 0.0 <= r["macro_f1"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
    assert Path(r["output_dir"]) == tmp_path / "out"
    assert "history" not in r
    # with --json the per-epoch progress goes to stderr, stdout holds just the result
    assert len([line for line in proc.stdout.splitlines() if line.strip()]) == 1
    assert "epoch 2/2" in proc.stderr
    for name in ("config.yaml", "metrics.json", "best.pt", "last.pt", "split.json"):
        assert (tmp_path / "out" / name).is_file()
    # errors.png, as a trial gets: the best epoch's val mistakes, drawn when there were any
    sheet = tmp_path / "out" / "errors.png"
    assert sheet.is_file() == (r["accuracy"] < 1.0)
    if r["accuracy"] < 1.0:
        assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sheet.stat().st_size > 1000
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_train_with_the_demo_study_file_uses_its_defaults(tmp_path):
    r = _last_json(_train(tmp_path, DEMO, "--json"))
    assert RESULT_KEYS <= set(r)
    assert r["epochs_run"] == 8  # the study's training.train.epochs
    assert set(r["per_class_f1"]) == {str(d) for d in range(10)}  # digits
    assert r["macro_f1"] >= 0.9
    cfg = load_config(tmp_path / "out" / "config.yaml")
    study = yaml.safe_load(DEMO.read_text())["training"]
    assert cfg.data.source == "digits" and cfg.data.image_size == study["data"]["image_size"]
    assert cfg.model.name == "test_resnet" and cfg.model.pretrained is False
    # every searched parameter is at its default: the study's training value or the space's default
    assert cfg.optimizer.name == "adamw" and cfg.optimizer.lr == pytest.approx(0.003)
    assert cfg.optimizer.weight_decay == pytest.approx(0.01)
    assert cfg.model.dropout == 0.0 and cfg.model.out_features == 0
    assert cfg.train.batch_size == 64 and cfg.loss.name == "ce" and cfg.loss.label_smoothing == 0.0
    assert cfg.scheduler.name == "cosine" and cfg.scheduler.warmup_epochs == 0.5


@pytest.mark.parametrize("problem, expect", [
    ("unknown_key", ["optimizer.lrr", "did you mean 'lr'"]),
    ("missing_data", ["data.root", "nowhere", "does not exist"]),
])
def test_bad_config_is_one_error_line_without_traceback(quick_runs, problem, expect):
    _, proc = quick_runs[problem]
    assert proc.returncode != 0
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("error: ")
    for e in expect:
        assert e in err[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not proc.stdout.strip()
