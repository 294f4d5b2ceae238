"""A hand-written Optuna study, the way practitioners write one today (seed report 002, apple varieties): torchvision
ImageFolder with PIL transforms in DataLoader worker processes, a timm model, a plain training loop, scikit-learn's
macro-F1 on a stratified validation split, `optuna.create_study(direction="maximize")` with the TPE sampler and no
pruning, one offline W&B run per trial, one trial at a time.

It is the "peer" arm of benchmarks/headline.py and deliberately uses nothing of this repository: it stands for
what a competent user runs without our service. It is written to be good at its job, not to lose: DataLoader
workers that stay alive for the whole study, pinned memory, bf16 autocast on CUDA, the best epoch's F1 as the
trial's value (what our trials report too).

    python benchmarks/peer_study.py --data DIR --trials 20 --epochs 4 --out peer.json

--out gets every trial (number, state, params, macro-F1, when it started and finished) and the study's
distributions, so that headline.py can place the trials on its time axis and check that both arms searched the
same space. It also lists the validation images, for headline.py's check that both arms validate on the same
split (both use scikit-learn's stratified train_test_split with random_state 0 over the same sorted file list).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import optuna
import timm
import torch
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms as T

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def get_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="an image folder: one sub-folder per class")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0, help="the sampler's seed and every trial's torch seed")
    ap.add_argument("--model", default="resnet18", help="a timm model name (random init: no download)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader worker processes")
    ap.add_argument("--num-threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--work", type=Path, default=Path("peer-runs"), help="checkpoints and W&B runs go here")
    ap.add_argument("--no-wandb", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="the trials as JSON")
    return ap.parse_args()


def build_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def train_one_epoch(model, loader, optimizer, criterion, device, amp: bool) -> float:
    model.train()
    total, n = 0.0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        n += len(y)
    return total / max(n, 1)


@torch.no_grad()
def evaluate(model, loader, criterion, device, amp: bool) -> tuple[float, float, float]:
    model.eval()
    total, preds, labels = 0.0, [], []
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        total += criterion(logits.float(), y).item() * len(y)
        preds.append(logits.argmax(1).cpu())
        labels.append(y.cpu())
    y_pred, y_true = torch.cat(preds).numpy(), torch.cat(labels).numpy()
    f1 = f1_score(y_true, y_pred, average="macro")
    return total / len(y_true), float(f1), float((y_pred == y_true).mean())


def main() -> None:
    args = get_args()
    start = time.time()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    torch.backends.cudnn.benchmark = True  # fixed input shapes
    args.work.mkdir(parents=True, exist_ok=True)

    train_tf = T.Compose([T.Resize((args.image_size, args.image_size)), T.RandomHorizontalFlip(), T.ToTensor(),
                          T.Normalize(MEAN, STD)])
    val_tf = T.Compose([T.Resize((args.image_size, args.image_size)), T.ToTensor(), T.Normalize(MEAN, STD)])
    full = datasets.ImageFolder(str(args.data))
    train_idx, val_idx = train_test_split(np.arange(len(full)), test_size=args.val_fraction,
                                          stratify=full.targets, random_state=0)
    train_set = Subset(datasets.ImageFolder(str(args.data), train_tf), train_idx)
    val_set = Subset(datasets.ImageFolder(str(args.data), val_tf), val_idx)
    # the batch size is fixed, so the loaders (and their worker processes) serve every trial
    loader_kw = dict(batch_size=args.batch_size, num_workers=args.workers, pin_memory=device.type == "cuda",
                     persistent_workers=args.workers > 0)
    train_loader = DataLoader(train_set, shuffle=True, **loader_kw)
    val_loader = DataLoader(val_set, shuffle=False, **loader_kw)
    criterion = nn.CrossEntropyLoss()
    if not args.no_wandb:
        import wandb

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        optimizer_name = trial.suggest_categorical("optimizer", ["adamw", "adam", "sgd"])
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)

        torch.manual_seed(args.seed)  # every trial starts from the same init: only the hyperparameters differ
        model = timm.create_model(args.model, pretrained=False, num_classes=len(full.classes),
                                  drop_rate=dropout).to(device)
        optimizer = build_optimizer(optimizer_name, model.parameters(), lr, weight_decay)
        run = None
        if not args.no_wandb:
            run = wandb.init(project="apple-peer", name=f"trial-{trial.number}", config=trial.params,
                             mode="offline", dir=str(args.work))
        best = 0.0
        try:
            for epoch in range(args.epochs):
                train_loss = train_one_epoch(model, train_loader, optimizer, criterion, device, amp)
                val_loss, f1, acc = evaluate(model, val_loader, criterion, device, amp)
                if run is not None:
                    run.log({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_f1": f1,
                             "val_acc": acc})
                if f1 > best:
                    best = f1
                    torch.save(model.state_dict(), args.work / f"trial-{trial.number}-best.pt")
        finally:
            if run is not None:
                run.finish()
        return best

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    study.optimize(objective, n_trials=args.trials)
    print(f"best macro-F1 {study.best_value:.4f} with {study.best_params} ({time.time() - start:.1f}s)", flush=True)

    if args.out:
        trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                   "datetime_start": t.datetime_start.timestamp(),
                   "datetime_complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
                   "seconds_from_start": t.datetime_complete.timestamp() - start if t.datetime_complete else None,
                   "distributions": {k: optuna.distributions.distribution_to_json(d)
                                     for k, d in t.distributions.items()}}
                  for t in study.trials]
        val_files = [full.samples[i][0] for i in val_idx]
        args.out.write_text(json.dumps({"started_at": start, "device": str(device), "seed": args.seed,
                                        "trials": trials, "val_files": val_files}, indent=1))


if __name__ == "__main__":
    main()
