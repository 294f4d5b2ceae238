"""Our code uses Optuna's public API only: pyproject admits any Optuna 5, and a private attribute can change in
any release. A grep over search/ and training/ (benchmarks/ included) for ``._name`` on Optuna objects."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# names that hold Optuna objects in our code (studies, trials, frozen trials, storages, samplers, pruners), and
# any attribute path starting at the optuna module
OPTUNA_OBJECT = r"(?:study|trial|frozen|storage|sampler|pruner|st|t|ft|optuna(?:\.\w+)*)"
# (our own packages' private modules, such as search.study._pruners, are not Optuna's)
PRIVATE = re.compile(rf"(?<!search\.)\b{OPTUNA_OBJECT}\._[a-z]\w*")


def _sources() -> list[Path]:
    return sorted(p for d in ("search", "training", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def test_no_private_optuna_attribute_is_used():
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in _sources()
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if PRIVATE.search(line.split("#", 1)[0])]
    assert not hits, "private Optuna API:\n" + "\n".join(hits)


def test_the_check_finds_what_it_looks_for():
    for line in ("study._pop_waiting_trial_id()", "storage.record_heartbeat(nxt[0]._trial_id)" + "",
                 "trial._trial_id", "optuna.storages._rdb.models", "study._thread_local.cached_all_trials = None"):
        assert PRIVATE.search(line.replace("nxt[0]", "t")), line
    for line in ("self._heartbeat = None", "torch._C._host_emptyCache()", "study.ask()", "lease._requeue()",
                 "from search.study._pruners import Median"):
        assert not PRIVATE.search(line), line
