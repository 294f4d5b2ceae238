"""`--trials-per-gpu auto`: K grows while one more trial adds >= 10% images/s, within the memory bound; the
answer is kept in the study per GPU model and config; the measurement itself runs K real processes at once."""

from __future__ import annotations

import optuna
import pytest

from incli import run_main
from search.workers import MAX_K, choose_k, measure_aggregate, resolve_trials_per_gpu
from studygen import write_study

GiB = 2**30


def _rates(*values: float):
    calls = []

    def measure(k: int) -> float:
        calls.append(k)
        return values[k - 1]

    return measure, calls


@pytest.mark.parametrize("values, k_max, want, why", [
    ((1000, 1900, 2500, 2600, 2700), 8, 3, "K=4 adds +4.0%, under 10%"),
    ((1000, 1050), 8, 1, "K=2 adds +5.0%, under 10%"),
    ((1000, 1900, 2800), 2, 2, "memory allows 2"),
    (tuple(1000 * 1.5 ** i for i in range(MAX_K)), MAX_K, MAX_K, f"at most {MAX_K}"),
])
def test_k_grows_while_one_more_trial_adds_ten_percent(values, k_max, want, why):
    measure, calls = _rates(*values)
    choice = choose_k(measure, k_max)
    assert (choice.k, choice.why) == (want, why)
    assert calls == list(range(1, min(want + 1, k_max) + 1)), "measures up to the first K that does not pay"
    assert f"trials per GPU: auto -> {want} ({why}; images/s K=1: 1,000" in choice.line()


def _cfg(batch=16) -> dict:
    return {"data": {"source": "digits", "limit": 60, "image_size": 8}, "model": {"name": "test_resnet"},
            "train": {"epochs": 1, "batch_size": batch, "device": "cpu", "num_threads": 1}}


def test_the_choice_is_measured_once_per_gpu_model_and_config():
    study = optuna.create_study(direction="maximize")
    runs = []

    def measure(cfg: dict, k: int) -> dict:  # one trial's peak 10 GiB of 40 GiB free: memory allows 3
        runs.append((cfg["train"]["batch_size"], k))
        return {"rate": 1000.0 * k ** 0.8, "peak": 10 * GiB, "free": 40 * GiB, "batch": cfg["train"]["batch_size"]}

    first = resolve_trials_per_gpu(study, _cfg(), "NVIDIA H200", measure)
    assert (first.k, first.why) == (3, "memory allows 3") and runs == [(16, 1), (16, 2), (16, 3)]
    again = resolve_trials_per_gpu(study, _cfg(), "NVIDIA H200", measure)
    assert again.k == 3 and again.why.startswith("measured before") and len(runs) == 3
    resolve_trials_per_gpu(study, _cfg(), "NVIDIA A100", measure)  # another GPU model measures afresh
    resolve_trials_per_gpu(study, _cfg(batch=32), "NVIDIA H200", measure)  # so does another batch
    assert len(runs) == 9


@pytest.mark.slow  # end to end, with processes or several trials: not in `make test-fast`
def test_the_measurement_runs_k_processes_at_once_and_adds_their_rates():
    one = measure_aggregate(_cfg(), 1, seconds=0.5)
    two = measure_aggregate(_cfg(), 2, seconds=0.5)
    assert one["rate"] > 0 and two["rate"] > 0 and one["batch"] == two["batch"] == 16
    assert one["peak"] == 0  # no GPU memory on CPU: the memory bound does not apply


def test_auto_on_a_machine_without_a_gpu_is_one_and_says_so(tmp_path, capfd, monkeypatch):
    path = write_study(tmp_path, "share", epochs=1, n_trials=1, limit=120)
    r = run_main(["run", "--study", str(path), "--storage", f"sqlite:///{tmp_path / 's.db'}", "--no-wandb",
                  "--trials-per-gpu", "auto", "--output", str(tmp_path / "runs"), "--plain"],
                 cwd=tmp_path, capfd=capfd, monkeypatch=monkeypatch)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "trials per GPU: auto -> 1 (no GPU: the workers run on CPU)" in r.stdout


def test_with_an_auto_batch_memory_does_not_bound_k():
    """`batch_size: auto` at K=1 takes the largest batch, which fills the GPU: each of K probes its own batch
    under its 1/K cap, so only the rate decides."""
    study = optuna.create_study(direction="maximize")
    rates = {1: 1000.0, 2: 1800.0, 3: 1900.0}

    def measure(cfg: dict, k: int) -> dict:
        return {"rate": rates[k], "peak": 30 * GiB, "free": 40 * GiB, "batch": 512 // k, "auto_batch": True}

    choice = resolve_trials_per_gpu(study, _cfg(batch="auto"), "NVIDIA H200", measure)
    assert (choice.k, choice.why) == (2, "K=3 adds +5.6%, under 10%")  # 30 of 40 GiB would have bounded it at 1
