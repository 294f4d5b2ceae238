"""GPU checks of the training core: bf16 + channels_last fit on digits, `batch_size: auto`, several augment paths,
and an fp16 run stopped after epoch 2 and resumed (GradScaler state restored) against the uninterrupted run.

    python benchmarks/gpu_smoke.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from training import fit  # noqa: E402
from training.config import RunConfig  # noqa: E402


def main() -> None:
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    out = Path(tempfile.mkdtemp())
    for name, extra in [
        ("bf16+channels_last, tensor-path aug", {"augment": {"train": [
            {"__class_fullname__": "HorizontalFlip", "p": 0.5},
            {"__class_fullname__": "Affine", "p": 0.5, "rotate": [-10, 10], "scale": [0.9, 1.1]},
            {"__class_fullname__": "RandomBrightnessContrast", "p": 0.5}]}}),
        ("batch_size auto (probed)", {"train": {"batch_size": "auto"}}),
        ("fp16 + GradScaler", {"train": {"precision": "fp16"}}),
        ("torch.compile (channels_last off)", {"train": {"compile": True}}),
    ]:
        base = {"data": {"source": "digits", "image_size": 32}, "model": {"name": "resnet18"},
                "optimizer": {"name": "adamw", "lr": 3e-3}, "scheduler": {"name": "cosine"},
                "train": {"epochs": 6, "batch_size": 128, "device": "cuda"}}
        for k, v in extra.items():
            base[k] = {**base.get(k, {}), **v}
        t0 = time.perf_counter()
        r = fit(RunConfig.model_validate(base), out / name.replace(" ", "_"))
        print(f"{name:<40} macro_f1 {r['macro_f1']:.4f}  batch {r['batch_size']}  "
              f"{r['history'][-1]['images_per_second']:.0f} img/s last epoch  {time.perf_counter() - t0:.1f}s",
              flush=True)
    fp16_resume(out)


class _Stop(Exception):
    pass


def fp16_resume(out: Path) -> None:
    cfg = RunConfig.model_validate({"data": {"source": "digits", "image_size": 32}, "model": {"name": "resnet18"},
                                    "optimizer": {"name": "adamw", "lr": 3e-3}, "scheduler": {"name": "cosine"},
                                    "train": {"epochs": 4, "batch_size": 128, "device": "cuda",
                                              "precision": "fp16"}})
    full = fit(cfg, out / "fp16_full")

    def stop(epoch, m):
        if epoch == 2:
            raise _Stop

    try:
        fit(cfg, out / "fp16_part", stop)
    except _Stop:
        pass
    resumed = fit(cfg, out / "fp16_part", resume_from=out / "fp16_part" / "last.pt")
    a = [round(h["train_loss"], 4) for h in full["history"]]
    b = [round(h["train_loss"], 4) for h in resumed["history"]]
    print(f"fp16 resume: train loss per epoch, uninterrupted {a} vs stopped at 2 + resumed {b}", flush=True)


if __name__ == "__main__":
    main()
