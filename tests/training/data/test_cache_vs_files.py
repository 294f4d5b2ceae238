"""Training from the decode-once cache learns as well as the usual loader that decodes files every epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from torchvision import datasets, transforms as T

from imagegen import make_imagefolder
from training import fit, parse_config
from training.models import build_model

pytestmark = pytest.mark.slow


def _files_baseline(root, size: int, epochs: int, val_files: set[str]) -> float:
    """ImageFolder + PIL transforms, same model, optimizer, epochs and split as the cached run."""
    torch.manual_seed(0)
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = datasets.ImageFolder(str(root), tf)
    idx_val = [i for i, (p, _) in enumerate(ds.samples) if p in val_files]
    idx_tr = [i for i in range(len(ds)) if i not in set(idx_val)]
    tr = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx_tr), batch_size=16, shuffle=True)
    va = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx_val), batch_size=64)
    cfg = parse_config({"model": {"name": "test_resnet"}})
    model = build_model(cfg.model, len(ds.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for x, y in tr:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = np.concatenate([model(x).argmax(1).numpy() for x, _ in va])
        true = np.concatenate([y.numpy() for _, y in va])
    return f1_score(true, pred, average="macro")


def test_cached_training_learns_as_well_as_decoding_files(tmp_path):
    root, _ = make_imagefolder(tmp_path / "data", n_classes=4, n_per_class=30, size=40)
    cfg = parse_config({"seed": 0, "data": {"source": "imagefolder", "root": str(root), "image_size": 24},
                        "model": {"name": "test_resnet"}, "optimizer": {"name": "adamw", "lr": 3e-3},
                        "train": {"epochs": 6, "batch_size": 16, "device": "cpu", "num_threads": 1}})
    r = fit(cfg, tmp_path / "out")
    import json

    val_files = set(json.loads((tmp_path / "out" / "split.json").read_text())["val"])
    base = _files_baseline(root, 24, 6, val_files)
    assert r["macro_f1"] >= 0.8 and base >= 0.5
    assert r["macro_f1"] >= base - 0.1, f"cache {r['macro_f1']:.3f} vs files {base:.3f}"
