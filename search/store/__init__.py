"""The study store and what keeps it exact under many workers: Optuna's RDB storage (SQLite or Postgres), the
study lock, the trial budget kept as WAITING tokens, a trial's lease (claim, heartbeat, retried store calls,
outcome, re-queue), and the wait-and-reconnect around a database outage. No torch here: benchmarks/scale.py runs
64 workers of it in plain processes.
"""

from search.store._budget import LIVE, claim_waiting, counts, take_waiting, top_up
from search.store._heartbeat import Heartbeat
from search.store._lease import EndHook, Hooks, Lease, Survey, WorkerStopped, claim
from search.store._locks import advisory_lock, lock_engine, study_lock
from search.store._retry import TRANSIENT, with_store_retry
from search.store._storage import DEFAULT_STORAGE, RetryCallback, open_storage, redact, resolve_url

__all__ = ["top_up", "take_waiting", "claim_waiting", "counts", "LIVE", "Heartbeat", "claim", "Lease", "Hooks",
           "EndHook", "Survey", "WorkerStopped", "study_lock", "advisory_lock", "lock_engine", "with_store_retry",
           "TRANSIENT", "DEFAULT_STORAGE", "resolve_url", "redact", "open_storage", "RetryCallback"]
