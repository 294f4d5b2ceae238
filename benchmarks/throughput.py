"""Training throughput, measured side by side in one run on the same JPEG data and model.

    python benchmarks/throughput.py              # GPU: resnet18 + efficientnet_b0 @224, K = 1, 2, 4 trials per GPU,
                                                 # whole trials of resnet18@224, efficientnet_b0@224, b4@380
    python benchmarks/throughput.py --quick      # CPU smoke run (tiny data, a few steps; make bench)
    python benchmarks/throughput.py --cpu-smoke  # the whole-trial rows alone, tiny (32 px, 128 images; the tests)

Rows, per model, all with the same batch, precision (`precision: auto`: bf16 autocast on an H100) and memory format
(channels_last):
  model-only  random tensors already on the device: the limit the GPU sets
  ours        decode-once uint8 cache (memory-mapped) + batch augmentation on the device (flip, shift-scale-rotate,
              brightness/contrast, normalize), the loader `search` trials use
  gather      the loader's host side alone: uint8 batches from the cache into its reused (pinned) buffers, no
              training; well above model-only means the host-side gather is not the limit
  augment     the loader's device side alone: uint8 -> augmented, normalized input batches, on a batch already
              on the device, no training; 1/ours - 1/model-only is what each image costs the step beyond the
              model, and 1/augment is the part of it the augmentation kernels take
  naive       what users write by hand: torchvision ImageFolder + PIL transforms (resize, flip, colour jitter,
              ToTensor, Normalize) in a DataLoader with --workers processes, decoding every JPEG every epoch
Then whole trials (benchmarks/trial_rate.py): one trial of each --trial-models through the real worker (epochs,
validation, metrics, checkpoints, reports to the store, artifacts), its train images per second over its duration
against the model-only limit at the same size and batch. Then the aggregate throughput of K concurrent small
trials sharing one GPU (each its own process, memory capped at 1/K), and the probed batch ceiling checked against
the real out-of-memory boundary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gather import host_batches  # noqa: E402  (benchmarks/gather.py)
from training.augment import tensor_plan  # noqa: E402
from training.batch_probe import _fits, probe_max_batch  # noqa: E402
from training.config import RunConfig  # noqa: E402
from training.data.cache import decode_cached  # noqa: E402
from training.data.loader import make_loader  # noqa: E402
from training.data.sources import load_samples  # noqa: E402
from training.models import build_model  # noqa: E402
from training.runtime import resolve_runtime  # noqa: E402
from trial_rate import parse_models, trial_rate  # noqa: E402  (benchmarks/trial_rate.py)

PIPELINE = [
    {"__class_fullname__": "HorizontalFlip", "p": 0.5},
    {"__class_fullname__": "ShiftScaleRotate", "p": 0.5, "shift_limit": 0.0625, "scale_limit": 0.1, "rotate_limit": 15},
    {"__class_fullname__": "RandomBrightnessContrast", "p": 0.5},
    {"__class_fullname__": "Normalize"},
]


def _one_jpeg(args: tuple[str, int, int, int, int]) -> None:
    from PIL import Image

    path, cls, seed, w, h = args
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / (20 + 7 * cls) + c) * np.cos(yy / (30 + 5 * c)) for c in range(3)], -1)
    img = ((base * 0.5 + 0.5) * 200 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)


def make_jpegs(root: Path, n: int, classes: int = 10, w: int = 512, h: int = 384) -> Path:
    jobs = []
    for i in range(n):
        d = root / f"class{i % classes:02d}"
        d.mkdir(parents=True, exist_ok=True)
        jobs.append((str(d / f"{i:06d}.jpg"), i % classes, i, w, h))
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_one_jpeg, jobs, chunksize=64))
    return root


def _cfg(model: str, size: int, root: Path, batch: int) -> RunConfig:
    return RunConfig.model_validate({"data": {"source": "imagefolder", "root": str(root), "image_size": size},
                                     "model": {"name": model}, "train": {"batch_size": batch},
                                     "augment": {"train": PIPELINE}})


def _sync(rt) -> None:
    if rt.device.type == "cuda":
        torch.cuda.synchronize()


def _model(cfg: RunConfig, rt):
    """A fresh model in the run's memory format, and its optimizer."""
    fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
    m = build_model(cfg.model, 10).to(rt.device).to(memory_format=fmt)
    return m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)


