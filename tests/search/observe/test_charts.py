"""search/observe/_charts.py: every chart is a PNG with something on it, for 2 classes as for the mask task's 18 long
names, whose tick labels must not overlap."""

from __future__ import annotations

import itertools

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pngs import open_chart
from search.errors import SearchError
from search.observe import (
    confusion_matrix_figure,
    confusion_matrix_png,
    learning_curves_png,
    per_class_f1_figure,
    per_class_f1_png,
)
from training.data.sources import mask_class_names

TWO = ["cat", "dog"]
EIGHTEEN = mask_class_names()  # 'not_worn/female/middle' and the like


def _cm(n: int) -> list[list[int]]:
    return [[40 if i == j else (i * 7 + j) % 4 for j in range(n)] for i in range(n)]


def _history(epochs: int, validated: bool = True) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e if validated else None,
             "macro_f1": 1 - 1 / (e + 1) if validated else None} for e in range(1, epochs + 1)]


@pytest.mark.parametrize("classes", [TWO, EIGHTEEN], ids=["2-classes", "18-classes"])
def test_each_chart_is_a_png_that_is_not_blank(tmp_path, classes):
    f1 = {c: round(0.5 + 0.5 * k / len(classes), 3) for k, c in enumerate(classes)}
    f1[classes[-1]] = None  # absent from val: drawn as such, not as 0
    paths = [confusion_matrix_png(_cm(len(classes)), classes, tmp_path / "cm.png", "trial 3"),
             per_class_f1_png(f1, tmp_path / "f1.png", "trial 3"),
             learning_curves_png(_history(12), tmp_path / "curves.png", "trial 3"),
             learning_curves_png(_history(1, validated=False), tmp_path / "full-data.png")]
    sizes = [open_chart(p).size for p in paths]
    if classes is EIGHTEEN:  # the grid grows with the classes: ~50 px per cell at least
        assert min(sizes[0]) > 18 * 45, sizes[0]


def _tick_boxes(fig, axis: str) -> list:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in labels if t.get_text()]


def _overlapping(boxes) -> list[tuple[str, str]]:
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def test_eighteen_long_class_names_label_both_axes_without_overlap():
    fig = confusion_matrix_figure(_cm(18), EIGHTEEN)
    for axis in ("x", "y"):
        boxes = _tick_boxes(fig, axis)
        assert [name for name, _ in boxes] == EIGHTEEN, f"{axis} axis names every class in order"
        assert not _overlapping(boxes), f"{axis} tick labels overlap: {_overlapping(boxes)[:3]}"
    boxes = _tick_boxes(per_class_f1_figure(dict.fromkeys(EIGHTEEN, 0.5)), "y")
    assert [name for name, _ in boxes] == EIGHTEEN and not _overlapping(boxes)


def test_a_matrix_that_does_not_fit_the_classes_is_one_clear_error(tmp_path):
    with pytest.raises(SearchError, match=r"confusion matrix is 2x2 but there are 3 classes; it must be 3x3"):
        confusion_matrix_png(_cm(2), ["a", "b", "c"], tmp_path / "cm.png")
    assert not (tmp_path / "cm.png").exists()
