"""``search run --trials-per-gpu auto``: how many trials share each GPU, measured.

K grows while one more trial adds at least 10% to the aggregate training rate, and never beyond what memory
allows. The rate of K is measured as the workers would run: K processes at once, each capped at 1/K of the GPU's
memory, each stepping the study's default config (model, image size, batch, precision, memory format) on
synthetic data for the same wall-clock window; their images/s add up. The memory bound is the free memory over
one trial's peak (plus its CUDA context). The answer is kept in the study per (GPU model, config), like the batch
ceiling, so a resumed study or a second machine with the same GPU measures nothing.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import queue
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna

from search.errors import SearchError
from search.workers._per_gpu import gpu_key, measured_once
from training.errors import one_line

__all__ = ["Choice", "choose_k", "resolve_trials_per_gpu", "measured_choice", "measure_aggregate", "MIN_GAIN",
           "MAX_K"]

MIN_GAIN = 0.10    # one more trial must add this share of the aggregate rate
MAX_K = 8
CONTEXT_BYTES = 600 * 2**20  # a CUDA context and cuDNN workspace beside the allocator's peak, per process
WINDOW_SECONDS = 6.0


@dataclass
class Choice:
    k: int
    why: str
    rates: dict[int, float] = field(default_factory=dict)  # K -> aggregate images/s

    def line(self) -> str:
        shown = ", ".join(f"K={k}: {r:,.0f}" for k, r in sorted(self.rates.items()))
        return f"trials per GPU: auto -> {self.k} ({self.why}{'; images/s ' + shown if shown else ''})"


def choose_k(measure: Callable[[int], float], k_max: int, min_gain: float = MIN_GAIN) -> Choice:
    """The largest K reached by steps that each add >= ``min_gain`` of the rate before them, up to ``k_max``."""
    rates = {1: measure(1)}
    k = 1
    while k < k_max:
        rates[k + 1] = measure(k + 1)
        gain = rates[k + 1] / rates[k] - 1
        if gain < min_gain:
            return Choice(k, f"K={k + 1} adds {gain:+.1%}, under {min_gain:.0%}", rates)
        k += 1
    return Choice(k, f"memory allows {k_max}" if k_max < MAX_K else f"at most {MAX_K}", rates)


def _child(cfg_data: dict, k: int, seconds: float, barrier, out) -> None:
    """One of K measuring processes (spawned: a fresh CUDA context each, as a worker has)."""
    import torch

    from training.batch_probe import probe_max_batch
    from training.config import parse_config
    from training.runtime import resolve_runtime
    from training.step_rate import prepare_steps

    try:
        cfg = parse_config(cfg_data)
        rt = resolve_runtime(cfg.train)
        cuda = rt.device.type == "cuda"
        if cuda and k > 1:
            torch.cuda.set_per_process_memory_fraction(1.0 / k)
        batch = cfg.train.batch_size
        if batch == "auto":  # each of K probes under its 1/K cap, as each worker's trial does
            batch = probe_max_batch(cfg, rt, num_outputs=1000)
            if not batch:
                raise RuntimeError(f"no batch of {cfg.model.name} at {cfg.data.hw} fits in 1/{k} of the GPU")
        rate = prepare_steps(cfg, rt, int(batch), num_outputs=1000)
        if cuda:  # the peak of steady steps, not of the probe's out-of-memory attempts
            torch.cuda.reset_peak_memory_stats(rt.device)
            rate.run(2)
        barrier.wait(timeout=600)
        images_per_second = rate.run_for(seconds)
        peak = torch.cuda.max_memory_reserved(rt.device) if cuda else 0
        free, total = torch.cuda.mem_get_info(rt.device) if cuda else (0, 0)
        out.put({"rate": images_per_second, "peak": peak, "free": free + peak, "total": total, "batch": batch,
                 "auto_batch": cfg.train.batch_size == "auto"})
    except Exception as e:  # the parent reports it; a broken barrier releases the others
        barrier.abort()
        out.put({"error": one_line(e, with_last=True)})


def measure_aggregate(cfg_data: dict, k: int, seconds: float = WINDOW_SECONDS) -> dict:
    """K processes stepping ``cfg_data`` at once: their summed images/s, and one trial's memory peak."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(cfg_data, k, seconds, barrier, out), daemon=True) for _ in range(k)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=900) for _ in procs]
    except queue.Empty:  # a child was killed (the OOM killer, a driver fault): it never answers
        raise SearchError(f"measuring {k} trials per GPU: a measuring process died without an answer; give "
                          "--trials-per-gpu a number instead of auto") from None
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise SearchError(f"measuring {k} trials per GPU failed: {errors[0]}; give --trials-per-gpu a number "
                          "instead of auto")
    return {"rate": sum(r["rate"] for r in results), "peak": max(r["peak"] for r in results),
            "free": max(r["free"] for r in results), "batch": results[0]["batch"],
            "auto_batch": results[0]["auto_batch"]}


def _memory_bound(first: dict) -> int:
    """How many of K=1's trial fit in the free memory. With ``batch_size: auto`` K=1 takes the largest batch,
    which fills the GPU by design: there each of K probes its batch under its 1/K cap, so memory never bounds K
    (a smaller batch does; the rate decides)."""
    if not first["peak"] or first.get("auto_batch"):
        return MAX_K
    return max(1, min(MAX_K, math.floor(0.9 * first["free"] / (first["peak"] + CONTEXT_BYTES))))


def resolve_trials_per_gpu(study: optuna.Study, cfg_data: dict, gpu_name: str,
                           measure: Callable[[dict, int], dict] | None = None) -> Choice:
    """The study's K for this GPU model and config, measured on first use (``measure``: for tests)."""
    from training.config import parse_config
    from training.runtime import resolve_runtime

    cfg = parse_config(cfg_data)
    rt = resolve_runtime(cfg.train)
    key = gpu_key("trials_per_gpu", gpu_name, cfg, cfg.train.batch_size, rt.precision, rt.channels_last,
                  cfg.train.compile)

    def measure_now() -> dict:
        choice = measured_choice(cfg_data, measure)
        return {"k": choice.k, "why": choice.why, "rates": {str(k): r for k, r in choice.rates.items()}}

    kept, fresh = measured_once(study, key, measure_now, lock=f"gpu-{gpu_name}")
    return Choice(int(kept["k"]), kept["why"] if fresh else f"measured before: {kept['why']}",
                  {int(k): float(r) for k, r in kept["rates"].items()})


def measured_choice(cfg_data: dict, measure: Callable[[dict, int], dict] | None = None) -> Choice:
    """:func:`choose_k` over real measurements (K = 1 first: its memory peak bounds K)."""
    measure = measure or measure_aggregate
    first = measure(cfg_data, 1)
    if first["rate"] <= 0:
        raise SearchError("measuring 1 trial per GPU gave no images/s; give --trials-per-gpu a number instead of auto")
    return choose_k(lambda k: first["rate"] if k == 1 else measure(cfg_data, k)["rate"], _memory_bound(first))
