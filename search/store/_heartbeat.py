"""Record a RUNNING trial's heartbeat from a background thread, as Study.optimize does."""

from __future__ import annotations

import logging
import threading

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, storage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{trial_id}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # database away for a moment: try again next beat
                log.warning("heartbeat for trial id %d failed: %s", self.trial_id, type(e).__name__)
            self._stop.wait(self.interval)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
