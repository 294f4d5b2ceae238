"""The training config's schema: typed, frozen sections that reject unknown keys; one YAML maps onto
:class:`RunConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..registry import did_you_mean

__all__ = ["RunConfig", "DataConfig", "ModelConfig", "LossConfig", "OptimizerConfig", "SchedulerConfig",
           "AugmentConfig", "MixConfig", "EmaConfig",
           "LoopConfig", "StrictModel", "LossName", "OptimizerName", "SchedulerName", "DATA_SOURCES",
           "MASK_FACTORS"]


SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit


class StrictModel(BaseModel):
    """The base of every config section, here and in study files: an unknown key is an error, and a validated
    config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _sides(v: Any, lo: int, hi: int) -> tuple[int, int] | None:
    """``v`` as (H, W) when it is a list of two integers in [lo, hi], else None."""
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        return None
    if not all(isinstance(s, int) and not isinstance(s, bool) and lo <= s <= hi for s in v):
        return None
    return int(v[0]), int(v[1])


class _DataBase(StrictModel):
    image_size: int | tuple[int, int] = Field(224, description="the model's input in pixels: S (an S x S square) "
                                              "or [H, W]; read it resolved as `hw`")
    center_crop: tuple[int, int] | None = Field(None, description="[H, W] cut from the middle of each (upright) "
                                                "image before the resize to image_size; none: the whole image")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0, le=SEED_MAX, description="the split's seed (numpy and scikit-learn take 32 bits)")
    on_bad_image: Literal["fail", "skip"] = "fail"
    weighted_sampler: bool = False
    cache_dir: Path | None = Field(None, description="decoded-image cache; default ~/.cache/imgsearch")
    num_workers: int = Field(0, ge=0, description="processes for CPU-side augmentation")
    folds: int | None = Field(None, ge=2, le=100, description="k-fold: validate on fold `fold` of this many "
                              "(stratified, grouped where groups exist) instead of a val_fraction split")
    fold: int = Field(0, ge=0, description="with folds: the fold held out for validation, 0..folds-1")
    exclude: Path | None = Field(None, description="images to leave out: a list of paths, or a CSV with a 'path' "
                                 "column (an edited label_issues.csv of search audit)")
    relabel: Path | None = Field(None, description="labels to fix: a CSV with 'path' and 'label' columns (or "
                                 "label_issues.csv's 'suggested')")

    @field_validator("image_size", mode="before")
    @classmethod
    def _image_size(cls, v: Any) -> int | tuple[int, int]:
        if isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096:
            return v
        if (hw := _sides(v, 8, 4096)) is None:
            raise ValueError("must be S or [H, W] in pixels, each side an integer from 8 to 4096 "
                             "(e.g. 224 or [320, 256])")
        return hw

    @field_validator("center_crop", mode="before")
    @classmethod
    def _center_crop(cls, v: Any) -> tuple[int, int] | None:
        if v is None:
            return None
        if (hw := _sides(v, 1, 65_535)) is None:
            raise ValueError("must be [H, W] in pixels, two positive integers (e.g. [450, 360]), or null")
        return hw

    @property
    def hw(self) -> tuple[int, int]:
        """The model's input (height, width) in pixels: ``image_size`` resolved, S meaning (S, S)."""
        s = self.image_size
        return (s, s) if isinstance(s, int) else s

    @model_validator(mode="after")
    def _fold_in_range(self) -> "_DataBase":
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"fold = {self.fold} is not below folds = {self.folds}; use 0..{self.folds - 1}")
        return self


class DigitsData(_DataBase):
    source: Literal["digits"] = "digits"
    limit: int | None = Field(None, ge=20, description="use only the first N samples")


class ImageFolderData(_DataBase):
    source: Literal["imagefolder"]
    root: Path


class CsvData(_DataBase):
    source: Literal["csv"]
    file: Path
    image_column: str = "path"
    label_columns: list[str] = Field(min_length=1)
    group_column: str | None = None
    root: Path | None = Field(None, description="image paths are relative to this; default the CSV's folder")
    classes: list[str] | None = Field(None, description="the class list (single label column only)")


class MaskData(_DataBase):
    source: Literal["mask"]
    root: Path
    age_bins: tuple[int, int] = Field((30, 60), description="age < a: young, a <= age < b: middle, >= b: old")

    @field_validator("age_bins")
    @classmethod
    def _ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 0 < v[0] < v[1]:
            raise ValueError(f"needs 0 < first < second, got {list(v)}")
        return v


