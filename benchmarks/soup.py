"""Model soups on digits: the best single trial vs the uniform soup vs the greedy soup vs the soft-vote ensemble of
the same top-k trials, through the real service (`search run`, then `search soup`).

Per study seed: a fresh study on scikit-learn's digits (test_resnet at 16 px, every trial from the same random
init, `seed: 0`, as a sweep's trials share a pretrained start), searching lr, weight decay, dropout and label
smoothing with TPE; then `search soup --top-k K` (greedy, and again --uniform). It prints and writes
``results.md``: per seed, the val macro-F1 of each candidate and the forward passes per image, and the medians.
All on the trials' shared validation split (no separate test set: the greedy soup is chosen on it, so its edge
over the uniform soup is optimistic, as in Wortsman et al.'s held-out-val setting it is not).

    python benchmarks/soup.py        # 2 seeds x 8 trials x 5 epochs, top 4 (RESULTS.md): ~3 min a seed on 2 cores
    python benchmarks/soup.py --seeds 1 --trials 4 --epochs 2 --top-k 3   # a quick look
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("best single", "uniform soup", "greedy soup", "soft-vote ensemble")


def study(name: str, seed: int, trials: int, epochs: int) -> dict:
    return {
        "name": name, "n_trials": trials, "seed_trials_with_defaults": False,
        "training": {"seed": 0, "data": {"source": "digits", "image_size": 16, "val_fraction": 0.25},
                     "model": {"name": "test_resnet"}, "optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.01},
                     "scheduler": {"name": "cosine"},
                     "train": {"epochs": epochs, "batch_size": 64, "device": "cpu", "precision": "fp32"}},
        "search_space": {"optimizer.lr": {"low": 1e-3, "high": 1e-2, "log": True},
                         "optimizer.weight_decay": {"low": 1e-4, "high": 0.1, "log": True},
                         "model.dropout": {"low": 0.0, "high": 0.5},
                         "loss.label_smoothing": {"low": 0.0, "high": 0.2}},
        "sampler": {"name": "tpe", "seed": seed}, "pruner": {"name": "none"},
        "wandb": {"enabled": False}, "artifacts": {"keep_top_k": 0},
    }


def search(*args: str, cwd: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"search {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


def table(stdout: str) -> dict[str, float]:
    """The soup command's side-by-side lines: what -> val macro-F1."""
    out = {}
    for line in stdout.splitlines():
        for row in ROWS:
            if line.startswith(row):
                out[row] = float(re.split(r"\s{2,}", line.strip())[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "soup-benchmark")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out.resolve()
    rows = []
    for seed in range(args.seeds):
        name = f"soup-bench-s{seed}-t{args.trials}-e{args.epochs}"  # a study of other settings is another store
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(study(name, seed, args.trials, args.epochs), sort_keys=False))
        db = f"sqlite:///{work / f'{name}.db'}"
        t0 = time.perf_counter()
        if not (work / f"{name}.db").is_file():
            search("run", "--study", str(path), "--storage", db, "--no-wandb", "--output", str(work / "runs"),
                   "--plain", "--workers", "1", cwd=work)
        run_s = time.perf_counter() - t0
        greedy = table(search("soup", "--study", name, "--storage", db, "--top-k", str(args.top_k), "--out",
                              str(work / f"{name}-greedy"), "--overwrite", cwd=work))
        uniform = table(search("soup", "--study", name, "--storage", db, "--top-k", str(args.top_k), "--uniform",
                               "--out", str(work / f"{name}-uniform"), "--overwrite", cwd=work))
        assert greedy == uniform, (greedy, uniform)  # the same comparison, whichever soup is written
        rows.append(greedy)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in greedy.items()) + f" (search {run_s:.0f}s)",
              flush=True)
    k = args.top_k
    lines = [f"digits, test_resnet at 16 px, {args.trials} TPE trials x {args.epochs} epochs per study seed, top "
             f"{k}; val macro-F1 on the trials' shared val split (1/4 of digits); `python benchmarks/soup.py "
             f"--seeds {args.seeds} --trials {args.trials} --epochs {args.epochs} --top-k {k}`", "",
             "| | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | median | forward passes per image |",
             "|---|" + "---|" * (args.seeds + 2)]
    for row in ROWS:
        values = [r[row] for r in rows]
        lines.append(f"| {row} | " + " | ".join(f"{v:.4f}" for v in values) +
                     f" | {statistics.median(values):.4f} | {k if row.startswith('soft') else 1} |")
    text = "\n".join(lines)
    print(text)
    (args.out / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
