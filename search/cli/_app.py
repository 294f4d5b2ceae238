"""The ``search`` application: its shared options, the logging a command's lines go through, and ``main()``, which
turns every mistake into one ``error:`` line (exit 2 for what the command line alone shows, else 1)."""

from __future__ import annotations

import logging
import sys
import traceback
from enum import Enum
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


def within(low: int, high: int | None = None, what: str = ""):
    """A range check that names the value and the range (Click's own message names neither clearly)."""
    def check(value: Optional[int]) -> Optional[int]:
        if value is not None and (value < low or high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise typer.BadParameter(f"{value}: give a whole number {span}{what}")
        return value
    return check


TimeoutOpt = typer.Option(None, "--timeout", callback=_positive_seconds, help="start no trial after SEC seconds")
TensorboardOpt = typer.Option(None, "--tensorboard", help="a TensorBoard run per trial under DIR/<study>/ "
                              "(scalars and the HParams view; `tensorboard --logdir DIR`)")
OverwriteOpt = typer.Option(False, "--overwrite", help="let --output replace the finished run it holds")


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



@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks")) -> None:
    _state["debug"] = debug


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


def _given(e: Exception) -> str | None:
    """The value typed for the option a usage error names, read back from the command line."""
    param = getattr(e, "param", None)
    for opt in getattr(param, "opts", None) or ():
        for i, arg in enumerate(sys.argv):
            if arg == opt and i + 1 < len(sys.argv):
                return sys.argv[i + 1]
            if arg.startswith(opt + "="):
                return arg.split("=", 1)[1]
    return None


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
        given = _given(e)
        if given is not None and repr(given) not in msg and f": {given}:" not in msg:
            msg += f" (got {given!r})"  # Click names the option, not what was typed
        if msg:  # empty: `search` alone, whose help is already printed
            ctx = getattr(e, "ctx", None)
            print(f"error: {msg}" + (f"; see `{ctx.command_path} --help`" if ctx else ""), file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)
