"""What a finished run looked at: class-activation maps with pytorch-grad-cam, on its eval path.

For each image, the map of the class the run predicts (``--method``: gradcam, gradcam++, eigencam, ...), over the
image as the model saw it (the run's crop and resize; the eval pipeline and normalization as `search predict`
applies them). By default the images are the run's val mistakes at its best epoch (training/mistakes.py), most
confident first; any images can be given instead (the inputs of `search predict`). The layer explained is the
last feature stage of a timm CNN (its ``feature_info``: resnet's layer4, efficientnet's last block, convnext's
last stage; at a small input, the last one whose map is more than one cell) or, for a ViT-style model, the last
block's norm with its patch tokens laid back on their grid. It writes one PNG per image (the image and its
overlay, with true and predicted class) and a contact sheet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..augment import eval_normalization
from ..data.images import fit_image, read_rgb
from ..data.loader import make_loader
from ..errors import ConfigError
from ..mistakes import mistakes, run_images, short_name
from ..sheets import contact_sheet
from .inputs import read_inputs
from .runs import Run, inference_runtime, load_model, read_run

__all__ = ["METHODS", "OUTPUTS", "Explained", "explain", "target_layer"]

OUTPUTS = ("explain.png", "[0-9][0-9][0-9]_*.png")  # what explain writes: the sheet and one PNG per image
METHODS = ("gradcam", "gradcam++", "eigencam", "hirescam", "xgradcam", "layercam", "scorecam")


def _cam_class(method: str):
    import pytorch_grad_cam as cams

    return {"gradcam": cams.GradCAM, "gradcam++": cams.GradCAMPlusPlus, "eigencam": cams.EigenCAM,
            "hirescam": cams.HiResCAM, "xgradcam": cams.XGradCAM, "layercam": cams.LayerCAM,
            "scorecam": cams.ScoreCAM}[method]


@dataclass(frozen=True)
class Explained:
    name: str
    image: np.ndarray        # HxWx3 uint8, as the model saw it
    cam: np.ndarray          # HxW in [0, 1]
    predicted: str
    probability: float
    true: str | None         # known for the run's own val images


def _token_grid(backbone, tokens: int, input_size: tuple[int, int] | None) -> tuple[int, int]:
    """The patch grid ``tokens`` patch tokens lie on: the input's size over the patch size (a run at another
    size than the model's default has another grid), else a square."""
    if input_size is not None:
        ph, pw = tuple(backbone.patch_embed.patch_size)
        grid = (input_size[0] // ph, input_size[1] // pw)
        if grid[0] * grid[1] == tokens:
            return grid
    side = round(tokens ** 0.5)
    if side * side != tokens:
        raise ConfigError(f"explain cannot lay this ViT's {tokens} patch tokens on a grid; explain a CNN's run")
    return side, side


def _stage(info, input_size: tuple[int, int] | None) -> dict:
    """The last feature stage whose map is more than one cell at this input size (a 32 px image through a
    stride-32 stage is one cell: a flat map that shows nothing), else the last."""
    if input_size is not None:
        wide = [s for s in info if min(input_size) // int(s.get("reduction", 1)) >= 2]
        if wide:
            return wide[-1]
    return info[-1]


def target_layer(model: nn.Module, name: str, input_size: tuple[int, int] | None = None):
    """(the layer to explain, the reshape of its output into an N x C x H x W map, or None for a CNN's own);
    ``input_size``, the (H, W) of the images explained, places a ViT's tokens on their grid."""
    backbone = getattr(model, "backbone", model)
    if hasattr(backbone, "patch_embed") and hasattr(backbone, "blocks"):  # ViT-style: tokens
        prefix = int(getattr(backbone, "num_prefix_tokens", 1))

        def tokens_to_map(x: torch.Tensor) -> torch.Tensor:
            grid = _token_grid(backbone, x.size(1) - prefix, input_size)
            return x[:, prefix:, :].reshape(x.size(0), *grid, x.size(2)).permute(0, 3, 1, 2)

        return backbone.blocks[-1].norm1, tokens_to_map
    info = getattr(backbone, "feature_info", None)
    if info:
        layer = backbone.get_submodule(_stage(info, input_size)["module"])
        if getattr(backbone, "output_fmt", "NCHW") == "NHWC":  # swin and kin: channels last in their stages
            return layer, lambda x: x.permute(0, 3, 1, 2)
        return layer, None
    raise ConfigError(f"model.name = '{name}': explain finds the layer to map in a timm CNN's feature_info or a "
                      "ViT's blocks, and this model has neither; explain a run of another model")


def _channels(model: nn.Module, input_size: tuple[int, int]) -> int | None:
    """The channels the mapped layer should give: a ViT's embedding width, a CNN's stage's."""
    backbone = getattr(model, "backbone", model)
    if hasattr(backbone, "patch_embed") and hasattr(backbone, "blocks"):
        return getattr(backbone, "embed_dim", None)
    info = getattr(backbone, "feature_info", None)
    return _stage(info, input_size).get("num_chs") if info else None


def _checked_forward(model: nn.Module, x: torch.Tensor, layer, reshape, name: str) -> np.ndarray:
    """The model's class probabilities for ``x``; on the way, the mapped layer's output must be a map (N, C, H, W
    with the layer's C channels), else a model the layer search got wrong is one line, not a garbled heat map."""
    seen = []
    hook = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            probabilities = torch.softmax(model(x).float(), dim=1).cpu().numpy()
    finally:
        hook.remove()
    out = seen[-1] if seen else None
    out = reshape(out) if reshape is not None and isinstance(out, torch.Tensor) else out
    channels = _channels(model, tuple(x.shape[2:]))
    if (not isinstance(out, torch.Tensor) or out.ndim != 4 or out.size(0) != x.size(0) or min(out.shape[2:]) < 1
            or (channels is not None and out.size(1) != channels)):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model.name = '{name}': the layer explain maps gives {shape}, not a batch of feature "
                          "maps; explain a run of a timm CNN or ViT")
    return probabilities


def _prepared(run: Run, images: list[np.ndarray], rt) -> torch.Tensor:
    """The images through the run's eval path, as one input batch (what `search predict` feeds the model)."""
    mean, std = eval_normalization(run.cfg.augment)
    loader = make_loader(np.stack(images), np.arange(len(images)), np.zeros(len(images), np.int64),
                         batch_size=len(images), spec=run.cfg.augment.eval, mean=mean, std=std, device=rt.device,
                         channels_last=False, shuffle=False, seed=run.cfg.seed, dtype=torch.float32)
    return next(iter(loader))[0]


def _inputs(folder: Path, run: Run, images: Path | None, n: int) -> tuple[list[str], list[np.ndarray], list]:
    """(names, fitted images, their true classes or None): the given images, or the run's val mistakes."""
    if images is not None:
        paths = read_inputs(images).paths[:n]
        return [str(p) for p in paths], [fit_image(read_rgb(p), run.cfg.data) for p in paths], [None] * len(paths)
    found = mistakes(folder, n)
    if not found:
        raise ConfigError(f"run folder '{folder}' holds no val mistakes to explain (none were made, or the run "
                          "predates kept predictions); pass --images to explain others")
    names = [m.name for m in found]
    return names, run_images(folder, names), [m.true for m in found]


def explain(folder: str | Path, out: str | Path, images: Path | None = None, method: str = "gradcam",
            n: int = 32) -> list[Explained]:
    """Maps for ``n`` images of run ``folder`` (or its val mistakes), written to ``out``."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method not in METHODS:
        raise ConfigError(f"--method {method}: not a CAM method; valid: {', '.join(METHODS)}")
    folder, out = Path(folder), Path(out)
    run = read_run(folder)
    if run.multilabel:
        raise ConfigError(f"run folder '{folder}' is multi-label; explain maps the one class a run predicts: "
                          "explain a single-label run")
    rt = inference_runtime(run.cfg.model_copy(update={"train": run.cfg.train.model_copy(
        update={"precision": "fp32"})}))  # gradients of the map in full precision
    model = load_model(run, rt).float()
    names, fitted, true = _inputs(folder, run, images, n)
    x = _prepared(run, fitted, rt)
    layer, reshape = target_layer(model, run.cfg.model.name, tuple(x.shape[2:]))
    probabilities = _checked_forward(model, x, layer, reshape, run.cfg.model.name)
    predicted = probabilities.argmax(axis=1)
    with _cam_class(method)(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in predicted])
    done = [Explained(nm, img, m, run.classes[int(c)], float(p[c]), t)
            for nm, img, m, c, p, t in zip(names, fitted, maps, predicted, probabilities, true)]
    _write(done, out, method)
    return done


def _overlay(e: Explained) -> np.ndarray:
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(e.image.astype(np.float32) / 255.0, e.cam, use_rgb=True)


def _caption(e: Explained) -> str:
    said = f"predicted {e.predicted} ({e.probability:.2f})"
    return (f"true {e.true}, {said}" if e.true is not None else said) + f"\n{short_name(e.name)}"


def _write(done: list[Explained], out: Path, method: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for k, e in enumerate(done):
        contact_sheet([e.image, _overlay(e)], ["image", _caption(e)], out / f"{k:03d}_{Path(e.name).stem}.png",
                      columns=2)
    contact_sheet([_overlay(e) for e in done], [_caption(e) for e in done], out / "explain.png",
                  f"{method} maps of {len(done)} images: where the model looked for the class it predicts")