DataConfig = Annotated[Union[DigitsData, ImageFolderData, CsvData, MaskData], Field(discriminator="source")]
DATA_SOURCES = tuple(get_args(m.model_fields["source"].annotation)[0] for m in get_args(get_args(DataConfig)[0]))
# The mask source's 18 classes are mask x gender x age: class = mask*6 + gender*3 + age (training/data/sources.py),
# the row-major index into this shape. model.head: factorized puts one classifier on each factor.
MASK_FACTORS = {"mask": 3, "gender": 2, "age": 3}


class ModelConfig(StrictModel):
    name: str = "resnet18"
    pretrained: bool | Path = Field(False, description="true: timm's weights; a path: a local state dict")
    out_features: int = Field(0, ge=0, description="hidden units of an extra head layer; 0: none")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    head: Literal["single", "factorized"] = Field(
        "single", description="single: one classifier over the classes; factorized (data.source: mask only): "
                              "one per MASK_FACTORS factor, the 18 classes' probability their product")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        import timm

        if not timm.is_model(v):
            near = timm.list_models(f"*{v.split('.')[0][:6]}*")[:5]
            hint = f"; close: {', '.join(near)}" if near else ""
            raise ValueError(f"unknown timm model '{v}'{hint} (see timm.list_models())")
        return v


# The names each registry holds (training/losses.py, optim.py, schedules.py), as litgpt checks its names: a
# Literal here, so that reading a config imports no torch; a test asserts that each equals its registry's names.
LossName = Literal["ce", "focal", "bce", "soft_margin"]
OptimizerName = Literal["sgd", "adam", "adamw"]
SchedulerName = Literal["none", "step", "multistep", "cosine"]


def _check_name(kind: str, value: Any, names: Any) -> Any:
    """``value`` when it is one of the Literal ``names``; a string that is not gets one line with the near miss
    and the valid names (anything else is left to the Literal's own check)."""
    valid = sorted(get_args(names))
    if isinstance(value, str) and value not in valid:
        raise ValueError(f"unknown {kind} '{value}'{did_you_mean(value, valid)}; valid: {', '.join(valid)}")
    return value


class LossConfig(StrictModel):
    name: LossName = "ce"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    gamma: float = Field(2.0, ge=0.0, le=10.0, description="focal loss focusing; 0 equals cross-entropy")
    class_weights: Literal["balanced"] | list[float] | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _registered(cls, v: Any) -> Any:
        return _check_name("loss", v, LossName)


class OptimizerConfig(StrictModel):
    name: OptimizerName = "adamw"
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="head lr; per 256 images if scale_lr_with_batch")
    backbone_lr: float | None = Field(None, gt=0.0, le=10.0, description="backbone lr; default: lr")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    scale_lr_with_batch: bool = Field(False, description="lr x batch_size / 256 (goyal et al.)")

    @field_validator("name", mode="before")
    @classmethod
    def _registered(cls, v: Any) -> Any:
        return _check_name("optimizer", v, OptimizerName)


class SchedulerConfig(StrictModel):
    name: SchedulerName = "none"
    warmup_epochs: float = Field(0.0, ge=0.0)
    step_size: int = Field(10, ge=1, description="step: epochs between drops")
    milestones: list[int] = Field(default_factory=lambda: [10, 20, 30], description="multistep: drop epochs")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step/multistep: lr factor per drop")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="cosine: final lr / initial lr")

    @field_validator("name", mode="before")
    @classmethod
    def _registered(cls, v: Any) -> Any:
        return _check_name("scheduler", v, SchedulerName)


class MixConfig(StrictModel):
    """Mixup / CutMix on whole batches, on the device (training/mix.py): soft targets for ce, focal and bce."""
    name: Literal["none", "mixup", "cutmix", "both"] = "none"
    mixup_alpha: float = Field(0.2, gt=0.0, le=10.0, description="mixup's lam ~ Beta(alpha, alpha)")
    cutmix_alpha: float = Field(1.0, gt=0.0, le=10.0, description="CutMix's lam ~ Beta(alpha, alpha)")
    prob: float = Field(1.0, ge=0.0, le=1.0, description="share of the batches that are mixed")
    switch_prob: float = Field(0.5, ge=0.0, le=1.0, description="both: share of the mixed batches that use CutMix")


