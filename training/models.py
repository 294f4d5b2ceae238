"""Any timm backbone plus a head: optional hidden layer (``out_features``) and dropout before the classifier;
``model.head: factorized`` puts one such head on each factor of the mask source's classes (mask, gender, age)."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .config import MASK_FACTORS, ModelConfig
from .errors import ConfigError, one_line

__all__ = ["Classifier", "FactorizedHead", "build_model"]


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _head(in_features: int, num_outputs: int, out_features: int, dropout: float) -> nn.Sequential:
    if out_features:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out_features), nn.ReLU(inplace=True),
                             nn.Dropout(dropout), nn.Linear(out_features, num_outputs))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_outputs))


class FactorizedHead(nn.Module):
    """One head per factor (``shape``: the classes of each), each of the configured shape; returns the joint
    classes' log-probabilities, log p_1 + log p_2 + ..., flattened row-major (class = a*6 + b*3 + c for [3, 2, 3]).

    Returning joint log-probabilities, rather than the heads' outputs, keeps everything downstream of the model
    unchanged: they are logits whose softmax is the product of the heads' probabilities, so argmax, metrics,
    the batch probe and prediction treat this model like any other; the loss recovers each head's
    log-probabilities exactly as the product distribution's marginals (losses.FactorizedLoss)."""

    def __init__(self, in_features: int, shape: tuple[int, ...], out_features: int, dropout: float) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.heads = nn.ModuleList(_head(in_features, k, out_features, dropout) for k in self.shape)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        joint = None
        for i, head in enumerate(self.heads):
            # fp32: the sum of log-probabilities and the loss's logsumexp over it lose digits in bf16/fp16
            logp = F.log_softmax(head(features).float(), dim=1)
            axes = [1] * len(self.shape)
            axes[i] = self.shape[i]
            logp = logp.view(-1, *axes)
            joint = logp if joint is None else joint + logp
        return joint.flatten(1)


def build_model(cfg: ModelConfig, num_outputs: int) -> Classifier:
    """``num_outputs``: the classes of the single head. A factorized head's shape is fixed by MASK_FACTORS
    (18 outputs; the config admits it on mask data only), so it ignores ``num_outputs``: the batch probe's
    placeholder (1000) then measures the real model."""
    try:
        backbone = timm.create_model(cfg.name, pretrained=cfg.pretrained is True, num_classes=0)
    except (OSError, RuntimeError, ValueError) as e:  # no network / no cached weights
        raise ConfigError(
            f"model.pretrained: cannot get timm weights for '{cfg.name}' ({e.__class__.__name__}); put them in the "
            "Hugging Face cache, or set model.pretrained to a local .pth/.safetensors file, or false") from None
    if isinstance(cfg.pretrained, Path):
        _load_local(backbone, cfg.pretrained, cfg.name)
    if cfg.head == "factorized":
        head: nn.Module = FactorizedHead(backbone.num_features, tuple(MASK_FACTORS.values()), cfg.out_features,
                                         cfg.dropout)
    else:
        head = _head(backbone.num_features, num_outputs, cfg.out_features, cfg.dropout)
    return Classifier(backbone, head)


def _load_local(backbone: nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise ConfigError(f"model.pretrained: weights file '{path}' does not exist; "
                          "pass a state-dict file or true/false")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"model.pretrained: cannot read '{path}' as a state dict ({one_line(e)})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, unexpected = backbone.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith(backbone.default_cfg.get("classifier", "fc"))},
        strict=False)
    if len(missing) > len(backbone.state_dict()) // 2:
        raise ConfigError(f"model.pretrained: '{path}' does not match '{name}' ({len(missing)} missing keys); "
                          "use weights of the same architecture")
