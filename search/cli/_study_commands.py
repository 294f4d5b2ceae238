"""The commands of a study: run it, work on it, look at it (status, best, report, dashboard), ensemble or soup its
best."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Optional

import click
import typer

from search.cli._app import (
    ImagesOpt,
    OutOpt,
    OverwriteOpt,
    PlainOpt,
    StorageOpt,
    StudyOpt,
    TensorboardOpt,
    TimeoutOpt,
    Tta,
    TtaOpt,
    Vote,
    VoteOpt,
    within,
)
from search.cli._printing import activate_hint, command_name, params_text, print_predicted, status_lines
from search.errors import SearchError
from training.errors import TrainingError, one_line


def run(study: str = StudyOpt, n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1,
        help="finished trials the study must hold in total (default: the study file's n_trials)"),
        storage: Optional[str] = StorageOpt,
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help="local worker processes"),
        trials_per_gpu: str = typer.Option("1", "--trials-per-gpu", help="workers sharing each GPU, or auto: "
                                           "measured (more while one more adds >= 10% images/s)"),
        timeout: Optional[float] = TimeoutOpt,
        no_wandb: bool = typer.Option(False, "--no-wandb", help="do not mirror trials to W&B"),
        output: Path = typer.Option(Path("runs"), "--output", help="trial outputs (checkpoints, metrics)"),
        plain: bool = PlainOpt,
        warm_start: Optional[str] = typer.Option(None, "--warm-start", help="a study in the same store (name or "
                                                 "study file): its best completed trials, fitted to this study's "
                                                 "space, run first"),
        top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="with --warm-start: how many of its best "
                                            "completed trials (default 5)"),
        tensorboard: Optional[Path] = TensorboardOpt) -> None:
    """Create or resume a study and run it until it holds N finished trials."""
    from search.store import resolve_url
    from search.study import load_study
    from search.workers import WorkerStopped, run_study

    if trials_per_gpu != "auto" and not (trials_per_gpu.isdigit() and int(trials_per_gpu) >= 1):
        raise click.UsageError(f"--trials-per-gpu {trials_per_gpu!r}: a whole number >= 1, or auto")
    if top_k is not None and warm_start is None:
        raise click.UsageError(f"--top-k {top_k} picks the trials of a warm start; add --warm-start STUDY or drop "
                               "--top-k")
    try:
        share = trials_per_gpu if trials_per_gpu == "auto" else int(trials_per_gpu)
        s = run_study(load_study(study), resolve_url(storage), n_trials, workers, output, not no_wandb, timeout,
                      share, plain=plain, warm_start=warm_start, top_k=top_k, tensorboard=tensorboard)
    except WorkerStopped as e:
        print(f"stopped by {e}; the running trial was marked and re-queued: rerun the command to resume",
              file=sys.stderr)
        raise typer.Exit(143) from None
    if s.get("nothing_to_run"):
        print(s["nothing_to_run"])
    else:
        best = (f"best macro_f1 {s['best_value']:.4f} (trial {s['best_trial']})" if "best_value" in s
                else "no completed trial")
        print(f"done: {s['complete']} complete, {s['pruned']} pruned, {s['failed']} failed in {s['seconds']}s; "
              f"{best}")
    if s.get("stopped"):
        print(s["stopped"])
    cmd = command_name()
    print(f"next: {cmd} best --study {s['study']} --export best.yaml   |   {cmd} report --study {s['study']} "
          f"--out report   |   {cmd} dashboard{activate_hint(cmd)}")


def worker(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
           n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1, help="default: the study's budget"),
           worker_index: Optional[int] = typer.Option(None, "--worker-index", hidden=True),
           timeout: Optional[float] = TimeoutOpt,
           no_wandb: bool = typer.Option(False, "--no-wandb"),
           output: Path = typer.Option(Path("runs"), "--output"), plain: bool = PlainOpt,
           tensorboard: Optional[Path] = TensorboardOpt,
           progress_to_store: bool = typer.Option(False, "--progress-to-store", hidden=True,
                                                  help="for `search run`'s board: epochs to the store")) -> None:
    """One worker: pull trials from the store until the study's budget is met (one per GPU, any machine)."""
    from search.observe.progress import worker_display
    from search.store import resolve_url
    from search.study import load_study, study_warnings
    from search.workers import WorkerStopped, work

    sc = load_study(study)
    if worker_index is None:  # a worker of `search run` leaves these to its launcher
        for line in study_warnings(sc, n_trials or sc.spec.n_trials):
            print(f"warning: {line}", flush=True)
    try:
        r = work(sc, resolve_url(storage), n_trials=n_trials, output_root=output,
                 use_wandb=not no_wandb, timeout=timeout, worker_index=worker_index,
                 display=worker_display(plain, to_store=progress_to_store), tensorboard=tensorboard)
    except WorkerStopped as e:
        print(f"worker stopped by {e}; its running trial was marked and re-queued", file=sys.stderr)
        raise typer.Exit(143) from None
    print(f"worker done: ran {r.trials_run} trial(s); study holds {r.finished}/{r.budget} finished")


