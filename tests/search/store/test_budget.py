"""The budget mechanism under concurrency, on SQLite and Postgres: top-ups never overshoot, a WAITING trial is
claimed by exactly one worker."""

from __future__ import annotations

import multiprocessing as mp

import optuna

from search.store import open_storage, study_lock, take_waiting, top_up


def _top_up_and_claim_all(url: str, name: str, budget: int, q) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    got = []
    while True:
        with study_lock(storage, url, name):
            top_up(study, budget)
            t = take_waiting(study)
        if t is None:
            break
        got.append(t.number)
        study.tell(t, 0.5)
    q.put(got)


def test_concurrent_workers_claim_each_token_once_and_never_overshoot(storage_url):
    name = "race"
    optuna.create_study(study_name=name, storage=open_storage(storage_url), direction="maximize")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_top_up_and_claim_all, args=(storage_url, name, 24, q)) for _ in range(4)]
    for p in procs:
        p.start()
    claimed = [n for _ in procs for n in q.get(timeout=240)]
    for p in procs:
        p.join(60)
    trials = optuna.load_study(study_name=name, storage=open_storage(storage_url)).get_trials()
    assert len(trials) == 24, "top-ups overshot the budget"
    assert sorted(claimed) == list(range(24)), "a token was claimed twice or never"
