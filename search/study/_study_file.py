"""Study files (``studies/<name>.yaml``): the fixed training config, the search space, sampler, pruner, W&B."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from search.errors import StudyConfigError
from search.study._pruners import Median, PrunerSpec, check_fits, check_pruner_keys, min_steps
from search.study._samplers import SamplerSpec, Tpe, check_sampler_keys, check_sampler_space
from search.study._space import Param, apply_params, defaults, get_path, space_hash
from search.study._stopping import StopConfig
from training.config import RunConfig, StrictModel, dump_config, format_error, parse_config, read_yaml
from training.errors import ConfigError

__all__ = ["StudyConfig", "load_study", "study_name", "resolve_study_path", "STUDIES_DIR", "is_study_file",
           "ArtifactsConfig", "study_warnings"]

STUDIES_DIR = Path(__file__).resolve().parents[2] / "studies"


class CvConfig(StrictModel):
    folds: int = Field(ge=2, le=20, description="each trial trains one run per fold; its value is their mean")


class WandbConfig(StrictModel):
    enabled: bool = True
    project: str | None = None          # default: the study name
    group: str | None = None            # default: the study name
    entity: str | None = None
    mode: Literal["auto", "offline", "online"] = Field("auto", description="auto: online when an API key is set")


class Reliability(StrictModel):
    heartbeat_seconds: int = Field(10, ge=1, description="a RUNNING trial silent for 3x this (plus 1 s on SQLite, "
                                   "whose clock has whole seconds) is failed and retried")
    max_retries: int = Field(3, ge=0, description="retries of a trial whose worker died")
    max_failures: int | None = Field(None, ge=1, description="stop when this many trials failed; default: n_trials")


class ArtifactsConfig(StrictModel):
    path: str | None = Field(None, description="the artifact store's folder; default: <output root>/artifacts, "
                             "beside the trial outputs")
    s3_bucket: str | None = Field(None, description="keep the artifacts in this S3 bucket (boto3's credentials) "
                                  "instead of a folder")
    keep_top_k: int = Field(3, ge=0, description="the best completed trials whose best.pt stays in the store")

    @model_validator(mode="after")
    def _one_store(self) -> ArtifactsConfig:
        if self.path is not None and self.s3_bucket is not None:
            raise ValueError(f"path = {self.path!r} and s3_bucket = {self.s3_bucket!r} name two stores; keep one "
                             "of them")
        return self


class StudyFile(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    n_trials: int = Field(20, ge=1)
    workers: int = Field(1, ge=1)
    seed_trials_with_defaults: bool = Field(True, description="trial 0 runs every parameter's default")
    training: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, Param] = Field(default_factory=dict)
    sampler: SamplerSpec = Field(default_factory=Tpe)
    pruner: PrunerSpec = Field(default_factory=Median)
    stop: StopConfig | None = None
    cv: CvConfig | None = None
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    reliability: Reliability = Field(default_factory=Reliability)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    tensorboard: Path | None = Field(None, description="write each trial's TensorBoard run under DIR/<name>/ "
                                     "(search run --tensorboard DIR says the same)")


class StudyConfig:
    """A validated study: ``base`` is the full resolved training config, ``space`` the searched paths."""

    def __init__(self, spec: StudyFile, base: dict, path: Path) -> None:
        self.spec, self.base, self.path = spec, base, path
        self.name, self.space = spec.name, spec.search_space

    @property
    def space_hash(self) -> str:
        return space_hash(self.space)

    @property
    def max_epochs(self) -> int:
        """A trial's most epochs: the fixed config's, or the search space's high when epochs are searched."""
        p = self.space.get("train.epochs")
        return int(p.high if p is not None and p.kind != "categorical" else
                   max(p.choices) if p is not None else self.base["train"]["epochs"])

    def default_params(self) -> dict[str, Any]:
        return defaults(self.space, self.base)

    def config_for(self, params: dict[str, Any], where: str) -> RunConfig:
        return parse_config(apply_params(self.base, params), where)


