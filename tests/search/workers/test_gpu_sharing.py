"""Workers sharing a machine's GPUs: which GPU each local worker gets, and the batch ceiling, probed once per
study and machine. Workers that need the ceiling at the same moment (K trials sharing a GPU) probe one at a time,
and the later ones reuse the first answer instead of probing again while the GPU's memory is shared. The probe
itself needs CUDA; what is checked here is who probes, and when."""

from __future__ import annotations

import tempfile
import threading
import time

import optuna
import pytest

from search.store import open_storage
from search.workers import gpu_of_worker, measured_once


def probed_once(study, key, probe, lock):
    """The batch ceiling's use of measured_once: a zero (nothing fits) is not kept."""
    return measured_once(study, key, probe, lock, keep=lambda value: value > 0)[0]


def test_concurrent_workers_probe_once_and_share_the_answer(storage_url):
    """Four workers (threads here, each with its own store connection and lock file handle: flock excludes
    them as it excludes processes) need the ceiling at the same moment."""
    optuna.create_study(study_name="s", storage=open_storage(storage_url))
    n, probes, answers = 4, [], []
    start = threading.Barrier(n)

    def worker(i: int) -> None:
        storage = open_storage(storage_url)
        study = optuna.load_study(study_name="s", storage=storage)

        def probe() -> int:
            probes.append(i)
            time.sleep(0.5)  # a real probe takes tens of seconds on a GPU
            return 512

        start.wait()
        answers.append(probed_once(study, "batch_ceiling:GPU:model:224:x4", probe, lock=f"gpu-test-{storage_url}"))
        storage.engine.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == [512] * n
    assert len(probes) == 1, f"probed by workers {probes}"


def test_a_zero_answer_is_not_kept(tmp_path):
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    calls, lock = [], f"gpu-test-{tmp_path}"
    assert probed_once(study, "k", lambda: calls.append(1) or 0, lock) == 0  # does not fit: this trial fails
    assert probed_once(study, "k", lambda: calls.append(1) or 256, lock) == 256  # probed again, then kept
    assert probed_once(study, "k", lambda: calls.append(1) or 1024, lock) == 256
    assert len(calls) == 2


def test_without_a_lock_file_it_still_probes(tmp_path, monkeypatch):
    """A read-only or full temp folder costs the serialization, not the trial."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    assert probed_once(study, "k", lambda: 128, f"gpu-test-{tmp_path}") == 128
    assert study.user_attrs["k"] == 128


@pytest.mark.parametrize("visible, gpus, per_gpu, expect", [
    (None, 2, 1, ["0", "1", "0", "1"]),
    (None, 2, 2, ["0", "0", "1", "1"]),
    ("2,3", 2, 1, ["2", "3", "2", "3"]),                  # a user's own selection is kept, not renumbered
    ("GPU-aa11, GPU-bb22", 2, 2, ["GPU-aa11", "GPU-aa11", "GPU-bb22", "GPU-bb22"]),  # UUIDs too
    (None, 1, 2, ["0", "0", "0", "0"]),
    # CUDA shows a process only its first MIG instance (count 1); each worker process gets one of its own
    ("MIG-a1,MIG-b2,MIG-c3", 1, 1, ["MIG-a1", "MIG-b2", "MIG-c3", "MIG-a1"]),
    ("MIG-a1,MIG-b2", 1, 2, ["MIG-a1", "MIG-a1", "MIG-b2", "MIG-b2"]),
])
def test_each_local_worker_gets_one_of_the_gpus_this_process_sees(visible, gpus, per_gpu, expect):
    assert [gpu_of_worker(i, per_gpu, gpus, visible) for i in range(4)] == expect


def test_workers_per_host_count_every_listed_mig_instance():
    """`search run` with no --workers starts trials_per_gpu workers per GPU; under MIG that is per listed
    instance, although CUDA in this process enumerates only one."""
    from search.workers import local_gpus

    assert local_gpus("MIG-a1,MIG-b2,MIG-c3", 1) == ["MIG-a1", "MIG-b2", "MIG-c3"]
    assert local_gpus("MIG-a1,MIG-b2", 0) == []  # no CUDA: no GPU workers at all
    assert local_gpus("0,1,2", 2) == ["0", "1"]  # plain GPUs: what CUDA enumerates
    assert local_gpus("", 2) == ["0", "1"]
