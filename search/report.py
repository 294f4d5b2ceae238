"""``search report``: one HTML page of a study (DIR/index.html) with its figures as PNGs beside it. It needs no
network: matplotlib draws every figure, the page holds its own style and links nothing outside DIR.

The PNGs are written first and the page last, in one atomic step: a report that stops half-way leaves the
previous page (or none), never a page that points at missing images.
"""

from __future__ import annotations

import html
import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
from matplotlib.figure import Figure
from optuna.trial import TrialState

from training.files import atomic_path, write_atomic

from . import report_plots as figures
from .best_run import BestRun, read_best_run
from .errors import SearchError
from .export import best_or_none
from .plots import confusion_matrix_png, learning_curves_png, per_class_f1_png
from .report_plots import METRIC, LeftOut, StudyView

__all__ = ["Report", "Section", "write_report"]


@dataclass
class Section:
    title: str
    caption: str = ""
    images: list[str] = field(default_factory=list)  # PNG names, beside the page
    left_out: str | None = None                       # why the study cannot show it (yet)
    finding: str = ""                                 # what the figure shows of this study, in words


@dataclass
class Report:
    page: Path
    sections: list[Section]

    @property
    def images(self) -> list[str]:
        return [name for s in self.sections for name in s.images]

    @property
    def left_out(self) -> list[Section]:
        return [s for s in self.sections if s.left_out]


def _auto_note(view: StudyView) -> str:
    auto = any(figures.device_kind(t) == "device" for t in view.timed)
    return " train.device is auto: a GPU where the trial's worker had one, else its CPU." if auto else ""


def _importances_caption(view: StudyView) -> str:
    return (f"Optuna's default evaluator (PED-ANOVA) over the {len(view.completed)} completed trials: how much "
            f"each parameter decides reaching the top 10% of {METRIC} values.")


PARALLEL_CAPTION = (
    f"One line per completed trial, through its parameters to its {METRIC} on the last axis. Colour is the "
    f"trial's {METRIC} rank, dark purple the worst to green the best; the best trial is drawn thick, "
    "outlined and labelled. Log-distributed parameters have log axes, categorical ones their choices. A "
    "conditional parameter that a trial did not use is drawn at the \"inactive\" mark below its axis.")

INTERMEDIATE_CAPTION = (
    f"The {METRIC} each trial reported per epoch (with cv: per fold), which a pruner compares across trials: "
    "completed trials green, pruned ones orange with × where they were stopped, failed ones dotted grey, the best "
    "trial black. The y axis spans where trials differ, from about the lowest tenth of the reports up; its label "
    "counts any reports it leaves below.")


def _time_caption(view: StudyView) -> str:
    return ("Each finished trial's time, start to finish, coloured by state (trials that share a GPU each count "
            f"their whole time).{_auto_note(view)}")


def _rate_caption(view: StudyView) -> str:
    unit = figures.hour_unit(view.timed)
    return (f"Each completed trial's {METRIC} against the time it ran: its {METRIC} per {unit} is the slope of "
            f"the line from the origin to it, so the rate rewards cheap trials as much as good ones. The dashed "
            f"line is the highest rate; the star is the best {METRIC}, the dotted line its rate. Pruned and "
            f"failed trials have no final {METRIC} and sit on the time axis.{_auto_note(view)}")


# Findings: what each figure shows of this study, in a sentence under it, computed from the same trials.
STATE_WORDS = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}


