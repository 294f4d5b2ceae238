"""How the commands' results read: `search train` and `search cv` (reading their config, a line per epoch, the
runs' summary), `search status` as a table, parameters as key=value, predictions written, and the `next:` hints
(the command as the user can type it)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from search.study import STUDIES_DIR, is_study_file, load_study
from training.config import SEED_MAX, RunConfig, load_config, read_yaml
from training.cv import summarize
from training.errors import ConfigError

__all__ = ["read_run_config", "EpochLines", "progress_printer", "parse_seeds", "print_runs", "command_name",
           "activate_hint", "params_text", "status_lines", "print_predicted"]


def read_run_config(path: Path) -> RunConfig:
    """A training config, or a study file (a path or a shipped study's name) whose searched parameters all take
    their defaults."""
    if not path.exists() and not path.suffix and (STUDIES_DIR / f"{path}.yaml").is_file():
        path = STUDIES_DIR / f"{path}.yaml"  # `search train --config demo`, as `--study demo` names it
    raw = read_yaml(path)
    if not raw:
        raise ConfigError(f"{path}: the file is empty; a training config sets at least data and model (see "
                          "docs/training-config.md), or pass a study file")
    if is_study_file(raw):
        study = load_study(str(path))
        return study.config_for(study.default_params(), str(path))
    return load_config(path)


class EpochLines:
    """One line per epoch of ``epochs``; on stderr when stdout is kept for the JSON result. With ``folds`` (search
    cv) each line names its fold, as the folds' folders and summary lines do (fold 0 .. k-1)."""

    def __init__(self, epochs: int, as_json: bool, folds: int | None = None) -> None:
        self.epochs, self.folds, self.fold = epochs, folds, 0
        self.out = sys.stderr if as_json else sys.stdout

    def __call__(self, epoch: int, m: dict) -> None:
        where = f"epoch {epoch}/{self.epochs}" + (f" of fold {self.fold} ({self.folds} folds)" if self.folds else "")
        if m["macro_f1"] is None:  # full-data retrain: nothing validated
            line = f"{where} train_loss={m['train_loss']:.4f} (no validation)"
        else:
            line = (f"{where} macro_f1={m['macro_f1']:.4f} acc={m['accuracy']:.4f} "
                    f"train_loss={m['train_loss']:.4f} val_loss={m['val_loss']:.4f}")
        print(line, file=self.out, flush=True)

    def fold_done(self, fold: int, result: dict) -> None:
        self.fold = fold + 1


def progress_printer(epochs: int, as_json: bool, folds: int | None = None) -> EpochLines:
    return EpochLines(epochs, as_json, folds)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) > SEED_MAX:
        raise ConfigError(f"--seeds {text!r}: give distinct integers from 0 to {SEED_MAX} separated by commas, "
                          "e.g. 0,1,2")
    return seeds


def print_runs(runs: dict[int, dict], label: str, as_json: bool) -> None:
    """Each run's macro-F1, then the mean +- std; ``--json``: the last line is one object."""
    s = summarize(list(runs.values()))
    for key, r in runs.items():
        score = "no validation (full data)" if r["macro_f1"] is None else \
            f"macro_f1 {r['macro_f1']:.4f} (epoch {r['best_epoch']}/{r['epochs_run']})"
        print(f"{label} {key}: {score}; outputs in {r['output_dir']}", file=sys.stderr if as_json else sys.stdout)
    if as_json:  # cv: "folds" holds the fold scores (with mean and std); seeds: "seeds" the seeds themselves
        ids = {"folds": s["scores"]} if label == "fold" else {"seeds": list(runs)}
        print(json.dumps({**ids, "macro_f1": s["scores"], "mean": s["mean"], "std": s["std"],
                          "output_dirs": s["output_dirs"]}))
    elif s["mean"] is not None:
        print(f"macro_f1 mean {s['mean']:.4f} +- {s['std']:.4f} over {len(runs)} {label}s")


def command_name() -> str:
    """How to type this command again: ``search`` where that is on PATH and is this program (an activated venv,
    a pip install), else the path it was started by (``.venv/bin/search`` after `make demo`)."""
    me = Path(sys.argv[0])
    if me.name != "search":  # python -m search
        return f"{Path(sys.executable)} -m search"
    on_path = shutil.which("search")
    if on_path and Path(on_path).resolve() == me.resolve():
        return "search"
    return str(me)


def activate_hint(cmd: str) -> str:
    """For a venv that is not active: how to type plain ``search`` from now on."""
    activate = Path(cmd).parent / "activate"
    return f"   (or `source {activate}` once, then type `search ...`)" if cmd != "search" and activate.is_file() else ""


def params_text(params: dict) -> str:
    """``key=value`` pairs, numbers to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "(defaults)"


def status_lines(s: dict) -> list[str]:
    """`search status` as text: a head line, the best trial, then a table of the trials."""
    counts = ", ".join(f"{n} {state}" for state, n in s["counts"].items())
    budget = f" of a budget of {s['budget']}" if s["budget"] is not None else ""
    if not s["trials"]:
        return [f"study {s['study']}: no trials yet{budget}"]
    lines = [f"study {s['study']}: {s['finished']} finished{budget} ({counts})"]
    if s["stopped"]:
        lines.append(s["stopped"])
    if s.get("best"):
        b = s["best"]
        lines.append(f"best: trial {b['number']}, macro_f1 {b['value']:.4f}: {params_text(b['params'])}")
    lines.append(f"{'trial':>5}  {'state':<8}  {'macro_f1':>8}  {'seconds':>8}  params (or why it failed)")
    for t in s["trials"]:
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        seconds = "" if t["seconds"] is None else f"{t['seconds']:.1f}"
        what = params_text(t["params"]) + (f"  [{t['reason']}]" if t.get("reason") else "")
        lines.append(f"{t['number']:>5}  {t['state'].lower():<8}  {value:>8}  {seconds:>8}  {what}")
    return lines


def print_predicted(n_images: int, source: str, options: dict, out: Path) -> None:
    extra = "".join(f", {k} {v}" for k, v in options.items() if v)
    print(f"wrote {out}: {n_images} image{'s' if n_images != 1 else ''}, {source}{extra}")
