"""The search-efficiency suite's generated tasks (benchmarks/search_tasks.py) load through the training core as
what they claim to be: 18 imbalanced person-grouped classes with a rare one, and a 4-label multi-label set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from search_tasks import MaskTask, MultiLabelTask  # noqa: E402
from training.config import parse_config  # noqa: E402
from training.data.sources import load_samples  # noqa: E402


def _samples(task, cache: Path):
    return load_samples(parse_config({"data": task.build(cache)}).data)


def test_the_mask_task_has_18_imbalanced_classes_grouped_by_person_with_a_rare_one(tmp_path):
    s = _samples(MaskTask(people=60), tmp_path)
    assert len(s.classes) == 18 and len(s) == 60 * 7
    counts = np.bincount(s.targets, minlength=18)
    assert counts.min() < counts.max() / 10, counts  # worn masks x young/middle vs the old age group
    assert len(set(s.groups.tolist())) == 60
    people = {g: {int(t) % 6 for t, gg in zip(s.targets, s.groups) if gg == g} for g in set(s.groups.tolist())}
    assert all(len(v) == 1 for v in people.values()), "a person has one gender and one age"


def test_the_multilabel_task_has_four_labels_one_to_three_on(tmp_path):
    s = _samples(MultiLabelTask(n=60), tmp_path)
    assert s.multilabel and s.classes == ["a", "b", "c", "d"]
    on = s.targets.sum(axis=1)
    assert on.min() >= 1 and on.max() <= 3