def _ours(cfg: RunConfig, rt, images: np.ndarray, samples, spec=PIPELINE):
    """The loader `search` trials use, over the whole decoded cache."""
    return make_loader(images, np.arange(len(samples)), samples.targets, batch_size=cfg.train.batch_size, spec=spec,
                       mean=cfg.augment.mean, std=cfg.augment.std, device=rt.device,
                       channels_last=rt.channels_last, shuffle=True, dtype=rt.input_dtype)


def _step(model, opt, rt, x: torch.Tensor, y: torch.Tensor) -> None:
    with rt.autocast():
        loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _train_steps(model, opt, rt, batches, steps: int, warmup: int) -> float:
    """img/s over ``steps`` training steps after ``warmup`` steps."""
    n, t0 = 0, None
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            _sync(rt)
            t0, n = time.perf_counter(), 0
        _step(model, opt, rt, x, y)
        n += len(y)
        if i + 1 == warmup + steps:
            break
    _sync(rt)
    return n / (time.perf_counter() - t0)


def _forever(loader):
    while True:
        yield from loader


def gather_rate(loader, batches: int) -> float:
    """img/s of the loader's producer alone (cache -> its host buffers, single thread), over ``batches`` batches
    after a warm-up that fills every buffer of its ring (first use allocates). Advances ``loader.epoch``, which
    only changes the shuffle order of the training that follows."""
    it = host_batches(loader)
    for _ in range(len(loader.ring.slots)):
        next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        n += len(next(it)[1])
    return n / (time.perf_counter() - t0)


def augment_rate(loader, rt, batches: int) -> float:
    """img/s of the loader's device side alone (``TensorBatches.augment``) on one uint8 batch already on the
    device, after 3 warm-up batches."""
    x = torch.from_numpy(np.array(loader.images[:loader.batch_size])).to(rt.device)  # a writable copy
    for _ in range(3):
        loader.augment(x)
    _sync(rt)
    t0 = time.perf_counter()
    for _ in range(batches):
        loader.augment(x)
    _sync(rt)
    return batches * len(x) / (time.perf_counter() - t0)


def profile_ours(name: str, size: int, root: Path, batch: int, path: Path, steps: int = 10) -> None:
    """torch.profiler over ``steps`` training steps of 'ours' after 5 warm-up steps: where the time of the step
    goes, by device time and by host time, written to ``path``. Run after every timed row (a profiler can leave
    later work slower)."""
    from torch.profiler import ProfilerActivity, profile

    cfg = _cfg(name, size, root, batch)
    rt = resolve_runtime(cfg.train)
    samples = load_samples(cfg.data)
    model, opt = _model(cfg, rt)
    it = _forever(_ours(cfg, rt, decode_cached(samples, cfg.data).images, samples))
    for _ in range(5):
        _step(model, opt, rt, *next(it))
    _sync(rt)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if rt.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            _step(model, opt, rt, *next(it))
        _sync(rt)
        wall = time.perf_counter() - t0
    ka = prof.key_averages()
    dev_key = "device_time_total" if rt.device.type == "cuda" else "cpu_time_total"
    path.write_text(f"# {steps} steps, {wall * 1000 / steps:.2f} ms/step wall under the profiler\n\n"
                    + ka.table(sort_by=dev_key, row_limit=45) + "\n\n"
                    + ka.table(sort_by="self_cpu_time_total", row_limit=30) + "\n")


