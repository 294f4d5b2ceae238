"""The ``search`` command: a thin map from sub-commands to plain functions."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Optional

import click
import typer

from training.errors import TrainingError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Hyperparameter search for image classification (Optuna + timm).")
_state = {"debug": False}

StudyOpt = typer.Option(..., "--study", help="study name (studies/NAME.yaml) or path to a study file")
StorageOpt = typer.Option(None, "--storage", help="RDB URL; default $SEARCH_STORAGE, else sqlite:///studies.db")
PlainOpt = typer.Option(False, "--plain", help="plain progress lines even on a terminal (elsewhere they always are)")


def _positive_seconds(value: Optional[float]) -> Optional[float]:
    if value is not None and not value > 0:  # also NaN
        raise typer.BadParameter(f"{value:g} seconds: give a time above 0 (no trial starts after it), or leave "
                                 "--timeout out for no limit")
    return value


def _within(low: int, high: int | None = None, what: str = ""):
    """A range check that names the value and the range (Click's own message names neither clearly)."""
    def check(value: Optional[int]) -> Optional[int]:
        if value is not None and (value < low or high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise typer.BadParameter(f"{value}: give a whole number {span}{what}")
        return value
    return check


TimeoutOpt = typer.Option(None, "--timeout", callback=_positive_seconds, help="start no trial after SEC seconds")
OverwriteOpt = typer.Option(False, "--overwrite", help="let --output replace the finished run it holds")


def command_name() -> str:
    """How to type this command again: ``search`` where that is on PATH and is this program (an activated venv,
    a pip install), else the path it was started by (``.venv/bin/search`` after `make demo`)."""
    me = Path(sys.argv[0])
    if me.name != "search":  # python -m search
        return f"{Path(sys.executable)} -m search"
    on_path = shutil.which("search")
    if on_path and Path(on_path).resolve() == me.resolve():
        return "search"
    return str(me)


def activate_hint(cmd: str) -> str:
    """For a venv that is not active: how to type plain ``search`` from now on."""
    activate = Path(cmd).parent / "activate"
    return f"   (or `source {activate}` once, then type `search ...`)" if cmd != "search" and activate.is_file() else ""


def params_text(params: dict) -> str:
    """``key=value`` pairs, numbers to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "(defaults)"


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    _state["debug"] = debug


@app.command()
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
                                            "completed trials (default 5)")) -> None:
    """Create or resume a study and run it until it holds N finished trials."""
    from .launcher import run_study
    from .objective import WorkerStopped
    from .storage import resolve_url
    from .study_config import load_study

    if trials_per_gpu != "auto" and not (trials_per_gpu.isdigit() and int(trials_per_gpu) >= 1):
        raise click.UsageError(f"--trials-per-gpu {trials_per_gpu!r}: a whole number >= 1, or auto")
    if top_k is not None and warm_start is None:
        raise click.UsageError(f"--top-k {top_k} picks the trials of a warm start; add --warm-start STUDY or drop "
                               "--top-k")
    try:
        share = trials_per_gpu if trials_per_gpu == "auto" else int(trials_per_gpu)
        s = run_study(load_study(study), resolve_url(storage), n_trials, workers, output, not no_wandb, timeout,
                      share, plain=plain, warm_start=warm_start, top_k=top_k)
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


@app.command()
def worker(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
           n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1, help="default: the study's budget"),
           worker_index: Optional[int] = typer.Option(None, "--worker-index", hidden=True),
           timeout: Optional[float] = TimeoutOpt,
           no_wandb: bool = typer.Option(False, "--no-wandb"),
           output: Path = typer.Option(Path("runs"), "--output"), plain: bool = PlainOpt,
           progress_to_store: bool = typer.Option(False, "--progress-to-store", hidden=True,
                                                  help="for `search run`'s board: epochs to the store")) -> None:
    """One worker: pull trials from the store until the study's budget is met (one per GPU, any machine)."""
    from .objective import WorkerStopped
    from .progress import worker_display
    from .storage import resolve_url
    from .study_config import load_study, study_warnings
    from .worker import work

    sc = load_study(study)
    if worker_index is None:  # a worker of `search run` leaves these to its launcher
        for line in study_warnings(sc, n_trials or sc.spec.n_trials):
            print(f"warning: {line}", flush=True)
    try:
        r = work(sc, resolve_url(storage), n_trials=n_trials, output_root=output,
                 use_wandb=not no_wandb, timeout=timeout, worker_index=worker_index,
                 display=worker_display(plain, to_store=progress_to_store))
    except WorkerStopped as e:
        print(f"worker stopped by {e}; its running trial was marked and re-queued", file=sys.stderr)
        raise typer.Exit(143) from None
    print(f"worker done: ran {r.trials_run} trial(s); study holds {r.finished}/{r.budget} finished")


@app.command()
def train(config: Path = typer.Option(..., "--config", help="training config or study file (defaults)"),
          output: Optional[Path] = typer.Option(None, "--output", help="the run's folder (default: a new "
                                                "runs/train/CONFIG-N; runs/full/... with --full-data, "
                                                "runs/seeds/... with --seeds)"),
          overwrite: bool = OverwriteOpt,
          full_data: bool = typer.Option(False, "--full-data", help="train on every image (train + val) for "
                                         "train.full_data_epochs epochs (an export's best epoch); no validation"),
          seeds: Optional[str] = typer.Option(None, "--seeds", help="comma-separated seeds: one run each, under "
                                              "OUTPUT/seed-N, then each macro-F1 and the mean +- std"),
          threads: Optional[int] = typer.Option(None, "--threads", callback=_within(1, what=" (CPU threads)"),
                                                help="CPU threads (train.num_threads); an export's header names "
                                                "its trial's, for a bit-exact CPU replay"),
          as_json: bool = typer.Option(False, "--json", help="print the result as one JSON line last"),
          plain: bool = PlainOpt) -> None:
    """Train one configuration (or one per seed)."""
    from training import fit
    from training.run_folder import output_folder

    from .progress import epoch_display
    from .runs import parse_seeds, print_runs, progress_printer, read_run_config

    if as_json:
        json_keeps_stdout()
    cfg = read_run_config(config)
    if threads is not None:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_threads": threads})})
    seed_list = parse_seeds(seeds) if seeds is not None else None
    epochs = cfg.train.full_data_epochs or cfg.train.epochs if full_data else cfg.train.epochs
    shown = (progress_printer(epochs, as_json), epochs, plain, sys.stderr if as_json else sys.stdout)
    root = Path("runs") / ("seeds" if seeds else "full" if full_data else "train")
    with output_folder(output, root, config.stem, overwrite) as out:
        if seed_list is None:
            with epoch_display(*shown) as progress:
                r = fit(cfg, out, progress, full_data=full_data)
            r.pop("history")
            if as_json:
                print(json.dumps(r))
            elif r["macro_f1"] is None:
                print(f"trained {r['epochs_run']} epochs on all {r['n_train']} images; no validation (full-data "
                      f"retrain: no image was held out); weights in {r['output_dir']}/best.pt")
            else:
                print(f"macro_f1 {r['macro_f1']:.4f} (epoch {r['best_epoch']}/{r['epochs_run']}), accuracy "
                      f"{r['accuracy']:.4f}; outputs in {r['output_dir']}")
            return
        runs = {}
        with epoch_display(*shown) as progress:
            for seed in seed_list:
                # the same split (data.split_seed), another init and augmentation order
                run_cfg = cfg.model_copy(update={"seed": seed})
                runs[seed] = fit(run_cfg, out / f"seed-{seed}", progress, full_data=full_data)
        print_runs(runs, "seed", as_json)


@app.command()
def cv(config: Path = typer.Option(..., "--config", help="training config or study file (defaults)"),
       folds: int = typer.Option(..., "--folds", help="k: stratified folds, grouped by person (mask) or "
                                 "data.group_column (csv)"),
       output: Optional[Path] = typer.Option(None, "--output", help="the folds' parent folder (default: a new "
                                             "runs/cv/CONFIG-N)"),
       overwrite: bool = OverwriteOpt,
       as_json: bool = typer.Option(False, "--json",
                                    help="the last line is {\"folds\": [...], \"mean\", \"std\"}")) -> None:
    """Cross-validate one configuration: one normal run per fold, under OUTPUT/fold-i."""
    from training.cv import cross_validate
    from training.run_folder import output_folder

    from .runs import print_runs, progress_printer, read_run_config

    if as_json:
        json_keeps_stdout()
    cfg = read_run_config(config)
    with output_folder(output, Path("runs") / "cv", config.stem, overwrite) as out:
        lines = progress_printer(cfg.train.epochs, as_json, folds)
        results = cross_validate(cfg, out, folds, epoch_callback=lines, fold_callback=lines.fold_done)
        print_runs(dict(enumerate(results)), "fold", as_json)


def _open(study: str, storage: Optional[str]):
    import optuna

    from .storage import open_storage, resolve_url
    from .study_config import study_name

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
        from training.registry import suggest

        from .errors import StorageError
        from .storage import redact

        names = sorted(s.study_name for s in optuna.get_all_study_summaries(st))
        raise StorageError(f"no study '{name}' in {redact(url)}{suggest(name, names)}; "
                           f"it holds: {', '.join(names) or 'no studies'}") from None


@app.command()
def status(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Trials by state, the budget, the best trial, one line per trial."""
    from .status import study_status

    s = study_status(_open(study, storage))
    if as_json:
        print(json.dumps(s))
        return
    for line in status_lines(s):
        print(line)


def status_lines(s: dict) -> list[str]:
    """`search status` as text: a head line, the best trial, then a table of the trials."""
    counts = ", ".join(f"{n} {state}" for state, n in s["counts"].items())
    budget = f" of a budget of {s['budget']}" if s["budget"] is not None else ""
    if not s["trials"]:
        return [f"study {s['study']}: no trials yet{budget}"]
    lines = [f"study {s['study']}: {s['finished']} finished{budget} ({counts})"]
    if s["stopped"]:
        lines.append(s["stopped"])
    if s.get("best"):
        b = s["best"]
        lines.append(f"best: trial {b['number']}, macro_f1 {b['value']:.4f}: {params_text(b['params'])}")
    lines.append(f"{'trial':>5}  {'state':<8}  {'macro_f1':>8}  {'seconds':>8}  params (or why it failed)")
    for t in s["trials"]:
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        seconds = "" if t["seconds"] is None else f"{t['seconds']:.1f}"
        what = params_text(t["params"]) + (f"  [{t['reason']}]" if t.get("reason") else "")
        lines.append(f"{t['number']:>5}  {t['state'].lower():<8}  {value:>8}  {seconds:>8}  {what}")
    return lines


@app.command()
def best(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
         export: Optional[Path] = typer.Option(None, "--export",
                                               help="write the winner's training config here")) -> None:
    """Show the best trial; --export writes a config that `search train --config` retrains."""
    from .export import best_trial, export_best

    st = _open(study, storage)
    t = export_best(st, export) if export else best_trial(st)
    print(f"best: trial {t.number} macro_f1 {t.value:.4f}: {params_text(t.params)}")
    if export:
        cmd = command_name()
        print(f"wrote {export}; retrain with: {cmd} train --config {export}{activate_hint(cmd)}")


@app.command()
def report(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
           out: Path = typer.Option(..., "--out", help="folder for index.html and its PNGs (made if missing)")) -> None:
    """One offline HTML page of a study: history, importances, slices, pruning, cost, the best trial's classes."""
    from .report import write_report

    r = write_report(_open(study, storage), out)
    left = f"; left out (the page says why): {', '.join(s.title for s in r.left_out)}" if r.left_out else ""
    print(f"wrote {r.page} with {len(r.images)} figures{left}")


class Vote(str, Enum):
    soft = "soft"
    hard = "hard"


class Tta(str, Enum):
    hflip = "hflip"


ImagesOpt = typer.Option(..., "--images", help="a folder (every image under it), a CSV with a 'path' column or a "
                         "text list of paths, or the mask eval layout (info.csv beside images/)")
OutOpt = typer.Option(..., "--out", help="the CSV to write: one row per image, in input order")
VoteOpt = typer.Option(Vote.soft, "--vote", help="soft: mean probabilities; hard: majority of the runs' classes, "
                       "a tie to the highest mean probability")
TtaOpt = typer.Option(None, "--tta", help="hflip: average each image's probabilities with its mirror image's")


def _predicted(n_images: int, source: str, options: dict, out: Path) -> None:
    extra = "".join(f", {k} {v}" for k, v in options.items() if v)
    print(f"wrote {out}: {n_images} image{'s' if n_images != 1 else ''}, {source}{extra}")


@app.command()
def predict(run: list[Path] = typer.Option(..., "--run", help="a run folder (config.yaml, best.pt); repeat it to "
                                           "vote over several runs"),
            images: Path = ImagesOpt, out: Path = OutOpt, tta: Optional[Tta] = TtaOpt, vote: Vote = VoteOpt,
            probabilities: bool = typer.Option(False, "--probabilities", help="one column per class: the (mean) "
                                               "probabilities instead of the class")) -> None:
    """Predict images with one or more finished runs (their best.pt) and write a CSV."""
    from training.inference import predict as predict_images

    r = predict_images(run, images, out, tta=tta.value if tta else None, how=vote.value, probabilities=probabilities)
    _predicted(len(r.inputs), f"{len(run)} run{'s' if len(run) != 1 else ''}",
               {"vote": vote.value if len(run) > 1 else None, "tta": tta.value if tta else None}, out)


@app.command()
def ensemble(study: str = StudyOpt, top_k: int = typer.Option(..., "--top-k", help="the K best completed trials"),
             images: Path = ImagesOpt, out: Path = OutOpt, vote: Vote = VoteOpt, tta: Optional[Tta] = TtaOpt,
             storage: Optional[str] = StorageOpt) -> None:
    """Predict images with the best checkpoints of a study's top-k completed trials, voted."""
    from .ensemble import ensemble as ensemble_images

    trials, r = ensemble_images(_open(study, storage), top_k, images, out, how=vote.value,
                                tta=tta.value if tta else None)
    _predicted(len(r.inputs), f"trials {', '.join(map(str, trials))}",
               {"vote": vote.value, "tta": tta.value if tta else None}, out)


@app.command()
def dashboard(storage: Optional[str] = StorageOpt, host: str = typer.Option("127.0.0.1", "--host"),
              port: int = typer.Option(8080, "--port", callback=_within(1, 65535, " (a TCP port)")),
              artifacts: Optional[str] = typer.Option(None, "--artifacts", help="artifact store: a folder or "
                                                      "s3://BUCKET (default: the one the studies recorded, else "
                                                      "./runs/artifacts)")) -> None:
    """optuna-dashboard on our store and its artifacts (binds 127.0.0.1 unless told otherwise)."""
    from optuna_dashboard import run_server

    from .artifacts import open_store, served_location
    from .storage import open_storage, redact, resolve_url

    url = resolve_url(storage)
    st = open_storage(url, must_exist=True)  # before the banner: a bad URL must not announce a server that never starts
    location, others = served_location(st, artifacts)
    store = open_store(location) if location else None
    print(f"optuna-dashboard for {redact(url)} at http://{host}:{port}/", flush=True)
    print(f"artifacts: {location or 'none found (pass --artifacts PATH)'}"
          + (f"; other studies keep theirs in {', '.join(others)} (pass --artifacts to serve one)" if others else ""),
          flush=True)
    run_server(st, host=host, port=port, artifact_store=store)


class _INFO:
    handler: logging.StreamHandler | None = None


def json_keeps_stdout() -> None:
    """``--json``: stdout holds the result alone, so information lines go to stderr, with the progress."""
    if _INFO.handler is not None:
        _INFO.handler.stream = sys.stderr


def _log_handlers() -> list[logging.Handler]:
    """Log records as the commands' own lines, never with a logger's name or a level in capitals (they read
    like a crash): information as plain lines on stdout, where progress goes; warnings on stderr as
    ``warning: ...`` (stderr's ``error:`` line stays the one that says why a command failed)."""
    info = _INFO.handler = logging.StreamHandler(sys.stdout)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    info.setFormatter(logging.Formatter("%(message)s"))
    warning = logging.StreamHandler(sys.stderr)
    warning.setLevel(logging.WARNING)
    warning.setFormatter(logging.Formatter("warning: %(message)s"))
    return [info, warning]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, handlers=_log_handlers())
    import optuna  # its INFO lines ("Using an existing study ...") would sit beside our own messages and errors

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("training").setLevel(logging.INFO)
    logging.getLogger("search").setLevel(logging.INFO)
    try:
        code = app(standalone_mode=False, prog_name="search")  # typer returns typer.Exit's code instead of raising it
    except TrainingError as e:
        if _state["debug"]:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except (click.exceptions.Exit, typer.Exit) as e:
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        sys.exit(130)
    except (click.ClickException, typer.TyperException) as e:  # typer vendors click: its usage errors are not click's
        msg = " ".join((e.format_message() if hasattr(e, "format_message") else str(e)).split()).rstrip(".")
        if msg:  # empty: `search` alone, whose help is already printed
            ctx = getattr(e, "ctx", None)
            print(f"error: {msg}" + (f"; see `{ctx.command_path} --help`" if ctx else ""), file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)
