"""GPU checks of the training core: bf16 + channels_last fit on digits, `batch_size: auto`, several augment paths.

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
              f"{r['history'][-1]['images_per_second']:.0f} img/s last epoch  {time.perf_counter() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
