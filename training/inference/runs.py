"""A finished run folder (as ``fit`` writes it) as a model ready for inference, on this machine's device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import RunConfig, load_config
from ..errors import ConfigError, one_line
from ..models import build_model
from ..run_folder import BEST_CHECKPOINT, CONFIG_FILE, read_metrics
from ..runtime import Runtime, resolve_runtime

__all__ = ["Run", "read_run", "check_same_classes", "load_model", "inference_runtime", "inference_batch"]

_WHAT = "a run folder that `search train` or a trial wrote (it holds config.yaml, best.pt and metrics.json)"


@dataclass(frozen=True)
class Run:
    folder: Path
    cfg: RunConfig          # the resolved config the run trained with
    classes: list[str]      # index order, as the model's outputs
    multilabel: bool

    @property
    def geometry(self) -> tuple:
        """What ``fit_image`` does with this run's data config: runs that share it share the fitted images."""
        return self.cfg.data.hw, self.cfg.data.center_crop


def read_run(folder: str | Path) -> Run:
    """The run's config and class list (no weights yet). Raises ConfigError naming the folder and what it lacks."""
    f = Path(folder)
    if f.is_file():
        raise ConfigError(f"--run {f} is a file; pass the run folder that holds it ({f.parent})")
    if not f.is_dir():
        raise ConfigError(f"run folder '{f}' does not exist; pass {_WHAT}")
    if not (f / CONFIG_FILE).is_file():
        raise ConfigError(f"run folder '{f}' has no config.yaml, so its model and preprocessing are unknown; "
                          f"pass {_WHAT}")
    if not (f / BEST_CHECKPOINT).is_file():
        folds = sorted(p.name for p in f.glob("fold-*") if (p / BEST_CHECKPOINT).is_file())
        hint = (f"; it is a cross-validation: each fold is a run, pass --run {f / folds[0]} (and the others)"
                if folds else "; it has not finished an epoch yet: let it train, or pass a finished run")
        raise ConfigError(f"run folder '{f}' has no checkpoint best.pt{hint}")
    cfg = load_config(f / CONFIG_FILE)
    try:
        metrics = read_metrics(f)
    except ValueError as e:  # not JSON: damaged, not from an older version
        raise ConfigError(f"run folder '{f}': {e}; the file is damaged: restore the folder (a trial's metrics are "
                          "also in the artifact store) or retrain the run") from None
    except OSError:
        metrics = {}
    try:
        classes, multilabel = list(metrics["classes"]), bool(metrics["multilabel"])
    except (KeyError, TypeError):
        raise ConfigError(f"run folder '{f}': metrics.json is missing or lists no classes (it is written after the "
                          "first epoch, with 'classes' and 'multilabel'); retrain the run with this version") from None
    return Run(f, cfg, classes, multilabel)


def check_same_classes(runs: list[Run]) -> None:
    """Voting needs one class list (same names, same order, same kind); raises ConfigError naming two that differ."""
    first = runs[0]
    for r in runs[1:]:
        if r.classes != first.classes or r.multilabel != first.multilabel:
            def show(x: Run) -> str:
                kind = "labels" if x.multilabel else "classes"
                names = ", ".join(x.classes[:6]) + (", ..." if len(x.classes) > 6 else "")
                return f"'{x.folder}' has {len(x.classes)} {kind} ({names})"
            raise ConfigError(f"runs to vote over have different class lists: {show(first)} but {show(r)}; "
                              "vote only over runs trained on the same classes")


def inference_runtime(cfg: RunConfig) -> Runtime:
    """The run's precision on the device this machine has: the GPU when there is one, whatever the run trained
    on (fp16 needs a GPU: on a CPU-only machine such a run predicts in fp32); no torch.compile."""
    loop = cfg.train
    precision = "fp32" if loop.precision == "fp16" and not torch.cuda.is_available() else loop.precision
    return resolve_runtime(loop.model_copy(update={"device": "auto", "precision": precision, "compile": False,
                                                   "num_threads": None}))


def inference_batch(cfg: RunConfig, rt: Runtime) -> int:
    """Images per forward pass: twice the training batch on a GPU (no activations are kept for a backward pass,
    so twice the batch that trained fits), the training batch on the CPU."""
    bs = cfg.train.batch_size if isinstance(cfg.train.batch_size, int) else 64  # config.yaml holds the size that ran
    return min(2 * bs, 1024) if rt.device.type == "cuda" else bs


def load_model(run: Run, rt: Runtime) -> nn.Module:
    """The run's best.pt in an eval-mode model on ``rt.device`` (in its memory format)."""
    # no timm download: every weight comes from best.pt
    model = build_model(run.cfg.model.model_copy(update={"pretrained": False}), len(run.classes))
    path = run.folder / BEST_CHECKPOINT
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # a damaged file or another model's weights: torch raises several kinds
        raise ConfigError(f"{path}: cannot load it into the model its config.yaml describes ({one_line(e, 240)}); "
                          "pass the run folder that wrote it") from None
    model = model.to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()