def bench_model(name: str, size: int, root: Path, batch: int, steps: int, warmup: int, workers: int) -> dict:
    cfg = _cfg(name, size, root, batch)
    rt = resolve_runtime(cfg.train)
    fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
    out = {"model": name, "size": size, "batch": batch, "model_only": model_only(name, size, batch, steps, warmup)}
    # ours: decode once, then batches from the cache, augmented on the device
    samples = load_samples(cfg.data)
    t0 = time.perf_counter()
    dec = decode_cached(samples, cfg.data)
    out["cache_seconds"] = time.perf_counter() - t0
    out["cache_built"] = dec.built
    assert tensor_plan(PIPELINE) is not None
    loader = _ours(cfg, rt, dec.images, samples)
    out["gather"] = gather_rate(loader, steps)
    out["augment"] = augment_rate(loader, rt, steps)
    m, opt = _model(cfg, rt)
    out["ours"] = _train_steps(m, opt, rt, _forever(loader), steps, warmup)
    # naive: ImageFolder + PIL transforms + DataLoader workers
    from torchvision import datasets, transforms as T

    tf = T.Compose([T.Resize((size, size)), T.RandomHorizontalFlip(), T.ColorJitter(0.2, 0.2), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    dl = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), tf), batch_size=batch, shuffle=True,
                                     num_workers=workers, pin_memory=rt.device.type == "cuda", drop_last=True,
                                     persistent_workers=workers > 0)

    def naive_batches():
        for xb, yb in _forever(dl):
            yield (xb.to(rt.device, non_blocking=True).contiguous(memory_format=fmt),
                   yb.to(rt.device, non_blocking=True))

    m, opt = _model(cfg, rt)
    out["naive"] = _train_steps(m, opt, rt, naive_batches(), steps, warmup)
    return out


def child(args) -> None:
    """One small trial for the K-per-GPU measurement: trains for --seconds and prints its img/s."""
    if args.share > 1 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(1.0 / args.share)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.share))  # as `search run --trials-per-gpu` does
    cfg = _cfg(args.child, args.size, Path(args.root), args.batch)
    rt = resolve_runtime(cfg.train)
    samples = load_samples(cfg.data)
    loader = _ours(cfg, rt, decode_cached(samples, cfg.data).images, samples)
    m, opt = _model(cfg, rt)
    _train_steps(m, opt, rt, _forever(loader), 10, 5)  # warm up (cudnn autotune)
    print("READY", flush=True)
    sys.stdin.readline()  # start together
    t_end, n, t0 = time.perf_counter() + args.seconds, 0, time.perf_counter()
    for x, y in _forever(loader):
        _step(m, opt, rt, x, y)
        n += len(y)
        if time.perf_counter() > t_end:
            break
    _sync(rt)
    print(json.dumps({"ips": n / (time.perf_counter() - t0)}), flush=True)


