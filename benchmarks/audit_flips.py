"""How well `search audit` finds wrong labels: a generated data set with a known share of its labels flipped.

The set: ``--classes`` classes of ``--per-class`` images (tests/imagegen.py's class patterns under noise, at
``--size`` px), then ``--flip`` of the images moved into another class's folder, chosen at random (seeded). The
audit cross-validates the config (``--folds`` folds of ``--epochs`` epochs, test_resnet on CPU) and ranks the
images with cleanlab. Measured, with N = the number flipped: the share of the audit's top N that are flipped
(precision at N), the share of the flipped images that the audit flags at all (recall), and the trainings it
cost (K, one per fold). Targets (issue #23): both shares at least 80%, at most K + 1 trainings.

    python benchmarks/audit_flips.py                       # 10 classes x 80 images, 5% flipped, 5 folds, 3 seeds
    python benchmarks/audit_flips.py --per-class 40 --first-seed 3   # a smaller set, other seeds
    python benchmarks/audit_flips.py --data digits --seeds 1           # real handwriting, 1797 images
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))

from imagegen import class_image, save_image  # noqa: E402


def make_flipped(root: Path, classes: int, per_class: int, size: int, noise: float, flip: float,
                 seed: int) -> list[str]:
    """The data set, and the paths of the images whose folder (label) is not their class."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        for i in range(per_class):
            save_image(class_image(k, size, rng, noise=noise), root / f"class_{k:02d}" / f"{i:03d}.png")
    files = sorted(root.rglob("*.png"))
    flipped = []
    for j in rng.choice(len(files), size=round(flip * len(files)), replace=False):
        src = files[j]
        k = int(src.parent.name.split("_")[1])
        other = (k + 1 + rng.integers(classes - 1)) % classes
        dst = root / f"class_{other:02d}" / f"flipped_{src.parent.name}_{src.name}"
        shutil.move(src, dst)
        flipped.append(str(dst))
    return flipped


def make_digits_flipped(root: Path, size: int, flip: float, seed: int) -> list[str]:
    """scikit-learn's handwritten digits (1797 real 8 x 8 scans, shipped with the package: no download), as an
    image folder at ``size`` px, then ``flip`` of them moved into another digit's folder. The audit's tests never
    train on them, and their hard cases (a 1 like a 7) are real, not drawn to order."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    flips = set(rng.choice(len(d.target), size=round(flip * len(d.target)), replace=False).tolist())
    flipped = []
    for i, (img, k) in enumerate(zip(d.images, d.target)):
        label = (k + 1 + rng.integers(9)) % 10 if i in flips else k
        path = root / f"digit_{label}" / (f"flipped_{k}_{i:04d}.png" if i in flips else f"{i:04d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * (255 / 16)).astype(np.uint8)).resize((size, size), Image.BILINEAR).convert(
            "RGB").save(path)
        if i in flips:
            flipped.append(str(path))
    return flipped


def one_seed(args, seed: int) -> dict:
    """One generated set with its flips, audited: what the audit found and what it cost."""
    import training.cv as cv
    from training import parse_config
    from training.audit import audit
    from training.cv import cross_validate

    work = Path(tempfile.mkdtemp(prefix="audit-flips-"))
    if args.data == "digits":
        flipped = set(make_digits_flipped(work / "data", args.size, args.flip, seed))
    else:
        flipped = set(make_flipped(work / "data", args.classes, args.per_class, args.size, args.noise, args.flip,
                                   seed))
    cfg = parse_config({"seed": 0, "data": {"source": "imagefolder", "root": str(work / "data"),
                                            "image_size": args.size, "cache_dir": str(work / "cache")},
                        "model": {"name": "test_resnet"}, "optimizer": {"name": "adamw", "lr": 0.01},
                        "scheduler": {"name": "cosine"},
                        "train": {"epochs": args.epochs, "batch_size": 32, "device": "cpu", "num_threads": 1}})
    trainings = []

    def counted(*a, **k):  # every fit the audit runs goes through cross_validate: count its folds
        results = cross_validate(*a, **k)
        trainings.extend(results)
        return results

    cv.cross_validate = counted
    t0 = time.perf_counter()
    r = audit(cfg, work / "audit", folds=args.folds)
    cv.cross_validate = cross_validate
    n = len(flipped)
    top, flagged = {i.name for i in r.issues[:n]}, {i.name for i in r.issues}
    shutil.rmtree(work, ignore_errors=True)
    return {"seed": seed, "flipped": n, "flagged": len(flagged), "precision": len(top & flipped) / n,
            "recall": len(flagged & flipped) / n, "trainings": len(trainings), "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("generated", "digits"), default="generated",
                    help="generated: tests/imagegen.py's patterns (--classes x --per-class); digits: scikit-learn's "
                    "1797 handwritten digits")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=80)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--noise", type=float, default=40.0)
    ap.add_argument("--flip", type=float, default=0.05)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=3, help="generated sets: N of them, from --first-seed on")
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args()

    rows = [one_seed(args, s) for s in range(args.first_seed, args.first_seed + args.seeds)]
    what = (f"scikit-learn digits (1797 images, 10 classes) at {args.size} px" if args.data == "digits" else
            f"{args.classes} classes x {args.per_class} images at {args.size} px, noise {args.noise:g}")
    print(f"{what}, {args.flip:.0%} flipped; {args.folds} folds x {args.epochs} epochs of test_resnet on CPU")
    print("| seed | flipped | flagged | precision at N | recall | trainings | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['flipped']} | {r['flagged']} | {r['precision']:.0%} | {r['recall']:.0%} "
              f"| {r['trainings']} | {r['seconds']:.0f} |")
    precision = statistics.median(r["precision"] for r in rows)
    recall = statistics.median(r["recall"] for r in rows)
    most = max(r["trainings"] for r in rows)
    print(f"median over seeds: precision at N {precision:.0%}, recall {recall:.0%}; at most {most} trainings")
    print(f"{'PASS' if precision >= 0.8 else 'FAIL'} precision at N >= 80%; {'PASS' if recall >= 0.8 else 'FAIL'} "
          f"recall >= 80%; {'PASS' if most <= args.folds + 1 else 'FAIL'} at most K + 1 trainings")


if __name__ == "__main__":
    main()
