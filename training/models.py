"""Any timm backbone plus a head: optional hidden layer (``out_features``) and dropout before the classifier."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from .config import ModelConfig
from .errors import ConfigError

__all__ = ["Classifier", "build_model"]


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


def build_model(cfg: ModelConfig, num_outputs: int) -> Classifier:
    try:
        backbone = timm.create_model(cfg.name, pretrained=cfg.pretrained is True, num_classes=0)
    except (OSError, RuntimeError, ValueError) as e:  # no network / no cached weights
        raise ConfigError(
            f"model.pretrained: cannot get timm weights for '{cfg.name}' ({e.__class__.__name__}); put them in the "
            "Hugging Face cache, or set model.pretrained to a local .pth/.safetensors file, or false") from None
    if isinstance(cfg.pretrained, Path):
        _load_local(backbone, cfg.pretrained, cfg.name)
    return Classifier(backbone, _head(backbone.num_features, num_outputs, cfg.out_features, cfg.dropout))


def _load_local(backbone: nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise ConfigError(f"model.pretrained: weights file '{path}' does not exist; pass a state-dict file or true/false")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"model.pretrained: cannot read '{path}' as a state dict ({e.__class__.__name__}: {e})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, unexpected = backbone.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith(backbone.default_cfg.get("classifier", "fc"))},
        strict=False)
    if len(missing) > len(backbone.state_dict()) // 2:
        raise ConfigError(f"model.pretrained: '{path}' does not match '{name}' ({len(missing)} missing keys); "
                          "use weights of the same architecture")