def is_study_file(raw: dict) -> bool:
    return "search_space" in raw or "training" in raw


def resolve_study_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise StudyConfigError(f"{p}: no such study file; pass a path or a name from {STUDIES_DIR}")
        return p
    for cand in (Path("studies") / f"{name_or_path}.yaml", STUDIES_DIR / f"{name_or_path}.yaml"):
        if cand.is_file():
            return cand
    known = sorted(f.stem for f in STUDIES_DIR.glob("*.yaml"))
    from training.registry import did_you_mean

    raise StudyConfigError(f"no study '{name_or_path}'{did_you_mean(name_or_path, known)}; "
                           f"known: {', '.join(known)} (or pass a path to a YAML file)")


def study_name(name_or_path: str) -> str:
    """The study's name as its file gives it, without validating the training config (that imports timm and
    albumentations, seconds that `status` and `best` do not need)."""
    raw = read_yaml(resolve_study_path(name_or_path))
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not name:
        raise StudyConfigError(f"{name_or_path}: the study file has no name")
    return name


def load_study(name_or_path: str) -> StudyConfig:
    path = resolve_study_path(name_or_path)
    raw = read_yaml(path)
    if "name" not in raw:
        raise StudyConfigError(_nameless(path, raw))
    try:  # first, so that a wrong name or another pruner's key gets its own line, not pydantic's union dump
        raw = {**raw, "sampler": check_sampler_keys(raw.get("sampler", {}), str(path)),
               "pruner": check_pruner_keys(raw.get("pruner", {}), str(path))}
    except ValueError as e:
        raise StudyConfigError(str(e)) from None
    try:
        spec = StudyFile.model_validate(raw)
    except ValidationError as err:
        raise StudyConfigError(format_error(err, str(path), raw, root=StudyFile)) from None
    try:
        base = dump_config(parse_config(spec.training, str(path), prefix=("training",)))
    except ConfigError as e:
        raise StudyConfigError(str(e)) from None
    study = StudyConfig(spec, base, path)
    _check_pruner_fits(study)
    _check_space(study)
    try:
        check_sampler_space(spec.sampler, study.space, str(path))
    except ValueError as e:
        raise StudyConfigError(str(e)) from None
    return study


def _check_pruner_fits(study: StudyConfig) -> None:
    cv = study.spec.cv
    steps, source = (cv.folds, "cv.folds") if cv else (study.max_epochs, "training.train.epochs" + (
        " (its search_space high)" if "train.epochs" in study.space else ""))
    try:
        check_fits(study.spec.pruner, steps, cv is not None, source, str(study.path))
    except ValueError as e:
        raise StudyConfigError(str(e)) from None


def study_warnings(study: StudyConfig, budget: int) -> list[str]:
    """Settings that are valid but can never act at this budget and these epochs (a study file copied and
    shortened keeps its pruner): one line each, printed when a run starts; not errors."""
    spec, where = study.spec, str(study.path)
    lines = []
    first = min_steps(spec.pruner) if spec.cv is None else None  # cv: check_fits already refuses these
    epochs = study.max_epochs
    if first is not None and first >= epochs:
        warm = getattr(spec.pruner, "n_warmup_steps", None)
        fix = f"set pruner.n_warmup_steps below {epochs - 1}" if warm is not None and epochs > 1 else \
            "shorten the pruner's first cut"
        lines.append(f"{where}: pruner {spec.pruner.name} can first prune at epoch {first}, but a trial trains "
                     f"{epochs} epochs and its last is never pruned, so it will never stop a trial; {fix}, or set "
                     "pruner.name: none")
    startup = getattr(spec.pruner, "n_startup_trials", None)
    if startup is not None and startup >= budget:
        lines.append(f"{where}: pruner.n_startup_trials = {startup} with a budget of {budget} trials: the pruner "
                     f"waits for {startup} completed trials, so it never prunes; lower it below {budget}")
    sampled = getattr(spec.sampler, "n_startup_trials", None)
    if isinstance(sampled, int) and sampled >= budget and spec.sampler.name != "cmaes":
        lines.append(f"{where}: sampler.n_startup_trials = {sampled} with a budget of {budget} trials: every trial "
                     f"is drawn at random; lower it below {budget}, or use n_startup_trials: auto")
    if spec.stop is not None and spec.stop.patience_trials >= budget:
        lines.append(f"{where}: stop.patience_trials = {spec.stop.patience_trials} with a budget of {budget} trials: "
                     f"the study can never stop early; lower it below {budget}")
    return lines


