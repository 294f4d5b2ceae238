"""The training config: its schema (``_schema``), reading and validating a YAML file (``_loading``), and the
one-line message of a validation error (``_messages``, which study files use too)."""

from ._loading import dump_config, load_config, parse_config, read_yaml
from ._messages import format_error
from ._schema import (
    DATA_SOURCES,
    MASK_FACTORS,
    SEED_MAX,
    AugmentConfig,
    CsvData,
    DataConfig,
    DigitsData,
    EmaConfig,
    ImageFolderData,
    LoopConfig,
    LossConfig,
    LossName,
    MaskData,
    MixConfig,
    ModelConfig,
    OptimizerConfig,
    OptimizerName,
    RunConfig,
    SchedulerConfig,
    SchedulerName,
    StrictModel,
)

__all__ = ["RunConfig", "DataConfig", "ModelConfig", "LossConfig", "OptimizerConfig", "SchedulerConfig",
           "AugmentConfig", "LoopConfig", "StrictModel", "LossName", "OptimizerName", "SchedulerName", "DATA_SOURCES",
           "MASK_FACTORS", "SEED_MAX", "MixConfig", "EmaConfig",
           "DigitsData", "ImageFolderData", "CsvData", "MaskData", "load_config",
           "parse_config", "read_yaml", "dump_config", "format_error"]
