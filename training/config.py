"""Typed, frozen training config: one YAML maps onto :class:`RunConfig`; unknown keys are errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .registry import suggest

__all__ = [
    "RunConfig", "DataConfig", "ModelConfig", "LossConfig", "OptimizerConfig", "SchedulerConfig",
    "AugmentConfig", "LoopConfig", "StrictModel", "LossName", "OptimizerName", "SchedulerName", "load_config",
    "parse_config", "read_yaml", "dump_config", "format_error",
]


class StrictModel(BaseModel):
    """The base of every config section, here and in study files: an unknown key is an error, and a validated
    config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    split_seed: int = 0
    on_bad_image: Literal["fail", "skip"] = "fail"
    weighted_sampler: bool = False
    cache_dir: Path | None = Field(None, description="decoded-image cache; default ~/.cache/imgsearch")
    num_workers: int = Field(0, ge=0, description="processes for CPU-side augmentation")
    folds: int | None = Field(None, ge=2, le=100, description="k-fold: validate on fold `fold` of this many "
                              "(stratified, grouped where groups exist) instead of a val_fraction split")
    fold: int = Field(0, ge=0, description="with folds: the fold held out for validation, 0..folds-1")

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
DATA_SOURCES = ("digits", "imagefolder", "csv", "mask")
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
        raise ValueError(f"unknown {kind} '{value}'{suggest(value, valid)}; valid: {', '.join(valid)}")
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


class AugmentConfig(StrictModel):
    train: Any = Field(None, description="albumentations pipeline in its serialized form (A.to_dict)")
    eval: Any = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @field_validator("train", "eval")
    @classmethod
    def _loads(cls, v: Any) -> Any:
        if v is None:
            return v
        from .augment import parse_pipeline

        parse_pipeline(v)  # raises ValueError naming the bad transform
        return v


class LoopConfig(StrictModel):
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int | Literal["auto"] = Field(64, description="images per step; auto: the largest that fits the GPU")
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
    seed: int = 0
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


# ---------------------------------------------------------------- loading and one-line errors

def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file; pass an existing YAML path")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{where} is not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def _field_model(ann: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds, and whether it is held by key: ``Model`` itself, or a ``dict[str, Model]``'s
    values (a study's search_space)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    args = get_args(ann)
    if get_origin(ann) is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return args[1], True
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(models) == 1 and all(a is type(None) or a in models for a in args):  # Model | None
        return models[0], False
    return None, False


def _model_at(loc: tuple[Any, ...], data: Any, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc`` (to list its valid keys)."""
    model: Any = root
    node = data
    keyed = False  # the next part is a key of a dict[str, Model] field, not a field name
    for part in loc[:-1]:
        if keyed:
            keyed = False
            node = node.get(part, {}) if isinstance(node, dict) else {}
            continue
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        node = node.get(part, {}) if isinstance(node, dict) else {}
        ann = model.model_fields[part].annotation
        if part == "data":
            src = node.get("source", "digits") if isinstance(node, dict) else "digits"
            model = {"digits": DigitsData, "imagefolder": ImageFolderData, "csv": CsvData, "mask": MaskData}.get(src)
        else:
            model, keyed = _field_model(ann)
    return model


_BRANCH = re.compile(r"^(literal\[.*\]|bool|int|float|str|none|list\[.*\]|tuple\[.*\]|function-.*|lax-or-strict\[.*\]|"
                     r"json-or-python\[.*\]|is-instance\[.*\]|union\[.*\]|nullable\[.*\]|constrained-.*|path)$")


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's internal parts: the data-source tag and the branch names of union-typed keys."""
    out = []
    for i, p in enumerate(loc):
        if i > 0 and loc[i - 1] == "data" and p in DATA_SOURCES:
            continue
        if isinstance(p, str) and _BRANCH.match(p):
            continue
        out.append(p)
    return tuple(out)


def _value_at(data: Any, loc: tuple) -> Any:
    node = data
    for p in loc:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        else:
            return None
    return node


def format_error(err: ValidationError, where: str, data: Any, prefix: tuple[str, ...] = (),
                 root: type[BaseModel] = RunConfig) -> str:
    """One line for what ``root.model_validate(data)`` raised: ``where`` (the file), the dotted key (under
    ``prefix``), the value and what is allowed; an unknown key gets the valid ones and a near miss."""
    errors = err.errors()
    # a misspelt required key fails twice, as missing and as unknown: the unknown one says what to fix
    unknown = any(x["type"] == "extra_forbidden" for x in errors)
    errors.sort(key=lambda x: unknown and x["type"] == "missing")
    e = errors[0]
    loc = _clean_loc(e["loc"])
    # a union-typed key fails once per allowed form (list forms at an item): gather them all
    same = [x for x in errors if _clean_loc(x["loc"])[:len(loc)] == loc]
    others = len({_clean_loc(x["loc"])[:len(loc)] for x in errors}) - 1
    key = ".".join(str(p) for p in prefix + loc) or "(top level)"
    more = f" (+{others} more)" if others else ""
    if e["type"] == "extra_forbidden":
        model = _model_at(loc, data, root)
        valid = sorted(model.model_fields) if model else []
        name = str(loc[-1])
        hint = suggest(name, valid) + (f"; valid keys: {', '.join(valid)}" if valid else "")
        return f"{where}: unknown key '{key}'{hint}{more}"
    if e["type"] == "missing" and loc and isinstance(loc[-1], int):  # a list/tuple with too few values
        parent = ".".join(str(p) for p in prefix + loc[:-1])
        return f"{where}: {parent} = {_value_at(data, loc[:-1])!r}: too few values (item {loc[-1]} is missing){more}"
    if e["type"] == "missing":
        model = _model_at(loc, data, root)
        field = model.model_fields.get(str(loc[-1])) if model and loc else None
        what = f" ({field.description})" if field is not None and field.description else ""
        return f"{where}: missing required key '{key}'{what}; add it{more}"
    if e["type"] == "union_tag_invalid":
        return (f"{where}: {key}.source = {e['input'].get('source')!r} is not a data source; "
                f"valid: {', '.join(DATA_SOURCES)}{more}")
    msgs = list(dict.fromkeys(
        (f"a list, but item {_clean_loc(x['loc'])[len(loc)]}: " if len(_clean_loc(x["loc"])) > len(loc) else "")
        + re.sub(r"a valid dictionary or instance of \w+", "a mapping (key: value)",
                 x["msg"].removeprefix("Value error, ")) for x in same))
    msg = " or ".join(msgs) if len(msgs) <= 4 else "; ".join(msgs[:4])
    value = _value_at(data, loc) if loc else e.get("input")
    if isinstance(value, dict):  # a whole section (or file) failed a cross-field check: its message names the keys
        return f"{where}: {msg}{more}" if key == "(top level)" else f"{where}: {key}: {msg}{more}"
    return f"{where}: {key} = {value!r}: {msg}{more}"


def parse_config(data: dict[str, Any], where: str = "config", prefix: tuple[str, ...] = ()) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_error(err, where, data, prefix)) from None


def load_config(path: str | Path) -> RunConfig:
    return parse_config(read_yaml(path), str(path))


def dump_config(cfg: RunConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")