def _runs(numbers: list[int]) -> str:
    """Trial numbers as runs: ``2-4, 7``."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def _trials(numbers: list[int]) -> str:
    """``trial 3``, ``trials 2-4``, or ``23 trials`` where the numbers would be a wall of them."""
    return f"{len(numbers)} trials" if len(numbers) > 8 else \
        f"trial{'s' if len(numbers) > 1 else ''} {_runs(numbers)}"


def _history_finding(view: StudyView) -> str:
    best = view.best
    after = sum(t.number > best.number for t in view.trials)
    return (f"The best {METRIC}, {best.value:.4f}, came from trial {best.number}"
            + (f"; none of the {after} trials since has beaten it." if after else ", the latest trial."))


def _importances_finding(view: StudyView) -> str:
    ranked = list(view.importances.items())
    n = len(view.completed)
    text = ("Most important: " + ", ".join(f"{name} {value:.2f}" for name, value in ranked[:3])
            + (f" (3 of {len(ranked)} parameters)" if len(ranked) > 3 else "") + f"; from {n} completed trials")
    if n < figures.ROUGH_BELOW:
        top = math.ceil(0.1 * n)  # PED-ANOVA's default top quantile
        text += (f", too few for a firm ranking: PED-ANOVA contrasts the top 10% ({top} trial{'s' if top > 1 else ''})"
                 f" with the rest, and Optuna advises at least 5 there ({figures.ROUGH_BELOW} completed trials). "
                 "Read it as rough; a few more trials can reorder it")
    return text + "."


def _below_median(trial: optuna.trial.FrozenTrial, completed: list[optuna.trial.FrozenTrial]) -> bool | None:
    """Was the pruned trial's last report below the median of the completed trials' reports at that step (what a
    median pruner compares it with)? None where no completed trial reported that step."""
    step = trial.last_step
    others = [v for t in completed if math.isfinite(v := t.intermediate_values.get(step, math.nan))]
    return trial.intermediate_values[step] < statistics.median(others) if others else None


def _intermediate_finding(view: StudyView) -> str:
    step = "fold" if view.cross_validated else "epoch"
    done = [t.last_step for t in view.completed if t.last_step is not None]
    ran = (f"{len(done)} completed trial{'s' if len(done) > 1 else ''} reported up to {step} {max(done)}" if done
           else "no trial has completed")
    pruned = [t for t in view.trials if t.state == TrialState.PRUNED and t.last_step is not None]
    if not pruned:
        return f"No trial was pruned; {ran}."
    at: dict[int, list[int]] = {}
    for t in pruned:
        at.setdefault(t.last_step, []).append(t.number)
    stops = "; ".join(f"{_trials(numbers)} after {step} {s}" for s, numbers in sorted(at.items()))
    below = [b for b in (_below_median(t, view.completed) for t in pruned) if b is not None]
    share = "each" if len(below) == len(pruned) and all(below) else f"{sum(below)} of {len(pruned)}"
    verdict = f" ({share} below the median the completed trials reported at that {step})" if below else ""
    return f"Pruned: {stops}{verdict}; {ran}."


def _time_finding(view: StudyView) -> str:
    unit = figures.hour_unit(view.timed)
    spent: dict[str, list[float]] = {s: [] for s in STATE_WORDS}  # this order; states without trials dropped
    for t in view.timed:
        spent.setdefault(t.state.name, []).append(figures.hours(t))
    split = ", ".join(f"{sum(h):.3g} by {len(h)} {STATE_WORDS.get(s, s.lower())}" for s, h in spent.items() if h)
    longest = max(view.timed, key=figures.hours)
    scale, time_unit = figures.time_scale([longest.duration.total_seconds()])
    return (f"{len(view.timed)} finished trials ran {sum(map(sum, spent.values())):.3g} {unit}s in all ({split}); "
            f"the longest, trial {longest.number} ({STATE_WORDS.get(longest.state.name, longest.state.name.lower())}), "
            f"ran {longest.duration.total_seconds() / scale:.3g} {time_unit}.")


def _rate_finding(view: StudyView) -> str:
    unit = figures.hour_unit(view.timed)
    best, fastest = figures.rate_leaders(view)
    rate = figures.rate_text

    def spent(t: optuna.trial.FrozenTrial) -> str:
        return f"{METRIC} {t.value:.4f} in {figures.hours(t):.3g} {unit}s"

    if fastest is best:
        return (f"The best trial, {best.number}, also bought the most {METRIC} per {unit}: "
                f"{rate(figures.per_hour(best))} ({spent(best)}).")
    return (f"Most {METRIC} per {unit}: trial {fastest.number}, {rate(figures.per_hour(fastest))} ({spent(fastest)})"
            f"; the best trial, {best.number}, bought {rate(figures.per_hour(best))} ({spent(best)}). "
            f"A high rate marks a cheap trial, not a better model.")


Caption = str | Callable[[StudyView], str]
Finding = Callable[[StudyView], str] | None
# (PNG name, title, caption, figure, finding): the study-wide figures, in page order
STUDY_FIGURES: tuple[tuple[str, str, Caption, Callable[[StudyView], Figure], Finding], ...] = (
    ("history.png", "Optimization history", f"Each completed trial's {METRIC}, and the best so far.",
     figures.history, _history_finding),
    ("importances.png", "Parameter importances", _importances_caption, figures.importances, _importances_finding),
    ("parallel.png", "Parallel coordinates", PARALLEL_CAPTION, figures.parallel_coordinates, None),
    ("slices.png", "Slices of the most important parameters", f"{METRIC} against each parameter's value.",
     figures.slices, None),
    ("intermediate.png", "Intermediate values: what the pruner saw", INTERMEDIATE_CAPTION,
     figures.intermediate_values, _intermediate_finding),
    ("time.png", "Time per trial", _time_caption, figures.time_per_trial, _time_finding),
    # unit: the trials' train.device
    ("f1_per_hour.png", f"{METRIC} per {{unit}}", _rate_caption, figures.f1_per_hour, _rate_finding),
)


def write_report(study: optuna.Study, out: Path) -> Report:
    """Write ``out/index.html`` and its PNGs; returns what the page shows and what it leaves out."""
    _check_out(out)
    view = StudyView(study)
    sections = [_study_section(view, out, *spec) for spec in STUDY_FIGURES]
    best = best_or_none(study)
    sections += (_best_sections(read_best_run(best), out) if best is not None else
                 [Section("Best trial", left_out="no trial has completed yet: per-class F1 and the confusion "
                          "matrix come from the best completed trial")])
    page = out / "index.html"
    write_atomic(page, _page(view, best, sections))
    return Report(page, sections)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SearchError(f"--out {out} is a file; give a folder for index.html and its PNGs")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        raise SearchError(f"--out {out} holds other files; give a new or empty folder, or a previous report's")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SearchError(f"--out {out}: cannot create the folder ({e.strerror}); pick a writable path") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise SearchError(f"--out {out}: the folder is not writable; pick another")


def _study_section(view: StudyView, out: Path, name: str, title: str, caption: Caption,
                   draw: Callable[[StudyView], Figure], finding: Finding) -> Section:
    title = title.format(unit=figures.hour_unit(view.timed))
    # Optuna's plots switch matplotlib's global style (ggplot); each figure is drawn and saved inside a
    # context that puts it back, so no figure inherits another's style
    with plt.style.context("default"):
        try:
            fig = draw(view)
        except LeftOut as e:
            return Section(title, left_out=str(e))
        try:
            with atomic_path(out / name) as tmp:
                fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        finally:
            plt.close(fig)
    return Section(title, caption if isinstance(caption, str) else caption(view), [name],
                   finding=finding(view) if finding else "")


def _best_sections(best: BestRun, out: Path) -> list[Section]:
    n = best.trial.number
    f1 = Section("Best trial: per-class F1", f"trial {n}" + (f", the mean of its {best.folds} folds" if best.folds
                 else "") + "; a class absent from validation and never predicted is marked, not drawn as 0")
    cm = Section("Best trial: confusion matrix", f"trial {n}: rows are true classes, columns predicted, at its best "
                 "epoch" + (f"; its {best.folds} folds summed, so every image counts once" if best.folds else ""))
    curves = Section("Best trial: learning curves", f"trial {n}: train and val loss and {METRIC} per epoch"
                     + (", one chart per fold" if best.folds else ""))
    with plt.style.context("default"):  # search/plots.py's figures read the style when they are made
        if best.per_class_f1:
            f1.images.append(_png(per_class_f1_png, out / "best_per_class_f1.png", best.per_class_f1,
                                  title=f"trial {n}"))
        else:
            f1.left_out = f"trial {n} records no per_class_f1"
        if best.confusion is not None:
            cm.images.append(_png(confusion_matrix_png, out / "best_confusion_matrix.png", best.confusion,
                                  best.classes, title=f"trial {n}"))
        else:
            cm.left_out = best.unread or best.no_confusion
        for label, history in best.histories.items():
            curves.images.append(_png(learning_curves_png, out / f"best_curves{'_' + label if label else ''}.png",
                                      history, title=f"trial {n} {label}".strip()))
        if not best.histories:
            curves.left_out = best.unread or "metrics.json holds no history"
    return [f1, cm, curves]


def _png(draw: Callable[..., Path], path: Path, *args, **kwargs) -> str:
    """``draw(*args, tmp, **kwargs)`` into a temporary file that becomes ``path`` only once it is whole."""
    with atomic_path(path) as tmp:
        draw(*args, tmp, **kwargs)
    return path.name


CSS = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#212121}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
img{max-width:100%;display:block;margin:.5rem 0}.caption{color:#555}
.finding{border-left:3px solid #2e7d32;padding-left:.6rem}.left-out{color:#8d6e63;font-style:italic}
table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}"""