def _open(study: str, storage: Optional[str]):
    import optuna

    from search.store import open_storage, resolve_url
    from search.study import study_name

    name = study
    try:
        name = study_name(study)  # a study file or a shipped name
    except TrainingError:
        pass  # a study that lives only in the store
    url = resolve_url(storage)
    st = open_storage(url, must_exist=True)
    try:
        return optuna.load_study(study_name=name, storage=st)
    except KeyError:
        from search.errors import StorageError
        from search.store import redact
        from training.registry import did_you_mean

        names = sorted(s.study_name for s in optuna.get_all_study_summaries(st))
        raise StorageError(f"no study '{name}' in {redact(url)}{did_you_mean(name, names)}; "
                           f"it holds: {', '.join(names) or 'no studies'}") from None


def best_run_folder(study: str, storage: Optional[str]) -> Path:
    """The run folder of a study's best completed trial (a cross-validated trial's first fold, said so)."""
    from search.results import best_trial
    from training.run_folder import model_folders

    trial = best_trial(_open(study, storage))
    folder = trial.user_attrs.get("output_dir")
    if not folder or not Path(folder).is_dir():
        raise SearchError(f"the best trial ({trial.number}) of study '{study}' has no run folder on this machine "
                          f"({folder or 'none recorded'}); run the command where the runs are, or pass --run DIR")
    runs = model_folders(Path(folder))
    if len(runs) > 1:
        print(f"trial {trial.number} is cross-validated: explaining its {runs[0].name} (pass --run for another)")
    return runs[0]


