"""What a study is: its file (the fixed training config and the search space over it), the sampler and the
pruner by name, the rule that stops it early, and the warm start from another study's best trials.

A study file maps onto ``StudyConfig`` (``load_study``), validated at load: unknown keys, a default outside its
range, a pruner that cannot prune at the study's epochs are one-line errors; settings that can never act at a
budget are warnings (``study_warnings``).
"""

from search.study._pruners import (
           PRUNERS,
           Pruner,
           PrunerSpec,
           build_pruner,
           check_fits,
           check_pruner_keys,
           min_steps,
           optuna_warmup_steps,
)
from search.study._samplers import (
           SAMPLERS,
           Sampler,
           SamplerSpec,
           build_sampler,
           check_sampler_keys,
           check_sampler_space,
           startup_trials,
)
from search.study._space import (
           Param,
           Space,
           apply_params,
           defaults,
           get_path,
           is_active,
           lookup,
           sample_params,
           space_hash,
)
from search.study._stopping import STOP_ATTR, StopConfig, forget_other_verdict, judge, stop_reason
from search.study._study_file import (
           STUDIES_DIR,
           ArtifactsConfig,
           StudyConfig,
           is_study_file,
           load_study,
           resolve_study_path,
           study_name,
           study_warnings,
)
from search.study._warm_start import (
           DEFAULT_TOP_K,
           Enqueued,
           Plan,
           Source,
           Start,
           enqueue,
           map_params,
           map_trials,
           read_source,
)

__all__ = ["PrunerSpec", "PRUNERS", "Pruner", "check_pruner_keys", "check_fits", "build_pruner", "optuna_warmup_steps",
           "min_steps", "SamplerSpec", "SAMPLERS", "Sampler", "check_sampler_keys", "check_sampler_space",
           "build_sampler", "startup_trials", "Param", "Space", "sample_params", "defaults", "apply_params",
           "get_path", "space_hash", "is_active", "lookup", "StopConfig", "stop_reason", "judge",
           "forget_other_verdict", "STOP_ATTR", "StudyConfig", "load_study", "study_name", "resolve_study_path",
           "STUDIES_DIR", "is_study_file", "ArtifactsConfig", "study_warnings", "DEFAULT_TOP_K", "Start", "Plan",
           "Source", "Enqueued", "map_params", "map_trials", "read_source", "enqueue"]
