"""A whole trial's throughput against the model-only limit: the part of `benchmarks/throughput.py` that times what
a search trial really does, not its training step alone.

One trial of a one-trial study runs through the real worker (`search.workers.work`, SQLite, no W&B): claim,
config, `fit` (its epochs with the device-side augmentation, validation after each, metrics, checkpoints), the
per-epoch reports to the store, the trial's artifacts (charts, metrics, its checkpoint) and the tell. Its rate is
the train images it saw (train side x epochs) over its duration in the store (claim to tell). The decode cache
is built before the trial, and on a GPU the batch ceiling probed, as a search does both once for all its trials:
the rate is a trial's steady state.

    python benchmarks/trial_rate.py --models resnet18@224,efficientnet_b0@224,efficientnet_b4@380
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["trial_rate", "parse_models"]


def parse_models(text: str) -> list[tuple[str, int]]:
    """``resnet18@224,efficientnet_b4@380`` -> [("resnet18", 224), ("efficientnet_b4", 380)]."""
    out = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        name, _, size = item.partition("@")
        out.append((name, int(size or 224)))
    return out


def _study(folder: Path, model: str, size: int, root: Path, batch: int, epochs: int, pipeline: list) -> Path:
    training = {"seed": 0, "data": {"source": "imagefolder", "root": str(root), "image_size": size},
                "model": {"name": model}, "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
                "augment": {"train": pipeline}, "train": {"epochs": epochs, "batch_size": batch}}
    study = {"name": f"rate-{model}-{size}", "n_trials": 1, "training": training,
             "search_space": {"model.dropout": {"choices": [0.0]}}, "sampler": {"name": "random", "seed": 0},
             "pruner": {"name": "none"}, "wandb": {"enabled": False}, "artifacts": {"keep_top_k": 1}}
    path = folder / f"{study['name']}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def trial_rate(model: str, size: int, root: Path, batch: int, epochs: int, pipeline: list,
               work_dir: Path | None = None) -> dict:
    """One whole trial of ``model`` at ``size``: its duration and train images per second."""
    import optuna

    from search import load_study
    from search.store import open_storage
    from search.workers import batch_ceiling, open_study, work
    from training.data.cache import decode_cached
    from training.data.sources import load_samples
    from training.run_folder import read_metrics

    folder = Path(work_dir or tempfile.mkdtemp(prefix="trial-rate-"))
    sc = load_study(str(_study(folder, model, size, root, batch, epochs, pipeline)))
    cfg = sc.config_for(sc.default_params(), "trial rate")
    t0 = time.perf_counter()
    decode_cached(load_samples(cfg.data), cfg.data)  # once per study, before its trials
    cache_seconds = time.perf_counter() - t0
    url = f"sqlite:///{folder / 'studies.db'}"
    batch_ceiling(open_study(sc, open_storage(url), url), cfg)  # on a GPU: probed once per study, kept there
    work(sc, url, n_trials=1, output_root=folder / "runs", use_wandb=False, worker_index=0)
    trial = optuna.load_study(study_name=sc.name, storage=url).trials[0]
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise RuntimeError(f"the timed trial ended {trial.state.name}: {trial.user_attrs.get('fail_reason')}")
    metrics = read_metrics(Path(trial.user_attrs["output_dir"]))
    seconds = trial.duration.total_seconds()
    images = metrics["n_train"] * metrics["epochs_run"]
    return {"model": model, "size": size, "batch": metrics["batch_size"], "epochs": metrics["epochs_run"],
            "train_images": images, "val_images": metrics["n_val"] * metrics["epochs_run"],
            "trial_seconds": seconds, "images_per_second": images / seconds, "cache_seconds": cache_seconds}


def main() -> None:
    from throughput import PIPELINE, make_jpegs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18@224,efficientnet_b0@224,efficientnet_b4@380")
    ap.add_argument("--n-images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("SEARCH_CACHE_DIR", tempfile.mkdtemp(prefix="bench-cache-"))
    root = make_jpegs(Path(tempfile.mkdtemp(prefix="bench-jpeg-")), args.n_images)
    rows = [trial_rate(m, s, root, args.batch, args.epochs, PIPELINE) for m, s in parse_models(args.models)]
    for r in rows:
        print(f"{r['model']}@{r['size']}: {r['images_per_second']:.0f} train img/s over a whole trial of "
              f"{r['epochs']} epochs ({r['trial_seconds']:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