def status(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Trials by state, the budget, the best trial, and a table of the trials."""
    from search.results import study_status

    s = study_status(_open(study, storage))
    if as_json:
        print(json.dumps(s))
        return
    for line in status_lines(s):
        print(line)


def best(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
         export: Optional[Path] = typer.Option(None, "--export",
                                               help="write the winner's training config here")) -> None:
    """Show the best trial; --export writes a config that `search train --config` retrains."""
    from search.results import best_trial, export_best

    st = _open(study, storage)
    t = export_best(st, export) if export else best_trial(st)
    print(f"best: trial {t.number} macro_f1 {t.value:.4f}: {params_text(t.params)}")
    if export:
        cmd = command_name()
        print(f"wrote {export}; retrain with: {cmd} train --config {export}{activate_hint(cmd)}")


def report(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
           out: Path = typer.Option(..., "--out", help="folder for index.html and its PNGs (made if missing)")) -> None:
    """One offline HTML page of a study: history, importances, slices, pruning, cost, the best trial's classes."""
    from search.observe.report import write_report

    r = write_report(_open(study, storage), out)
    left = f"; left out (the page says why): {', '.join(s.title for s in r.left_out)}" if r.left_out else ""
    print(f"wrote {r.page} with {len(r.images)} figures{left}")


def ensemble(study: str = StudyOpt, top_k: int = typer.Option(..., "--top-k", help="the K best completed trials"),
             images: Path = ImagesOpt, out: Path = OutOpt, vote: Vote = VoteOpt, tta: Optional[Tta] = TtaOpt,
             storage: Optional[str] = StorageOpt) -> None:
    """Predict images with the best checkpoints of a study's top-k completed trials, voted."""
    from search.results import ensemble as ensemble_images

    trials, r = ensemble_images(_open(study, storage), top_k, images, out, how=vote.value,
                                tta=tta.value if tta else None)
    print_predicted(len(r.inputs), f"trials {', '.join(map(str, trials))}",
               {"vote": vote.value, "tta": tta.value if tta else None}, out)


def soup(study: str = StudyOpt, top_k: int = typer.Option(..., "--top-k", min=1, help="the K best completed trials"),
         output: Optional[Path] = typer.Option(None, "--out", help="the soup's run folder (default: a new "
                                               "runs/soup/STUDY-N)"),
         greedy: bool = typer.Option(True, "--greedy/--uniform", help="greedy: each trial kept only if the soup's "
                                     "val macro-F1 does not drop; uniform: all of them"),
         storage: Optional[str] = StorageOpt, overwrite: bool = OverwriteOpt) -> None:
    """Average the weights of a study's top-k trials into one model (a model soup), beside the best single trial,
    the other soup and their ensemble."""
    from search.results import soup as cook_soup, top_run_folders
    from training.run_folder import output_folder

    s = _open(study, storage)
    if output is not None and any(output.resolve() == f.resolve() for _, f in top_run_folders(s, top_k)):
        raise SearchError(f"--out {output} is the run folder of one of the trials to average; give a new folder")
    with output_folder(output, Path("runs") / "soup", s.study_name, overwrite, option="--out") as out:
        r = cook_soup(s, top_k, out, greedy=greedy)
    width = max(len(row["what"]) for row in r.rows)
    print(f"{'':{width}}  val macro-F1  forward passes per image")
    for row in r.rows:
        print(f"{row['what']:{width}}  {row['macro_f1']:12.4f}  {row['passes']}")
    print(f"wrote the {'greedy' if greedy else 'uniform'} soup to {r.out}, a run folder; "
          f"next: {command_name()} predict --run {r.out} --images DIR --out predictions.csv")


def dashboard(storage: Optional[str] = StorageOpt, host: str = typer.Option("127.0.0.1", "--host"),
              port: int = typer.Option(8080, "--port", callback=within(1, 65535, " (a TCP port)")),
              artifacts: Optional[str] = typer.Option(None, "--artifacts", help="artifact store: a folder or "
                                                      "s3://BUCKET (default: the one the studies recorded, else "
                                                      "./runs/artifacts)")) -> None:
    """optuna-dashboard on our store and its artifacts (binds 127.0.0.1 unless told otherwise)."""
    from optuna_dashboard import run_server

    from search.observe import open_store, served_location
    from search.store import open_storage, redact, resolve_url

    url = resolve_url(storage)
    st = open_storage(url, must_exist=True)  # before the banner: a bad URL must not announce a server that never starts
    location, others = served_location(st, artifacts)
    store = open_store(location) if location else None
    _check_can_serve(host, port)  # before the banner too: a busy port must not announce a server
    print(f"optuna-dashboard for {redact(url)} at http://{host}:{port}/", flush=True)
    print(f"artifacts: {location or 'none found (pass --artifacts PATH)'}"
          + (f"; other studies keep theirs in {', '.join(others)} (pass --artifacts to serve one)" if others else ""),
          flush=True)
    try:
        run_server(st, host=host, port=port, artifact_store=store)
    except OSError as e:  # taken between the check and the server's own bind
        raise SearchError(f"cannot serve on {host}:{port} ({one_line(e, with_type=False)}); pick another --port")


def _check_can_serve(host: str, port: int) -> None:
    """One line for a host that does not resolve or a port that is taken, by binding it for a moment as the
    dashboard's server will (an IPv4 socket)."""
    try:
        address = socket.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)[0][4]
    except socket.gaierror as e:
        raise SearchError(f"--host {host}: not an IPv4 address of this machine ({e.strerror}); use 127.0.0.1 "
                          "(this machine only) or 0.0.0.0 (every interface)") from None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as e:
        raise SearchError(f"cannot serve on {host}:{port} ({e.strerror or one_line(e, with_type=False)}); pick "
                          "another --port, or stop what listens there") from None
