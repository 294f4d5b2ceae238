"""One run's results as PNG charts: confusion matrix, per-class F1, learning curves (trial artifacts, reports).

matplotlib's object API on the Agg canvas: no pyplot state shared between callers, no display needed. Every size
grows with the class count, so 18 long names (the mask task's ``not_worn/female/middle``) stay as readable as 2.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from search.errors import SearchError

__all__ = ["confusion_matrix_png", "per_class_f1_png", "learning_curves_png", "confusion_matrix_figure",
           "per_class_f1_figure", "learning_curves_figure"]

DPI = 110
CELL_INCHES = 0.48  # one confusion-matrix cell: room for a 3-digit count at 7 pt


def confusion_matrix_png(cm: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    return _save(confusion_matrix_figure(cm, classes, title), path)


def per_class_f1_png(per_class_f1: dict[str, float | None], path: Path, title: str = "") -> Path:
    return _save(per_class_f1_figure(per_class_f1, title), path)


def learning_curves_png(history: list[dict], path: Path, title: str = "") -> Path:
    return _save(learning_curves_figure(history, title), path)


def confusion_matrix_figure(cm: list[list[int]], classes: list[str], title: str = "") -> Figure:
    """Rows are the true classes, columns the predicted ones, each cell its count. Colour is the row's share
    (recall), so a rare class's errors are as visible as a common one's."""
    n = len(classes)
    if n == 0 or len(cm) != n or any(len(row) != n for row in cm):
        shape = f"{len(cm)}x{len(cm[0]) if cm else 0}"
        raise SearchError(f"confusion matrix is {shape} but there are {n} classes; it must be {n}x{n}")
    shares = [[c / max(sum(row), 1) for c in row] for row in cm]
    side = max(3.0, CELL_INCHES * n)
    fig = Figure(figsize=(side + 2.0, side + 1.0), dpi=DPI)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = list(range(n))
    ax.set_xticks(ticks, classes, rotation=90 if n > 6 else 0, fontsize=8)
    ax.set_yticks(ticks, classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    size = 9 if n <= 6 else 7
    for i, row in enumerate(cm):
        for j, count in enumerate(row):
            if count or n <= 10:  # zeros of a large matrix would only add noise
                ax.text(j, i, str(count), ha="center", va="center", fontsize=size,
                        color="white" if shares[i][j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix", fontsize=10)
    return fig


def per_class_f1_figure(per_class_f1: dict[str, float | None], title: str = "") -> Figure:
    """One horizontal bar per class, in class order from the top; a class absent from val (F1 None) is named as
    such instead of drawn as 0. The dashed line is the mean of the others: the macro-F1."""
    names = list(per_class_f1)
    if not names:
        raise SearchError("per-class F1 holds no class; nothing to chart")
    values = [per_class_f1[c] for c in names]
    fig = Figure(figsize=(7.0, max(2.0, 0.32 * len(names) + 1.2)), dpi=DPI)
    ax = fig.add_subplot()
    rows = list(range(len(names)))
    ax.barh(rows, [v or 0.0 for v in values], color=["#4c72b0" if v is not None else "none" for v in values])
    for r, v in zip(rows, values):
        if v is None:
            ax.text(0.01, r, "absent from val", va="center", fontsize=8, color="grey")
        elif v > 0.85:  # no room right of the bar: inside its end
            ax.text(v - 0.01, r, f"{v:.3f}", va="center", ha="right", fontsize=8, color="white")
        else:
            ax.text(v + 0.01, r, f"{v:.3f}", va="center", fontsize=8)
    known = [v for v in values if v is not None]
    mean = sum(known) / len(known) if known else None
    if mean is not None:
        ax.axvline(mean, color="#c44e52", linestyle="--", linewidth=1)
    ax.set_yticks(rows, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("F1" + (f"  (dashed: macro-F1 {mean:.3f})" if mean is not None else ""))
    ax.set_title(title or "per-class F1", fontsize=10)
    return fig


def learning_curves_figure(history: list[dict], title: str = "") -> Figure:
    """Left: train and val loss per epoch; right: val macro-F1 per epoch, its best epoch marked. A full-data run
    (no validation) shows its train loss alone."""
    if not history:
        raise SearchError("the run's history holds no epoch; nothing to chart")
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10.0, 3.8), dpi=DPI)
    loss_ax, f1_ax = fig.subplots(1, 2)
    _curve(loss_ax, epochs, [h.get("train_loss") for h in history], "train loss")
    _curve(loss_ax, epochs, [h.get("val_loss") for h in history], "val loss")
    loss_ax.set_ylabel("loss")
    f1 = [h.get("macro_f1") for h in history]
    _curve(f1_ax, epochs, f1, "val macro-F1", color="#55a868")
    known = [(v, e) for e, v in zip(epochs, f1) if v is not None]
    if known:
        best, at = max(known, key=lambda p: (p[0], -p[1]))  # the first epoch of the best value, as training keeps
        f1_ax.axvline(at, color="grey", linestyle=":", linewidth=1)
        last = at == epochs[-1]  # at the right edge: the note goes left of the line
        f1_ax.annotate(f"best {best:.3f} (epoch {at})", (at, best), textcoords="offset points",
                       xytext=(-4 if last else 4, -12), ha="right" if last else "left", fontsize=8)
    f1_ax.set_ylabel("macro-F1")
    for ax in (loss_ax, f1_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title or "learning curves", fontsize=10)
    return fig


def _curve(ax, epochs: list[int], values: list, label: str, color: str | None = None) -> None:
    points = [(e, v) for e, v in zip(epochs, values) if v is not None]
    if points:
        ax.plot(*zip(*points), marker="o", markersize=3, label=label, color=color)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path
