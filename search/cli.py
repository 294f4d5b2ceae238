"""The ``search`` command: a thin map from sub-commands to plain functions."""

from __future__ import annotations

import json
import logging
import sys
import traceback
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


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    _state["debug"] = debug


@app.command()
def run(study: str = StudyOpt, n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1,
        help="finished trials the study must hold in total (default: the study file's n_trials)"),
        storage: Optional[str] = StorageOpt,
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help="local worker processes"),
        trials_per_gpu: int = typer.Option(1, "--trials-per-gpu", min=1, help="workers sharing each GPU"),
        timeout: Optional[float] = typer.Option(None, "--timeout", help="stop starting trials after SEC"),
        no_wandb: bool = typer.Option(False, "--no-wandb", help="do not mirror trials to W&B"),
        output: Path = typer.Option(Path("runs"), "--output", help="trial outputs (checkpoints, metrics)")) -> None:
    """Create or resume a study and run it until it holds N finished trials."""
    from .launcher import run_study
    from .storage import resolve_url
    from .study_config import load_study

    from .objective import WorkerStopped

    try:
        s = run_study(load_study(study), resolve_url(storage), n_trials, workers, output, not no_wandb, timeout,
                      trials_per_gpu)
    except WorkerStopped as e:
        print(f"stopped by {e}; the running trial was marked and re-queued: rerun the command to resume",
              file=sys.stderr)
        raise typer.Exit(143) from None
    best = (f"best macro_f1 {s['best_value']:.4f} (trial {s['best_trial']})" if "best_value" in s
            else "no completed trial")
    print(f"done: {s['complete']} complete, {s['pruned']} pruned, {s['failed']} failed in {s['seconds']}s; {best}")
    print(f"next: search best --study {s['study']} --export best.yaml   |   search dashboard")


@app.command()
def worker(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
           n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1, help="default: the study's budget"),
           worker_index: Optional[int] = typer.Option(None, "--worker-index", hidden=True),
           timeout: Optional[float] = typer.Option(None, "--timeout"),
           no_wandb: bool = typer.Option(False, "--no-wandb"),
           output: Path = typer.Option(Path("runs"), "--output")) -> None:
    """One worker: pull trials from the store until the study's budget is met (one per GPU, any machine)."""
    from .objective import WorkerStopped
    from .storage import resolve_url
    from .study_config import load_study
    from .worker import work

    try:
        r = work(load_study(study), resolve_url(storage), n_trials=n_trials, output_root=output,
                 use_wandb=not no_wandb, timeout=timeout, worker_index=worker_index)
    except WorkerStopped as e:
        print(f"worker stopped by {e}; its running trial was marked and re-queued", file=sys.stderr)
        raise typer.Exit(143) from None
    print(f"worker done: ran {r.trials_run} trial(s); study holds {r.finished}/{r.budget} finished")


@app.command()
def train(config: Path = typer.Option(..., "--config", help="training config or study file (defaults)"),
          output: Path = typer.Option(Path("runs/train"), "--output"),
          as_json: bool = typer.Option(False, "--json", help="print the result as one JSON line last")) -> None:
    """Train one configuration."""
    from training import fit
    from training.config import load_config, read_yaml

    from .study_config import is_study_file, load_study

    if is_study_file(read_yaml(config)):
        sc = load_study(str(config))
        cfg = sc.config_for(sc.default_params(), str(config))
    else:
        cfg = load_config(config)

    def progress(epoch: int, m: dict) -> None:
        print(f"epoch {epoch}/{cfg.train.epochs} macro_f1={m['macro_f1']:.4f} acc={m['accuracy']:.4f} "
              f"train_loss={m['train_loss']:.4f} val_loss={m['val_loss']:.4f}", file=sys.stderr if as_json else sys.stdout,
              flush=True)

    r = fit(cfg, output, progress)
    r.pop("history")
    if as_json:
        print(json.dumps(r))
    else:
        print(f"macro_f1 {r['macro_f1']:.4f} (epoch {r['best_epoch']}/{r['epochs_run']}), accuracy {r['accuracy']:.4f}; "
              f"outputs in {r['output_dir']}")


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
    print(f"study {s['study']}: {s['finished']}/{s['budget']} finished ({s['counts']})")
    if s.get("best"):
        b = s["best"]
        print(f"best: trial {b['number']} macro_f1 {b['value']:.4f} {b['params']}")
    for t in s["trials"]:
        v = "" if t["value"] is None else f"{t['value']:.4f}"
        print(f"  #{t['number']:<4} {t['state']:<8} {v:<7} {t.get('reason') or ''} {t['params']}")


@app.command()
def best(study: str = StudyOpt, storage: Optional[str] = StorageOpt,
         export: Optional[Path] = typer.Option(None, "--export", help="write the winner's training config here")) -> None:
    """Show the best trial; --export writes a config that `search train --config` retrains."""
    from .export import best_trial, export_best

    st = _open(study, storage)
    t = export_best(st, export) if export else best_trial(st)
    print(f"best: trial {t.number} macro_f1 {t.value:.4f} {t.params}")
    if export:
        print(f"wrote {export}; retrain with: search train --config {export}")


@app.command()
def dashboard(storage: Optional[str] = StorageOpt, host: str = typer.Option("127.0.0.1", "--host"),
              port: int = typer.Option(8080, "--port")) -> None:
    """optuna-dashboard on our store (binds 127.0.0.1 unless told otherwise)."""
    from optuna_dashboard import run_server

    from .storage import open_storage, redact, resolve_url

    url = resolve_url(storage)
    st = open_storage(url, must_exist=True)  # before the banner: a bad URL must not announce a server that never starts
    print(f"optuna-dashboard for {redact(url)} at http://{host}:{port}/", flush=True)
    run_server(st, host=host, port=port)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
