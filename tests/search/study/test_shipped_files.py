"""Every shipped study validates; docker-compose.yml is valid and runs only real invocations of our CLI."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import typer
import yaml

from search import load_study
from search.cli import app
from search.study import STUDIES_DIR

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))


def test_the_required_studies_ship():
    assert {"demo", "apple-effb4", "mask-effb4", "mask-effb0", "superbin-resnet18"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_validates_and_trains_as_one_config(name):
    sc = load_study(name)
    assert sc.name == name
    cfg = sc.config_for(sc.default_params(), name)  # every searched parameter has a default
    assert cfg.train.epochs >= 1
    assert sc.space, "a study searches something"


def test_shipped_studies_follow_the_user_reports():
    apple = load_study("apple-effb4")
    assert apple.base["model"]["name"] == "efficientnet_b4" and apple.base["data"]["source"] == "imagefolder"
    assert {"model.out_features", "model.dropout", "optimizer.lr", "optimizer.name"} <= set(apple.space)
    for mask in ("mask-effb4", "mask-effb0"):
        sc = load_study(mask)
        assert sc.base["data"]["source"] == "mask" and "loss.gamma" in sc.space
    assert load_study("mask-effb4").space["loss.gamma"].when == {}
    assert load_study("mask-effb0").space["loss.gamma"].when == {"loss.name": "focal"}  # conditional
    sb = load_study("superbin-resnet18")
    assert sb.base["loss"]["name"] == "bce" and sb.base["optimizer"]["scale_lr_with_batch"] is True
    assert len(sb.base["data"]["label_columns"]) == 4


def test_mask_studies_train_at_the_photos_portrait_shape():
    data = {}
    for mask in ("mask-effb4", "mask-effb0"):
        sc = load_study(mask)
        data[mask] = sc.config_for(sc.default_params(), mask).data
        h, w = data[mask].hw
        assert h > w and h % 32 == 0 and w % 32 == 0, (mask, h, w)  # the 512 x 384 photos are portrait
    assert data["mask-effb4"].center_crop == (450, 360)  # seed 001's crop


def _expand(arg: str) -> str:
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), arg)


def test_compose_file_is_valid_and_commands_are_our_cli():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "dashboard", "worker"} <= set(services)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    gpus = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    # one container per host holds all its GPUs and `search run` pins one worker per GPU (replicas made with
    # --scale and `count: 1` would all get GPU 0)
    assert gpus["capabilities"] == ["gpu"] and gpus["count"] == "all" and services["worker"]["command"][1] == "run"
    # a worker container that fails on a bad config is not restarted forever
    assert re.fullmatch(r"on-failure:\d+", services["worker"]["restart"])
    click_cmd = typer.main.get_command(app)
    for name in ("dashboard", "worker"):
        cmd = [_expand(a) for a in services[name]["command"]]
        assert cmd[0] == "search"
        sub = click_cmd.commands[cmd[1]]
        ctx = sub.make_context(cmd[1], cmd[2:])  # raises on an unknown option or a bad value
        assert ctx.params
        assert services[name]["env_file"] == ".env"
    # secrets come from the env file, never from the committed compose file
    text = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD" not in text and "WANDB_API_KEY" not in text
    assert (ROOT / ".env.example").is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0
    assert ignored, ".env must be git-ignored"
    # the dashboard is published on loopback only
    assert all(p.startswith("127.0.0.1:") for p in services["dashboard"]["ports"])


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make demo" in readme