def _page(view: StudyView, best: optuna.trial.FrozenTrial | None, sections: list[Section]) -> str:
    e = html.escape
    study = view.study
    states: dict[str, int] = {}
    for t in view.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    counts = ", ".join(f"{v} {k}" for k, v in states.items()) or "none yet"
    budget = study.user_attrs.get("n_trials")
    lines = [f"<h1>Study {e(study.study_name)}</h1>",
             f"<p>{study.direction.name.lower()} {METRIC}; {len(view.trials)} trials ({e(counts)})"
             + (f", budget {e(str(budget))}" if budget is not None else "")
             + f"; generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"]
    if best is not None:
        lines.append(f"<p>Best: trial {best.number}, {METRIC} {best.value:.4f}"
                     + (f" at epoch {e(str(best.user_attrs['best_epoch']))}" if "best_epoch" in best.user_attrs
                        else "") + ".</p>")
        lines.append(_table(["parameter", "value"], [[k, v] for k, v in best.params.items()]))
    for s in sections:
        lines.append(f"<section><h2>{e(s.title)}</h2>")
        if s.left_out:
            lines.append(f'<p class="left-out">Left out: {e(s.left_out)}.</p>')
        if s.caption and s.images:
            lines.append(f'<p class="caption">{e(s.caption)}</p>')
        lines += [f'<img src="{e(name)}" alt="{e(s.title)}">' for name in s.images]
        if s.finding and s.images:
            lines.append(f'<p class="finding">{e(s.finding)}</p>')
        lines.append("</section>")
    lines.append("<section><h2>Trials</h2>")
    lines.append(_table(["trial", "state", METRIC, "seconds", "device", "params", "fail reason"],
                        [[t.number, t.state.name.lower(), "" if t.value is None else f"{t.value:.4f}",
                          "" if t.duration is None else f"{t.duration.total_seconds():.1f}",
                          t.user_attrs.get("device") or figures.device_kind(t),  # where it ran, when recorded
                          ", ".join(f"{k}={_short(v)}" for k, v in t.params.items()),
                          t.user_attrs.get("fail_reason") or ""] for t in view.trials]))
    lines.append("</section>")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>search report: {e(study.study_name)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(lines) + "\n</body></html>\n")


def _table(header: list[str], rows: list[list]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
