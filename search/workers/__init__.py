"""Running trials: ``search run``'s launcher (preflight, local worker processes, GPU pinning), the worker loop
(claim, run, repeat), one trial (params -> config -> ``fit(callback)`` -> outcome), what each epoch reports,
and what is measured once per GPU model (batch ceilings, trials per GPU).
"""

from search.workers._epoch_reports import TrialReports
from search.workers._launcher import gpu_of_worker, local_gpus, preflight, run_study, worker_env
from search.workers._per_gpu import apply_gpu_share, batch_ceiling, gpu_key, gpu_share, measured_once
from search.workers._trial import TrialContext, WorkerStopped, run_trial, trial_hooks
from search.workers._trials_per_gpu import (
           MAX_K,
           MIN_GAIN,
           Choice,
           choose_k,
           measure_aggregate,
           measured_choice,
           resolve_trials_per_gpu,
)
from search.workers._worker import WorkerResult, budget_of, open_study, work, worker_seed

__all__ = ["TrialReports", "run_study", "preflight", "worker_env", "gpu_of_worker", "local_gpus", "batch_ceiling",
           "apply_gpu_share", "gpu_share", "gpu_key", "measured_once", "TrialContext", "run_trial", "WorkerStopped",
           "trial_hooks", "Choice", "choose_k", "resolve_trials_per_gpu", "measured_choice", "measure_aggregate",
           "MIN_GAIN", "MAX_K", "open_study", "work", "budget_of", "WorkerResult", "worker_seed"]
