"""The headline number (issue #15): device-seconds until our search reaches the best macro-F1 that a hand-written
Optuna study finds, on the same generated JPEG task, and the ratio of the two.

    python benchmarks/headline.py --out runs/headline          # GPU: resnet18@224, 20 trials x 4 epochs, 1 seed
    python benchmarks/headline.py --cpu-smoke --out /tmp/h      # seconds on CPU: checks that the script works
    bash benchmarks/device.sh headline                          # the GPU configuration on a lent GPU machine

The task: an "apple varieties" image folder of 512x384 JPEGs (seed report 002's task), generated once into
--data-cache and reused. Each class is a variety: a base hue from red to yellow-green, a share of red blush
streaks, a density of light lenticel spots and an aspect ratio; every image varies hue, lighting, position and
size, sits on a random background with green leaf blobs, carries pixel noise, and 2% of the images are filed
under a wrong class. Neighbouring varieties overlap, so a few epochs from random init land well below 1.0 and
the hyperparameters matter.

The two arms, each a subprocess of this script, on the same files, one after the other (their order alternates
by seed):
  peer  benchmarks/peer_study.py: torchvision ImageFolder + PIL transforms (Resize, RandomHorizontalFlip,
        ToTensor, Normalize) in DataLoader workers (--workers, kept alive across trials), a timm model, a plain
        training loop, scikit-learn's macro-F1, optuna.create_study(direction="maximize") with TPESampler(seed)
        and no pruner, one offline W&B run per trial; one trial at a time. It uses none of our code.
  ours  `python -m search run --study FILE --storage sqlite:///... --output DIR --trials-per-gpu K --plain` on a
        study file this script writes: our shipped sampler (TPE, multivariate, n_startup_trials auto) and pruner
        (median) defaults, the shipped `seed_trials_with_defaults` (trial 0 runs the training config's values,
        here those of studies/apple-effb4.yaml: adamw, lr 3e-4, weight decay 0.01, dropout 0.3), W&B offline. The
        trials are read back from the store afterwards (optuna.load_study).

Kept equal in both: the search space (optimizer in adamw/adam/sgd, lr 1e-5..1e-1 log, weight decay 1e-6..1e-1
log, dropout 0..0.5; checked after the run from both arms' stored distributions), the trial budget (--trials;
ours counts complete + pruned, as `search run` does), the epochs (--epochs), the model (--model, random init), the
input size (--image-size, the 512x384 images squashed to a square in both), the batch size (--batch-size), cross
entropy, no lr schedule, a horizontal flip as the only augmentation, ImageNet normalization, SGD momentum 0.9,
each trial's torch seed (the run's seed), and the validation split: both take scikit-learn's stratified
train_test_split(test_size=0.2, random_state=0) over the same sorted file list, so they validate on the same
images (checked: ours' split.json against the peer's list). Each trial's value is its best epoch's macro-F1.
What differs is what the service does differently: the decode-once cache and on-device augmentation instead of
decoding every JPEG every epoch, bf16 autocast with channels_last (the peer uses bf16 autocast too), the batch
ceiling probe on CUDA, per-trial artifacts and checkpoints, pruning, the multivariate TPE, the defaults trial;
and our optimizers leave norms and biases out of weight decay, where the peer decays every parameter, as a plain
script does.

What is measured, and how: one time axis per arm, on this machine's wall clock, from the moment this script
starts the arm's process (so interpreter start, imports, data setup, the cache build and the batch probe all
count) to each trial's datetime_complete in Optuna (the peer's in-memory study, written out by peer_study.py;
ours from the store). Each arm holds one GPU for its whole run (CUDA_VISIBLE_DEVICES pins both to the first
visible GPU) and nothing else runs on it, so its device-seconds are those wall seconds x 1 GPU; under --cpu-smoke
the "device" is the CPU and the seconds are CPU-machine wall seconds. The target is the peer's final best macro-F1
minus 0.5 pt (same seed); each arm's time to target is the finish time of its first COMPLETE trial at or above
it (a pruned trial's partial score never counts; the peer reaches it by construction, at the latest with its
best trial). The ratio is peer's time / ours; when ours never reaches the target the ratio is reported as not
reached, with ours' best and total time, not estimated. With --seeds N each seed runs both arms (sampler seed and
torch seed = the seed) and gets its own target and ratio; the summary gives the median ratio over the seeds where
ours reached the target and says in how many it did.

--trials-per-gpu K runs K of our workers on the one GPU (each capped at 1/K of its memory; the GPU is still one
device, so device-seconds stay wall seconds x 1). The default, `auto`, is what `search run --trials-per-gpu auto`
measures (search/workers/_trials_per_gpu.py: its measuring time counts in ours' time); on CPU it is 1.

--out DIR gets table.md (what was measured, the summary, both arms' best-F1-vs-time curves as a table),
results.json (everything, every trial) and curves.png (best macro-F1 against device-seconds, both arms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

TOLERANCE = 0.005  # 0.5 pt of macro-F1: "reached the peer's best" means at least its best minus this
VAL_FRACTION = 0.2
# Ours' search space; the peer's objective suggests the same distributions under its own names (PEER_NAMES).
SPACE = {
    "optimizer.name": {"choices": ["adamw", "adam", "sgd"]},
    "optimizer.lr": {"low": 1.0e-5, "high": 1.0e-1, "log": True},
    "optimizer.weight_decay": {"low": 1.0e-6, "high": 1.0e-1, "log": True},
    "model.dropout": {"low": 0.0, "high": 0.5},
}
PEER_NAMES = {"optimizer": "optimizer.name", "lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay",
              "dropout": "model.dropout"}
# The training config's values, which ours' first trial runs (seed_trials_with_defaults): those of the shipped
# studies/apple-effb4.yaml, not values tuned to this task.
DEFAULTS = {"optimizer": {"name": "adamw", "lr": 3.0e-4, "weight_decay": 0.01}, "dropout": 0.3}


# ---------------------------------------------------------------- the task

GENERATOR = 1  # part of the cache key: a change to the drawing must not reuse images drawn by the old one


@dataclass(frozen=True)
class Task:
    classes: int = 10
    per_class: int = 240
    width: int = 512
    height: int = 384
    label_noise: float = 0.02
    hue_jitter: float = 5.0  # degrees of per-image hue spread; varieties are 80 / (classes - 1) degrees apart
    noise: float = 10.0      # pixel noise std (uint8 levels)
    seed: int = 0

    @property
    def key(self) -> str:
        return (f"g{GENERATOR}-c{self.classes}-n{self.per_class}-{self.width}x{self.height}-l{self.label_noise:g}"
                f"-j{self.hue_jitter:g}-z{self.noise:g}-s{self.seed}")

    def build(self, cache: Path) -> Path:
        """The image folder under ``cache``, drawn on first use; ``.complete`` is written last, so a build that
        was interrupted is drawn again."""
        root = cache / f"apples-{self.key}"
        if (root / ".complete").is_file():
            return root
        jobs = []
        for k in range(self.classes):
            (root / f"variety_{k:02d}").mkdir(parents=True, exist_ok=True)
            jobs += [(self, k, i, str(root / f"variety_{k:02d}" / f"{i:04d}.jpg")) for i in range(self.per_class)]
        if len(jobs) < 200:
            for j in jobs:
                _write_apple(j)
        else:
            with ProcessPoolExecutor(os.cpu_count()) as pool:
                list(pool.map(_write_apple, jobs, chunksize=32))
        (root / ".complete").write_text("")
        return root


def variety(k: int, n: int) -> dict:
    """Class k of n: hue from red to yellow-green in class order; blush, lenticels and shape permuted against it
    (3k, 7k+2, 5k+1 mod n), so no single cue orders the classes."""
    return {"hue": 8.0 + 80.0 * k / max(1, n - 1), "blush": ((3 * k) % n) / n, "speckle": ((7 * k + 2) % n) / n,
            "aspect": 0.92 + 0.16 * ((5 * k + 1) % n) / n}


def apple_image(k: int, task: Task, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of variety k."""
    from PIL import Image

    w, h, v = task.width, task.height, variety(k, task.classes)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # background: a dim, weakly coloured gradient with a few green leaves (the hues of the greener varieties)
    hue = np.full((h, w), rng.uniform(0, 360), np.float32)
    sat = np.full((h, w), rng.uniform(10, 80), np.float32)
    val = rng.uniform(70, 190) + (xx / w - 0.5) * rng.uniform(-70, 70) + (yy / h - 0.5) * rng.uniform(-70, 70)
    for _ in range(int(rng.integers(0, 4))):
        lx, ly, lr = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.08, 0.2) * h
        leaf = ((xx - lx) / (1.8 * lr)) ** 2 + ((yy - ly) / lr) ** 2 <= 1.0
        hue[leaf], sat[leaf], val[leaf] = rng.uniform(75, 120), rng.uniform(100, 200), rng.uniform(50, 130)
    # the apple: an ellipse, shaded, with blush streaks, a highlight and lenticels
    cx, cy, r = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65), h * rng.uniform(0.28, 0.40)
    ax, ay = r * v["aspect"] * rng.uniform(0.95, 1.05), r
    d2 = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2
    inside = d2 <= 1.0
    mottle = 3.0 * np.sin(xx / h * rng.uniform(6, 14) + rng.uniform(0, 6.3)) * np.cos(yy / h * rng.uniform(6, 14))
    # blush: fine streaks from the stem outwards, stronger on one cheek
    streak = 0.5 + 0.5 * np.sin(np.arctan2(yy - cy, xx - cx) * rng.uniform(18, 30) + rng.uniform(0, 6.3)
                                + 0.8 * np.sin(5.0 * d2))
    cheek_x, cheek_y = cx + ax * rng.uniform(-0.5, 0.5), cy + ay * rng.uniform(-0.5, 0.5)
    cheek = np.exp(-((xx - cheek_x) ** 2 + (yy - cheek_y) ** 2) / (2 * (0.6 * r) ** 2))
    level = v["blush"] * rng.uniform(0.7, 1.3)
    blush = np.clip((0.6 * streak + 0.6 * cheek - (1.0 - level)) * 2.0, 0.0, 0.9)
    a_hue = (v["hue"] + rng.normal(0, task.hue_jitter) + mottle) * (1 - blush) + rng.uniform(0, 6) * blush
    a_sat = rng.uniform(140, 220) + 20.0 * blush
    a_val = rng.uniform(150, 235) * (1.0 - 0.45 * d2)
    hl = np.exp(-((xx - (cx - 0.35 * ax)) ** 2 + (yy - (cy - 0.4 * ay)) ** 2) / (2 * (0.15 * r) ** 2))
    a_val, a_sat = a_val + 60.0 * hl, a_sat - 90.0 * hl
    cell = max(1, round(h / 128))  # 3-pixel spots at 384 px, still a pixel or two after the resize to 224
    grid = rng.random((h // cell + 1, w // cell + 1)) < 0.03 * v["speckle"] * rng.uniform(0.7, 1.3)
    spots = np.kron(grid, np.ones((cell, cell), bool))[:h, :w] & inside
    a_val, a_sat = np.where(spots, a_val + 55.0, a_val), np.where(spots, a_sat - 70.0, a_sat)
    hue, sat, val = np.where(inside, a_hue, hue), np.where(inside, a_sat, sat), np.where(inside, a_val, val)
    light = rng.uniform(0.75, 1.15)
    hsv = np.stack([(hue % 360.0) / 360.0 * 255.0, np.clip(sat, 0, 255), np.clip(val * light, 0, 255)], -1)
    rgb = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"), np.float32)
    return np.clip(rgb + rng.normal(0, task.noise, rgb.shape), 0, 255).astype(np.uint8)


def _write_apple(job: tuple[Task, int, int, str]) -> None:
    from PIL import Image

    task, k, i, path = job
    rng = np.random.default_rng([task.seed, k, i])  # per image: the same picture whatever the process count
    drawn = k
    if rng.random() < task.label_noise:  # filed under k, drawn as another variety
        drawn = int((k + rng.integers(1, task.classes)) % task.classes)
    Image.fromarray(apple_image(drawn, task, rng)).save(path, quality=88)


# ---------------------------------------------------------------- the arms

@dataclass(frozen=True)
class Setup:
    model: str
    image_size: int
    batch_size: int
    trials: int
    epochs: int
    device: str             # cuda | cpu
    workers: int            # the peer's DataLoader workers
    threads: int | None     # torch CPU threads of both arms (None: each its own default)
    trials_per_gpu: str   # a number, or auto
    wandb: bool


def _env(setup: Setup, ours: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_SERVICE", "WANDB_API_KEY", "SEARCH_STORAGE")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    # one GPU per arm: the first one this process sees (search run would otherwise start a worker per GPU)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    env["CUDA_VISIBLE_DEVICES"] = "" if setup.device == "cpu" else (visible or "0").split(",")[0].strip()
    if ours:  # `python -m search` from the run's own folder; on the GPU machine the package is not installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _run(cmd: list[str], cwd: Path, env: dict, log: Path) -> float:
    """Runs ``cmd``; returns the wall clock (time.time()) at its start. Exits with the log's tail on failure."""
    with log.open("w") as fh:
        started = time.time()
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"headline: {' '.join(cmd[:4])} ... exited with {code}; the end of {log}:\n{tail}")
    return started


def run_peer(setup: Setup, data: Path, seed: int, work: Path) -> dict:
    work.mkdir(parents=True)
    out = work / "peer.json"
    cmd = [sys.executable, str(HERE / "peer_study.py"), "--data", str(data), "--trials", str(setup.trials),
           "--epochs", str(setup.epochs), "--seed", str(seed), "--model", setup.model,
           "--image-size", str(setup.image_size), "--batch-size", str(setup.batch_size),
           "--val-fraction", str(VAL_FRACTION), "--device", setup.device, "--workers", str(setup.workers),
           "--work", str(work / "runs"), "--out", str(out)]
    cmd += ["--num-threads", str(setup.threads)] if setup.threads else []
    cmd += [] if setup.wandb else ["--no-wandb"]
    started = _run(cmd, work, _env(setup, ours=False), work / "log.txt")
    total = time.time() - started
    rec = json.loads(out.read_text())
    trials = [{"number": t["number"], "state": t["state"], "value": t["value"],
               "params": {PEER_NAMES.get(k, k): v for k, v in t["params"].items()},
               "epochs": setup.epochs if t["state"] == "COMPLETE" else None,
               "started_s": t["datetime_start"] - started,
               "finished_s": t["datetime_complete"] - started if t["datetime_complete"] else None}
              for t in rec["trials"]]
    dists = {}
    for t in rec["trials"]:
        dists.update({PEER_NAMES.get(k, k): json.loads(d) for k, d in t["distributions"].items()})
    return {"arm": "peer", "total_s": total, "trials": trials, "distributions": dists,
            "val_files": sorted(os.path.realpath(p) for p in rec["val_files"])}


def ours_study(name: str, setup: Setup, data: Path, seed: int, cache_dir: Path) -> dict:
    train = {"epochs": setup.epochs, "batch_size": setup.batch_size, "device": setup.device}
    if setup.threads:
        train["num_threads"] = setup.threads
    return {
        "name": name,
        "n_trials": setup.trials,
        "training": {
            "seed": seed,
            # a fresh decode cache per run: building it is part of ours' time, as on a user's first study
            "data": {"source": "imagefolder", "root": str(data), "image_size": setup.image_size,
                     "val_fraction": VAL_FRACTION, "split_seed": 0, "cache_dir": str(cache_dir)},
            "model": {"name": setup.model, "pretrained": False, "dropout": DEFAULTS["dropout"]},
            "loss": {"name": "ce"},
            "optimizer": dict(DEFAULTS["optimizer"]),
            "scheduler": {"name": "none"},
            "augment": {"train": [{"__class_fullname__": "HorizontalFlip", "p": 0.5}]},
            "train": train,
        },
        "search_space": SPACE,
        # the shipped sampler (only its seed follows the run's seed) and the shipped pruner: no pruner key
        "sampler": {"name": "tpe", "seed": seed},
        "wandb": {"enabled": setup.wandb, "project": "apple-ours", "mode": "offline"},
    }


def run_ours(setup: Setup, data: Path, seed: int, work: Path) -> dict:
    import optuna
    from optuna.trial import TrialState

    work.mkdir(parents=True)
    name = f"headline-s{seed}"
    study_file = work / f"{name}.yaml"
    study_file.write_text(yaml.safe_dump(ours_study(name, setup, data, seed, work / "decode-cache"),
                                         sort_keys=False))
    url = f"sqlite:///{work / 'study.db'}"
    cmd = [sys.executable, "-m", "search", "run", "--study", str(study_file), "--storage", url,
           "--output", str(work / "runs"), "--n-trials", str(setup.trials),
           "--trials-per-gpu", str(setup.trials_per_gpu), "--plain"]
    cmd += [] if setup.wandb else ["--no-wandb"]
    started = _run(cmd, work, _env(setup, ours=True), work / "log.txt")
    total = time.time() - started
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=url)
    trials, dists = [], {}
    for t in study.get_trials(deepcopy=False):
        dists.update({k: json.loads(optuna.distributions.distribution_to_json(d)) for k, d in t.distributions.items()})
        trials.append({"number": t.number, "state": t.state.name,
                       "value": t.value if t.state == TrialState.COMPLETE else None, "params": t.params,
                       "epochs": len(t.intermediate_values),
                       "started_s": t.datetime_start.timestamp() - started if t.datetime_start else None,
                       "finished_s": t.datetime_complete.timestamp() - started if t.datetime_complete else None})
    split = work / "runs" / name / "trial-0000" / "split.json"
    val = sorted(os.path.realpath(p) for p in json.loads(split.read_text())["val"]) if split.is_file() else None
    return {"arm": "ours", "total_s": total, "trials": trials, "distributions": dists, "val_files": val}


# ---------------------------------------------------------------- analysis

def curve(arm: dict) -> list[tuple[float, float]]:
    """(finish time, best COMPLETE macro-F1 so far) after each finished trial, in finish order."""
    best, out = 0.0, []
    for t in sorted((t for t in arm["trials"] if t["finished_s"] is not None), key=lambda t: t["finished_s"]):
        if t["state"] == "COMPLETE" and t["value"] is not None:
            best = max(best, t["value"])
        out.append((t["finished_s"], best))
    return out


def best_of(arm: dict) -> float | None:
    values = [t["value"] for t in arm["trials"] if t["state"] == "COMPLETE" and t["value"] is not None]
    return max(values) if values else None


def time_to(arm: dict, target: float) -> float | None:
    done = [t for t in arm["trials"] if t["state"] == "COMPLETE" and t["value"] is not None
            and t["value"] >= target]
    return min(t["finished_s"] for t in done) if done else None


def counts(arm: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in arm["trials"]:
        out[t["state"].lower()] = out.get(t["state"].lower(), 0) + 1
    return out


def compare(peer: dict, ours: dict, setup: Setup) -> dict:
    """One seed: the target, each arm's time to it, the ratio, and the equivalence checks."""
    peer_best = best_of(peer)
    target = None if peer_best is None else peer_best - TOLERANCE
    t_peer = None if target is None else time_to(peer, target)
    t_ours = None if target is None else time_to(ours, target)
    if target is None:
        verdict = "no target: the peer completed no trial"
    elif t_ours is None:
        ob = best_of(ours)
        verdict = (f"not reached: ours' best {ob:.4f}" if ob is not None else "not reached: ours completed no "
                   "trial") + f" < target {target:.4f} after {ours['total_s']:.1f} s"
    else:
        verdict = f"{t_peer / t_ours:.2f}x"
    finished = {a["arm"]: sum(t["state"] in ("COMPLETE", "PRUNED") for t in a["trials"]) for a in (peer, ours)}
    checks = {
        "same_space": peer["distributions"] == ours["distributions"] and set(ours["distributions"]) == set(SPACE),
        "same_val_split": ours["val_files"] is not None and peer["val_files"] == ours["val_files"],
        "peer_trials": len(peer["trials"]) == setup.trials,
        "ours_finished_trials": finished["ours"] == setup.trials,
        "no_failed_trials": not any(t["state"] == "FAIL" for a in (peer, ours) for t in a["trials"]),
    }
    return {"peer_best": peer_best, "target": target, "peer_s_to_target": t_peer, "ours_s_to_target": t_ours,
            "ratio": None if t_peer is None or t_ours is None else t_peer / t_ours, "verdict": verdict,
            "ours_best": best_of(ours), "checks": checks}


# ---------------------------------------------------------------- report

def _f(v, fmt: str = ".4f", none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def measured_text(setup: Setup, task: Task, seeds: list[int]) -> str:
    where = "GPU" if setup.device == "cuda" else "CPU"
    n_seeds, seed_text = len(seeds), ", ".join(map(str, seeds))
    return (f"Measured: wall seconds on this machine's clock from the start of each arm's process to each trial's "
            f"completion (Optuna's datetime_complete), one arm at a time, each holding one {where} for its whole run: "
            f"device-seconds = those wall seconds x 1 {where}. Target: the peer's final best macro-F1 minus "
            f"{TOLERANCE * 100:g} pt (per seed); time to target: the first COMPLETE trial at or above it; ratio: "
            f"peer's time / ours. Both arms: {setup.trials} trials x {setup.epochs} epochs, {setup.model} "
            f"(random init) at {setup.image_size} px, batch {setup.batch_size}, the same 4-parameter space and val "
            f"split; peer: ImageFolder + PIL in {setup.workers} DataLoader workers, TPE, no pruner; ours: search "
            f"run, shipped TPE and median pruner, {setup.trials_per_gpu} trial(s) per GPU. W&B "
            f"{'offline in both' if setup.wandb else 'off in both'}. Data: {task.classes} classes x "
            f"{task.per_class} JPEGs at {task.width}x{task.height}. Seeds: {n_seeds} ({seed_text}).")


def markdown(results: dict) -> str:
    lines = ["# Headline: device-seconds to the hand-written study's best macro-F1", "", results["measured"], "",
             "| seed | peer best | target | peer s to target | ours s to target | peer / ours | peer total s | "
             "ours total s | ours best | ours complete / pruned / failed | checks |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in results["seeds"]:
        c, oc = s["compare"], counts(s["ours"])
        bad = [k for k, ok in c["checks"].items() if not ok]
        lines.append(f"| {s['seed']} | {_f(c['peer_best'])} | {_f(c['target'])} | {_f(c['peer_s_to_target'], '.1f')} | "
                     f"{_f(c['ours_s_to_target'], '.1f', 'not reached')} | {c['verdict']} | "
                     f"{s['peer']['total_s']:.1f} | {s['ours']['total_s']:.1f} | {_f(c['ours_best'])} | "
                     f"{oc.get('complete', 0)} / {oc.get('pruned', 0)} / {oc.get('fail', 0)} | "
                     f"{'ok' if not bad else 'FAILED: ' + ', '.join(bad)} |")
    sm = results["summary"]
    lines += ["", f"Summary: {sm['text']}", ""]
    for s in results["seeds"]:
        lines += [f"## Seed {s['seed']}: best macro-F1 so far against device-seconds", "",
                  "| device-s | arm | trial | state | macro-F1 | arm's best so far |", "|---|---|---|---|---|---|"]
        rows = []
        for arm in (s["peer"], s["ours"]):
            best = 0.0
            for t in sorted((t for t in arm["trials"] if t["finished_s"] is not None), key=lambda t: t["finished_s"]):
                if t["state"] == "COMPLETE" and t["value"] is not None:
                    best = max(best, t["value"])
                rows.append((t["finished_s"], arm["arm"], t["number"], t["state"].lower(), t["value"], best))
        for fs, arm, n, state, value, best in sorted(rows):
            lines.append(f"| {fs:.1f} | {arm} | {n} | {state} | {_f(value)} | {best:.4f} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    colors = {"peer": "tab:orange", "ours": "tab:blue"}
    for i, s in enumerate(results["seeds"]):
        for arm in (s["peer"], s["ours"]):
            pts = curve(arm)
            if not pts:
                continue
            # from the arm's start to its process's end, where it is marked x
            xs = [0.0] + [p[0] for p in pts] + [arm["total_s"]]
            ys = [0.0] + [p[1] for p in pts] + [pts[-1][1]]
            ax.plot([xs[-1]], [ys[-1]], "x", color=colors[arm["arm"]], ms=6)
            ax.step(xs, ys, where="post", color=colors[arm["arm"]], alpha=1.0 if i == 0 else 0.5,
                    label=f"{arm['arm']} (hand-written study)" if arm["arm"] == "peer" and i == 0 else
                    ("ours (search run)" if i == 0 else None))
        c = s["compare"]
        if c["target"] is not None:
            ax.axhline(c["target"], color="grey", ls=":", lw=0.8)
            for key, arm in (("peer_s_to_target", "peer"), ("ours_s_to_target", "ours")):
                if c[key] is not None:
                    ax.plot([c[key]], [c["target"]], "o", color=colors[arm], ms=5)
    ax.set_xlabel("device-seconds (wall seconds holding one device)")
    ax.set_ylabel("best macro-F1 so far")
    ax.set_title(f"Best macro-F1 against time, {len(results['seeds'])} seed(s); dotted: target (peer's best - "
                 f"{TOLERANCE * 100:g} pt), o: reached, x: arm's end", fontsize=10)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summarize(seeds: list[dict]) -> dict:
    ratios = [s["compare"]["ratio"] for s in seeds if s["compare"]["ratio"] is not None]
    n = len(seeds)
    if ratios:
        med = statistics.median(ratios)
        text = (f"ours reached the peer's best (within {TOLERANCE * 100:g} pt) in {len(ratios)} of {n} seed(s); "
                f"median ratio peer / ours {med:.2f}x (per seed: {', '.join(f'{r:.2f}x' for r in ratios)})")
    else:
        med = None
        text = f"ours did not reach the peer's best (within {TOLERANCE * 100:g} pt) in any of {n} seed(s)"
    checks_ok = all(all(s["compare"]["checks"].values()) for s in seeds)
    if not checks_ok:
        text += "; SOME EQUIVALENCE CHECKS FAILED (see the table): the comparison is not valid as it stands"
    return {"median_ratio": med, "ratios": ratios, "reached": len(ratios), "seeds": n, "checks_ok": checks_ok,
            "text": text}


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=None, help="trial budget of each arm (ours: complete + pruned); "
                    "default 20 (3 under --cpu-smoke)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of an unpruned trial, both arms; default 4 "
                    "(2 under --cpu-smoke)")
    ap.add_argument("--seeds", type=int, default=1, help="how many seeds: sampler and torch seed of both arms")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+N-1 (a later call can add seeds "
                    "to an earlier one's without repeating them)")
    ap.add_argument("--model", default="resnet18", help="a timm model, random init in both arms")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=240)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the peer's DataLoader workers")
    ap.add_argument("--trials-per-gpu", default="auto", help="ours' workers on the one GPU: a number, or auto "
                    "(measured by `search run`)")
    ap.add_argument("--no-wandb", action="store_true", help="no W&B in either arm (default: offline in both)")
    ap.add_argument("--data-cache", type=Path, default=Path(tempfile.gettempdir()) / "imgsearch-headline",
                    help="where the generated image folder is kept between runs")
    ap.add_argument("--work", type=Path, default=None, help="the arms' runs (default: a temporary folder, removed)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "headline")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny, on CPU: 4 classes x 12 JPEGs at 64x48, "
                    "test_resnet at 32 px, 3 trials x 2 epochs, 1 thread, no DataLoader workers")
    args = ap.parse_args(argv)
    k = args.trials_per_gpu
    if k != "auto" and not (k.isdigit() and int(k) >= 1):
        ap.error(f"--trials-per-gpu must be a positive integer or auto, got {k!r}")

    if args.cpu_smoke:
        task = Task(classes=4, per_class=12, width=64, height=48)
        setup = Setup(model="test_resnet", image_size=32, batch_size=8, trials=args.trials or 3,
                      epochs=args.epochs or 2, device="cpu", workers=0, threads=1, trials_per_gpu=k,
                      wandb=not args.no_wandb)
    else:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("headline: no CUDA GPU here; run it on a GPU machine (bash benchmarks/device.sh "
                             "headline), or --cpu-smoke to check that the script works")
        task = Task(classes=args.classes, per_class=args.per_class)
        setup = Setup(model=args.model, image_size=args.image_size, batch_size=args.batch_size,
                      trials=args.trials or 20, epochs=args.epochs or 4, device="cuda", workers=args.workers,
                      threads=None, trials_per_gpu=k, wandb=not args.no_wandb)
    if setup.wandb:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise SystemExit("headline: wandb is not installed; install it or pass --no-wandb") from None

    t0 = time.perf_counter()
    data = task.build(args.data_cache)
    print(f"data: {data} ({task.classes} classes x {task.per_class} JPEGs {task.width}x{task.height}; "
          f"{time.perf_counter() - t0:.1f}s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    measured = measured_text(setup, task, list(range(args.first_seed, args.first_seed + args.seeds)))
    print(measured, flush=True)

    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="headline-")
    work = args.work or Path(tmp.name)
    seeds = []
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            arms = {}
            # alternate which arm goes first, so that neither always runs on a machine the other warmed
            order = ("peer", "ours") if seed % 2 == 0 else ("ours", "peer")
            for name in order:
                fn = run_peer if name == "peer" else run_ours
                arms[name] = fn(setup, data, seed, work / f"seed-{seed}" / name)
                a = arms[name]
                print(f"seed {seed} {name}: {len(a['trials'])} trials {counts(a)}, best {_f(best_of(a))}, "
                      f"{a['total_s']:.1f}s", flush=True)
            c = compare(arms["peer"], arms["ours"], setup)
            print(f"seed {seed}: target {_f(c['target'])}; peer reached it at {_f(c['peer_s_to_target'], '.1f')}s, "
                  f"ours at {_f(c['ours_s_to_target'], '.1f', 'never')}{'s' if c['ours_s_to_target'] else ''}; "
                  f"peer / ours: {c['verdict']}", flush=True)
            seeds.append({"seed": seed, "peer": arms["peer"], "ours": arms["ours"], "compare": c})
    finally:
        if tmp is not None:
            tmp.cleanup()

    results = {"measured": measured, "setup": asdict(setup), "task": {**asdict(task), "key": task.key},
               "space": SPACE, "peer_names": PEER_NAMES, "defaults_trial": DEFAULTS, "tolerance": TOLERANCE,
               "seeds": seeds, "summary": summarize(seeds)}
    for s in seeds:  # the file lists are for the check only
        for arm in ("peer", "ours"):
            s[arm] = {k: v for k, v in s[arm].items() if k != "val_files"}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "table.md").write_text(markdown(results) + "\n")
    plot(results, args.out / "curves.png")
    print(markdown(results).split("\n## ")[0], flush=True)
    print(f"wrote {args.out / 'table.md'}, results.json, curves.png", flush=True)
    return 0 if results["summary"]["checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
