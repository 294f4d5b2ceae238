"""Mirror each trial to one W&B run: config = params, per-epoch metrics, final state. Never fails a trial."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .storage import redact

__all__ = ["TrialMirror", "wandb_mode"]

log = logging.getLogger(__name__)


def wandb_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


@contextlib.contextmanager
def _redacted_argv():
    saved = sys.argv
    sys.argv = [redact(a) for a in saved]
    try:
        yield
    finally:
        sys.argv = saved


class TrialMirror:
    """A W&B run per trial; every call swallows W&B errors (logged once) so training goes on."""

    def __init__(self, enabled: bool, *, project: str, group: str, name: str, config: dict[str, Any],
                 mode: str, directory: Path, entity: str | None = None) -> None:
        self.run = None
        if not enabled:
            return
        try:
            import wandb

            directory.mkdir(parents=True, exist_ok=True)
            with _redacted_argv():  # W&B records the command line: --storage may carry a password
                self.run = wandb.init(project=project, group=group, name=name, entity=entity, config=config,
                                      mode=wandb_mode(mode), dir=str(directory), reinit="create_new",
                                      settings=wandb.Settings(silent=True, console="off"))
        except Exception as e:  # no network, bad key, disk full: the trial still runs
            log.warning("W&B disabled for %s: %s", name, redact(str(e)).splitlines()[0] if str(e) else type(e).__name__)
            self.run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(metrics, step=step)
        except Exception as e:
            log.warning("W&B log failed: %s", e)

    def finish(self, state: str, summary: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update({**summary, "state": state})
            self.run.finish(exit_code=0 if state in ("COMPLETE", "PRUNED") else 1)
        except Exception as e:
            log.warning("W&B finish failed: %s", e)
        self.run = None