class AugmentConfig(StrictModel):
    train: Any = Field(None, description="albumentations pipeline in its serialized form (A.to_dict)")
    eval: Any = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    mix: MixConfig = Field(default_factory=MixConfig)

    @field_validator("train", "eval")
    @classmethod
    def _loads(cls, v: Any) -> Any:
        if v is None:
            return v
        from ..augment import parse_pipeline

        parse_pipeline(v)  # raises ValueError naming the bad transform
        return v


class EmaConfig(StrictModel):
    """An exponential moving average of the weights (timm's ModelEmaV3), updated after every optimizer step:
    validation, best.pt and so predict and export use it."""
    decay: float = Field(0.999, gt=0.0, lt=1.0, description="weight of the average per step; the horizon is about "
                         "1 / (1 - decay) steps")
    warmup: bool = Field(True, description="ramp the decay up over the first steps (timm's use_warmup), so the "
                         "random init does not linger in the average")


class LoopConfig(StrictModel):
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int | Literal["auto"] = Field(64, description="images per step; auto: the largest that fits the GPU")
    accumulate: int = Field(1, ge=1, le=1024, description="gradient accumulation: an optimizer step per N batches, "
                            "an effective batch of N x batch_size (BatchNorm still sees batch_size)")
    ema: EmaConfig | None = Field(None, description="train with an EMA of the weights (validated and saved)")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better F1")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="multi-label decision threshold")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads")
    full_data_epochs: int | None = Field(None, ge=1, le=10_000, description="epochs of a full-data retrain "
                                         "(search train --full-data); an export sets it to the trial's best epoch")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int | str) -> int | str:
        if v != "auto" and not 1 <= v <= 65_536:
            raise ValueError("must be between 1 and 65536, or auto")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda") and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got '{v}'")
        return v


class RunConfig(StrictModel):
    seed: int = Field(0, ge=0, le=SEED_MAX, description="init and augmentation order (32 bits, as numpy seeds)")
    data: DataConfig = Field(default_factory=DigitsData)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: LoopConfig = Field(default_factory=LoopConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, raw: Any) -> Any:
        """``data:`` without ``source`` means the built-in digits, the default data set."""
        if isinstance(raw, dict) and isinstance(raw.get("data"), dict) and "source" not in raw["data"]:
            raw = {**raw, "data": {**raw["data"], "source": "digits"}}
        return raw

    @model_validator(mode="after")
    def _milestones(self) -> "RunConfig":
        ms = self.scheduler.milestones
        if self.scheduler.name == "multistep" and sorted(ms) != ms:
            raise ValueError(f"scheduler.milestones must be increasing, got {ms}; sort them: {sorted(ms)}")
        return self

    @model_validator(mode="after")
    def _warmup_fits(self) -> "RunConfig":
        warm, epochs = self.scheduler.warmup_epochs, self.train.epochs
        if warm and warm >= epochs:
            raise ValueError(f"scheduler.warmup_epochs = {warm:g} is not below train.epochs = {epochs}: the lr would "
                             f"still be warming up when training ends; use a warm-up below {epochs} epochs (1 is "
                             "usual), or 0")
        return self

    @model_validator(mode="after")
    def _factorized_head(self) -> "RunConfig":
        """The factorized head splits the mask source's classes; its class weights are per head, so a list of
        one weight per 18 classes has no meaning there: it takes each head's weights one after another."""
        if self.model.head != "factorized":
            return self
        if self.data.source != "mask":
            raise ValueError(f"model.head = 'factorized' needs data.source: mask (it splits the 18 mask classes into "
                             f"{', '.join(MASK_FACTORS)} heads), but data.source = '{self.data.source}'; "
                             "use model.head: single (in a study: drop factorized from model.head's choices)")
        cw, n = self.loss.class_weights, sum(MASK_FACTORS.values())
        if isinstance(cw, list) and len(cw) != n:
            heads = ", ".join(f"{k} {v}" for k, v in MASK_FACTORS.items())
            raise ValueError(f"loss.class_weights has {len(cw)} values, but model.head: factorized weighs each head's "
                             f"own classes: give {n} ({heads}, in that order), or balanced")
        return self
