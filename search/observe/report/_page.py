"""``search report``: one HTML page of a study (DIR/index.html) with its figures as PNGs beside it. It needs no
network: matplotlib draws every figure, the page holds its own style and links nothing outside DIR.

The PNGs are written first and the page last, in one atomic step: a report that stops half-way leaves the
previous page (or none), never a page that points at missing images.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
from matplotlib.figure import Figure

from search.errors import SearchError
from search.observe._charts import confusion_matrix_png, learning_curves_png, per_class_f1_png
from search.observe.report._best_trial import BestRun, read_best_run
from search.observe.report._findings import STUDY_FIGURES, Caption, Finding
from search.observe.report._view import LeftOut, StudyView, device_kind, hour_unit
from search.ranking import METRIC, best_or_none
from training.errors import one_line
from training.files import atomic_path, write_atomic
from training.mistakes import errors_png

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


def write_report(study: optuna.Study, out: Path) -> Report:
    """Write ``out/index.html`` and its PNGs; returns what the page shows and what it leaves out."""
    view = StudyView(study)
    if not view.trials:  # a page of "left out" lines only: say so instead, as `search best` does
        raise SearchError(f"study '{study.study_name}' holds no trial yet, so there is nothing to report; run it "
                          f"first (search run --study {study.study_name})")
    _check_out(out)
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
    title = title.format(unit=hour_unit(view.timed))
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
    errors = Section("Best trial: its most confident mistakes", f"trial {n}: the val images its best epoch got "
                     "wrong, the most confident first, each captioned true → predicted (probability) and its file"
                     + ("; all folds" if best.folds else ""))
    with plt.style.context("default"):  # search/observe/_charts.py's figures read the style when they are made
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
            curves.left_out = best.unread or "its run folder holds no per-epoch history"
        _errors_section(errors, best, out)
    return [f1, cm, curves, errors]


def _errors_section(errors: Section, best: BestRun, out: Path) -> None:
    """The best trial's errors sheet; one that cannot be drawn (its images moved, say) is said, not fatal."""
    folder = best.trial.user_attrs.get("output_dir")
    if not folder or best.unread:
        errors.left_out = best.unread or "the trial records no run folder"
        return
    try:
        if errors_png(folder, out / "best_errors.png", f"trial {best.trial.number}") is None:
            errors.left_out = "its run folder holds no val mistakes (none were made, or the run predates kept " \
                "predictions)"
        else:
            errors.images.append("best_errors.png")
    except Exception as e:  # its data set moved or is read from another working directory
        errors.left_out = f"its mistakes could not be shown: {one_line(e)}"


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
                          t.user_attrs.get("device") or device_kind(t),  # where it ran, when recorded
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