def _nameless(path: Path, raw: dict) -> str:
    """A file with ``training:`` and no ``name`` is often a training config pasted with its study's wrapper."""
    if not raw:
        return f"{path}: the file is empty; a study file has a name, a training config and a search_space " \
            "(see studies/)"
    if "search_space" in raw:
        return f"{path}: the study file has no 'name'; add a top-level line such as `name: {path.stem}`"
    return (f"{path}: looks like a study file without a 'name', or a training config wrapped in 'training:'; "
            f"for a study add a top-level `name: {path.stem}`, for a training config remove the `training:` line "
            "and un-indent the keys under it")


def _check_space(study: StudyConfig) -> None:
    """Every path exists, every default is in its distribution, every choice and bound is a valid config."""
    where = str(study.path)
    known = _flat_keys(study.base)
    absent = object()  # get_path's MISSING default means "raise"
    from training.registry import did_you_mean

    for key, p in study.space.items():
        if get_path(study.base, key, absent) is absent:
            off = next((part for part in _prefixes(key) if get_path(study.base, part, absent) is None), None)
            if off is not None:  # an optional section that is off (train.ema: null): its keys exist once it is on
                raise StudyConfigError(f"{where}: search_space.{key}: training.{off} is off (null), so it has no "
                                       f"{key[len(off) + 1:]} to search; turn it on in the training section, e.g. "
                                       f"`{off}: {{{key[len(off) + 1:]}: ...}}`")
            raise StudyConfigError(f"{where}: search_space.{key} is not a training config key"
                                   f"{did_you_mean(key, known)}; keys look like optimizer.lr or model.dropout")
        for cond in p.when:
            if cond not in study.space and get_path(study.base, cond, absent) is absent:
                raise StudyConfigError(f"{where}: search_space.{key}.when: '{cond}' is not a training config key or "
                                       f"searched path{did_you_mean(cond, known)}; keys look like optimizer.name")
    dflt = study.default_params()
    for key, p in study.space.items():
        if key in dflt and dflt[key] is None:
            raise StudyConfigError(f"{where}: search_space.{key} has no default; add 'default:' or set training.{key}")
        if key in dflt and (why := p.check(dflt[key])) and p.default is None:
            inside = "with one of the choices" if p.kind == "categorical" else "inside the range"
            raise StudyConfigError(f"{where}: search_space.{key}: its default {dflt[key]!r} (from training.{key}) is "
                                   f"{why}; add 'default:' {inside}")
        if key in dflt and why:
            fix = "use one of the choices or add it to them" if p.kind == "categorical" else \
                "put it inside the range or widen low/high"
            raise StudyConfigError(f"{where}: search_space.{key}.default = {dflt[key]!r} is {why}; {fix}")
    try:
        study.config_for(dflt, f"{where} (search_space defaults)")
    except ConfigError as e:
        raise StudyConfigError(str(e)) from None
    for key, p in study.space.items():
        values = p.choices if p.kind == "categorical" else [p.low, p.high]
        if p.kind == "int":
            values = [int(v) for v in values]
        for v in values:
            try:
                study.config_for({**dflt, key: v}, f"{where}: search_space.{key} value {v!r}")
            except ConfigError as e:
                raise StudyConfigError(str(e)) from None


def _prefixes(key: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``."""
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _flat_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.append(key)
        if isinstance(v, dict):
            out += _flat_keys(v, key + ".")
    return out