def bench_sharing(k: int, model: str, size: int, root: Path, batch: int, seconds: float) -> float:
    procs = [subprocess.Popen([sys.executable, __file__, "--child", model, "--size", str(size), "--root", str(root),
                               "--batch", str(batch), "--share", str(k), "--seconds", str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    for p in procs:
        while p.stdout.readline().strip() != "READY":
            pass
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    total = 0.0
    for p in procs:
        lines = [ln for ln in p.stdout.read().splitlines() if ln.startswith("{")]
        p.wait()
        total += json.loads(lines[-1])["ips"]
    return total


def share_auto(args, root: Path, rows: list[dict]) -> dict:
    """`--trials-per-gpu auto` on the sharing config: its own measurement (synthetic batches, K processes at
    once), then its K's aggregate from the rows above (the real loader), against the best K there."""
    from search.workers import measured_choice

    cfg = _cfg(args.share_model, args.share_size, root, args.share_batch).model_dump(mode="json")
    t0 = time.perf_counter()
    choice = measured_choice(cfg)
    seconds = time.perf_counter() - t0
    by_k = {r["k"]: r["ips"] for r in rows}
    best_k = max(by_k, key=by_k.get)
    got = by_k.get(choice.k)
    print(f"\n{choice.line()}; chosen in {seconds:.0f} s")
    print(f"auto K={choice.k}: " + (f"{got:.0f} img/s = {100 * got / by_k[best_k]:.0f}% of the best measured K="
                                   f"{best_k} ({by_k[best_k]:.0f} img/s)" if got else
                                   f"not among the measured K ({', '.join(map(str, by_k))}): add it to --k"))
    return {"k": choice.k, "why": choice.why, "rates": choice.rates, "seconds": seconds, "best_k": best_k,
            "share_of_best": got / by_k[best_k] if got else None}


def check_ceiling(model: str, size: int, root: Path) -> dict:
    cfg = _cfg(model, size, root, 64)
    rt = resolve_runtime(cfg.train)
    t0 = time.perf_counter()
    ceiling = probe_max_batch(cfg, rt, num_outputs=10)
    probe_s = time.perf_counter() - t0
    # checked as training runs, with cudnn.benchmark on (the probe itself uses cuDNN's heuristics)
    return {"model": model, "size": size, "ceiling": ceiling, "probe_seconds": probe_s,
            "ceiling_trains": _fits(cfg, rt, 10, ceiling, heuristics=False),
            "double_ooms": not _fits(cfg, rt, 10, 2 * ceiling, heuristics=False)}


def model_only(name: str, size: int, batch: int, steps: int, warmup: int) -> float:
    """The limit: training steps on random tensors already on the device, img/s."""
    cfg = _cfg(name, size, Path("."), batch)
    rt = resolve_runtime(cfg.train)
    fmt = torch.channels_last if rt.channels_last else torch.contiguous_format
    m, opt = _model(cfg, rt)
    x = torch.randn(batch, 3, size, size, device=rt.device, dtype=rt.input_dtype).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=rt.device)
    return _train_steps(m, opt, rt, _forever([(x, y)]), steps, warmup)


def trial_rows(args, root: Path, rows: list[dict]) -> None:
    """One whole trial per --trial-models entry against its model-only limit (same size, batch, precision)."""
    if not parse_models(args.trial_models):
        return
    print(f"\n| whole trial ({args.trial_epochs} epochs, {args.n_images} images) | batch | model-only img/s "
          "| trial img/s | trial % of limit | trial s |")
    print("|---|---|---|---|---|---|")
    for name, size in parse_models(args.trial_models):
        r = trial_rate(name, size, root, args.batch, args.trial_epochs, PIPELINE)
        r["model_only"] = model_only(name, size, r["batch"], args.steps, args.warmup)
        rows.append(r)
        print(f"| {name}@{size} | {r['batch']} | {r['model_only']:.0f} | {r['images_per_second']:.0f} "
              f"| {100 * r['images_per_second'] / r['model_only']:.0f}% | {r['trial_seconds']:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU-sized smoke run")
    ap.add_argument("--models", default="resnet18,efficientnet_b0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--n-images", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1), help="naive DataLoader workers")
    ap.add_argument("--k", default="1,2,4", help="trials per GPU to measure")
    ap.add_argument("--share-model", default="resnet18")
    ap.add_argument("--share-size", type=int, default=128)
    ap.add_argument("--share-batch", type=int, default=64)
    ap.add_argument("--share-seconds", type=float, default=20)
    ap.add_argument("--share-auto", action="store_true", help="also let `--trials-per-gpu auto` choose K for the "
                    "sharing config (search/workers/_trials_per_gpu.py) and compare it with the best measured K")
    ap.add_argument("--ceiling", default="resnet18,efficientnet_b0", help="models whose batch ceiling to check")
    ap.add_argument("--trial-models", default="resnet18@224,efficientnet_b0@224,efficientnet_b4@380",
                    help="whole-trial rows: MODEL@SIZE, comma-separated ('' skips them)")
    ap.add_argument("--trial-epochs", type=int, default=3)
    ap.add_argument("--cpu-smoke", action="store_true", help="the whole-trial rows alone, at 32 px on 128 images")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--profile", type=Path,
                    help="folder: write a torch.profiler table of 10 'ours' steps per model, after the timed rows")
    # internal: one K-sharing child
    ap.add_argument("--child"), ap.add_argument("--root"), ap.add_argument("--share", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.quick or args.cpu_smoke:
        args.models, args.size, args.batch, args.n_images = "resnet18", 64, 32, 256
        args.steps, args.warmup, args.workers, args.k = 4, 2, 2, "1,2"
        args.share_size, args.share_batch, args.share_seconds, args.ceiling = 32, 16, 5, ""
        args.trial_models = "" if args.quick else "resnet18@32,efficientnet_b0@32"
        args.trial_epochs = 1
    if args.cpu_smoke:  # the whole-trial rows and their model-only limits, on a few images
        args.models, args.k, args.n_images = "", "", 128
    os.environ.setdefault("SEARCH_CACHE_DIR", tempfile.mkdtemp(prefix="bench-cache-"))
    cuda = torch.cuda.is_available()
    dev = torch.cuda.get_device_name(0) if cuda else "CPU"
    rt = resolve_runtime(_cfg("resnet18", 32, Path("."), 1).train)  # what `precision: auto` is on this machine
    precision = (f"{rt.precision} autocast + channels_last, {str(rt.input_dtype).removeprefix('torch.')} batches"
                 if rt.dtype else "fp32")
    root = make_jpegs(Path(tempfile.mkdtemp(prefix="bench-jpeg-")), args.n_images)
    print(f"# {time.strftime('%Y-%m-%d')} on {dev}, torch {torch.__version__}, {os.cpu_count()} CPU cores; "
          f"{args.n_images} JPEGs 512x384, batch {args.batch}, {args.steps} timed steps after {args.warmup}, "
          f"{precision}; naive loader with "
          f"{args.workers} workers")
    results = {"device": dev, "models": [], "trials": [], "sharing": [], "ceilings": []}
    print("\n| model | size | model-only img/s | ours img/s | ours % of limit | naive img/s | ours / naive "
          "| cache build s | gather img/s | augment img/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in [m for m in args.models.split(",") if m]:  # --models "": skip these rows
        r = bench_model(name, args.size, root, args.batch, args.steps, args.warmup, args.workers)
        results["models"].append(r)
        print(f"| {name} | {args.size} | {r['model_only']:.0f} | {r['ours']:.0f} "
              f"| {100 * r['ours'] / r['model_only']:.0f}% "
              f"| {r['naive']:.0f} | {r['ours'] / r['naive']:.2f}x | {r['cache_seconds']:.1f} | {r['gather']:.0f} "
              f"| {r['augment']:.0f} |", flush=True)
    trial_rows(args, root, results["trials"])
    print(f"\n| trials per GPU ({args.share_model}@{args.share_size}, batch {args.share_batch}) "
          "| aggregate img/s | vs K=1 |")
    print("|---|---|---|")
    base = None
    for k in [int(v) for v in args.k.split(",") if v]:  # --k "": skip the sharing rows
        ips = bench_sharing(k, args.share_model, args.share_size, root, args.share_batch, args.share_seconds)
        base = base or ips
        results["sharing"].append({"k": k, "ips": ips})
        print(f"| {k} | {ips:.0f} | {ips / base:.2f}x |", flush=True)
    if args.share_auto and results["sharing"]:
        results["auto"] = share_auto(args, root, results["sharing"])
    if args.profile:  # after every timed row
        args.profile.mkdir(parents=True, exist_ok=True)
        for name in [m for m in args.models.split(",") if m]:
            profile_ours(name, args.size, root, args.batch, args.profile / f"profile_{name}.txt")
    if cuda and args.ceiling:
        print("\n| model | size | probed ceiling | ceiling trains | 2x ceiling OOMs | probe s |")
        print("|---|---|---|---|---|---|")
        for name in [m for m in args.ceiling.split(",") if m]:
            c = check_ceiling(name, args.size, root)
            results["ceilings"].append(c)
            print(f"| {name} | {args.size} | {c['ceiling']} | {c['ceiling_trains']} | {c['double_ooms']} | "
                  f"{c['probe_seconds']:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
