"""The report's own figures make their point at 2, 20 and 160 trials, on synthetic studies (create_trial on
in-memory storage, no training): parallel coordinates whose labels are whole and never overlap, with log axes,
categorical choices, an "inactive" mark in place of None, and no line drawn near-white; intermediate values that
tell pruned from completed trials and keep the y range where trials differ; macro-F1 against time that shows
pruned and failed trials and marks the best trial and the best rate; and findings on the page that say, with the
study's numbers, what each figure shows."""

from __future__ import annotations

import html
import re
from functools import cache

import numpy as np
import optuna
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import search.observe.report as figures
from reportgen import SPACE, synthetic_study
from search.observe.report import BEST_COLOR, STATE_COLORS, StudyView, write_report

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
optuna.logging.set_verbosity(optuna.logging.WARNING)


@cache
def _large() -> StudyView:
    """160 trials: 3 failed, about half the rest pruned, two conditional parameters, two log-scale ones."""
    return StudyView(synthetic_study(160, seed=2, failed=3))


@cache
def _small() -> StudyView:
    return StudyView(synthetic_study(20, seed=1, prune_share=0.3))


def _two() -> StudyView:
    study = optuna.create_study(direction="maximize")
    for t in synthetic_study(5, seed=4, prune_share=0.0).trials[:2]:
        study.add_trial(t)
    return StudyView(study)


def _narrow() -> StudyView:
    """Two completed trials of two parameters: three axes, the fewest a study can have with two."""
    study = optuna.create_study(direction="maximize")
    dists = {"optimizer.lr": SPACE["optimizer.lr"], "model.dropout": SPACE["model.dropout"]}
    for value, lr, dropout in ((0.66, 0.02, 0.05), (0.8652, 0.01, 0.11)):
        study.add_trial(create_trial(value=value, params={"optimizer.lr": lr, "model.dropout": dropout},
                                     distributions=dists))
    return StudyView(study)


def _texts(fig: Figure) -> list[Text]:
    """The labels a reader sees: visible, not empty, and no tick label of a tick outside its axis's view (matplotlib
    keeps those, undrawn, beyond the axes)."""
    undrawn = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            pad = 1e-9 * (hi - lo)
            undrawn |= {id(label) for tick in axis.get_major_ticks() if not lo - pad <= tick.get_loc() <= hi + pad
                        for label in (tick.label1, tick.label2)}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in undrawn]


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _assert_texts_inside_and_apart(fig: Figure, apart: bool = True) -> None:
    """Every label lies inside the figure (nothing cut at its edge); with ``apart``, no two labels overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    for text, box in boxes:
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
            f"{text!r} is cut at the figure's edge: {box} outside {page}"
    if apart:
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1:]:
                w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
                h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
                assert w <= 0.5 or h <= 0.5, f"labels {a!r} and {b!r} overlap"


@pytest.mark.parametrize("view", [_narrow, _two, _small, _large], ids=["2x2", "2", "20", "160"])
def test_parallel_coordinates_labels_are_whole_apart_and_inside(view):
    view = view()
    fig = figures.parallel_coordinates(view)
    _assert_texts_inside_and_apart(fig)
    texts = [t.get_text() for t in _texts(fig)]
    for name in view.params:  # whole, broken only at its dots
        assert name.replace(".", ".\n") in texts
    assert "None" not in texts and not [t for t in texts if "…" in t or "..." in t]
    inactive = [p for p in view.params if any(p not in t.params for t in view.completed)]
    assert texts.count("inactive") == len(inactive)  # one mark per conditional axis that needs one


def _axis_ticks(fig: Figure, index: int) -> dict[str, float]:
    """The tick labels of the index-th axis (they sit just left of it): label -> height."""
    return {t.get_text(): t.get_position()[1] for t in _texts(fig)
            if t.get_position()[0] == pytest.approx(index - 0.04) and t.get_text() != "inactive"}


def test_parallel_coordinates_log_and_categorical_axes():
    view = _large()
    fig = figures.parallel_coordinates(view)
    lr = _axis_ticks(fig, view.params.index("optimizer.lr"))
    # 3e-4 .. 3e-2 on a log axis: a decade is half the axis, 0.0003 the bottom, 0.03 the top
    assert lr["0.01"] - lr["0.001"] == pytest.approx(0.5)
    assert lr["0.0003"] == pytest.approx(0.0) and lr["0.03"] == pytest.approx(1.0)
    assert len(_axis_ticks(fig, view.params.index("optimizer.weight_decay"))) <= 6
    assert set(_axis_ticks(fig, view.params.index("optimizer.name"))) == {"adamw", "sgd"}
    assert set(_axis_ticks(fig, view.params.index("train.batch_size"))) == {"32", "64", "128"}


def test_a_log_range_inside_one_decade_is_labelled_at_its_ends():
    study = optuna.create_study(direction="maximize")
    dists = {"optimizer.lr": FloatDistribution(2e-3, 8e-3, log=True), "model.dropout": SPACE["model.dropout"]}
    for value, lr in ((0.5, 0.003), (0.6, 0.005)):
        study.add_trial(create_trial(value=value, params={"optimizer.lr": lr, "model.dropout": 0.1},
                                     distributions=dists))
    ticks = _axis_ticks(figures.parallel_coordinates(StudyView(study)), 0)
    assert ticks == {"0.002": pytest.approx(0.0), "0.008": pytest.approx(1.0)}


def test_parallel_coordinates_never_draws_a_trial_near_white_and_puts_the_best_on_top():
    view = _large()
    fig = figures.parallel_coordinates(view)
    ax = fig.axes[0]
    (trials,) = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_gid() == "trials"]
    colors = trials.get_colors()
    assert len(colors) == len(view.completed) - 1
    assert max(_luminance(c) for c in colors) < 0.7  # viridis without its light end: nothing near white
    assert _luminance(colors[0]) < 0.15  # the worst trial is dark
    (best,) = [line for line in ax.lines if line.get_gid() == "best"]
    assert best.get_zorder() > trials.get_zorder() and best.get_linewidth() > 2 * max(trials.get_linewidths())
    assert f"best: trial {view.best.number}\n{view.best.value:.4f}" in [t.get_text() for t in _texts(fig)]


def test_parallel_coordinates_worst_trial_is_visible_in_the_png():
    """Pixels: with two trials, the middle of the worst one's first segment is drawn dark, not near-white."""
    view = _two()
    fig = figures.parallel_coordinates(view)
    fig.canvas.draw()
    ax = fig.axes[0]
    (trials,) = [c for c in ax.collections if c.get_gid() == "trials"]
    (path,) = trials.get_segments()
    x, y = ax.transData.transform((path[0] + path[1]) / 2)
    image = np.asarray(fig.canvas.buffer_rgba())[:, :, :3] / 255.0
    row = image.shape[0] - int(round(y))  # display y counts from the bottom, image rows from the top
    patch = image[row - 1:row + 2, int(round(x)) - 1:int(round(x)) + 2].reshape(-1, 3)
    assert min(_luminance(p) for p in patch) < 0.35, "the worst trial's line is (near) white or missing"


def _lines_by_color(fig: Figure) -> dict[str, list[Line2D]]:
    out: dict[str, list[Line2D]] = {}
    for line in fig.axes[0].lines:
        out.setdefault(to_rgba(line.get_color(), 1.0).__repr__(), []).append(line)
    return out


def test_intermediate_values_tell_pruned_from_completed_and_name_the_best():
    view = _large()
    fig = figures.intermediate_values(view)
    ax = fig.axes[0]
    count = {s: sum(t.state == s for t in view.trials) for s in (TrialState.COMPLETE, TrialState.PRUNED)}
    by_color = _lines_by_color(fig)
    completed = by_color[repr(to_rgba(STATE_COLORS["COMPLETE"]))]
    pruned = by_color[repr(to_rgba(STATE_COLORS["PRUNED"]))]
    assert len(completed) == count[TrialState.COMPLETE] - 1  # the best is drawn apart, in black, on top
    stops = [line for line in pruned if line.get_marker() in ("x", "v")]
    assert len(stops) == count[TrialState.PRUNED] and len(pruned) == 2 * count[TrialState.PRUNED]
    (best,) = [line for line in ax.lines if line.get_gid() == "best"]
    assert to_rgba(best.get_color()) == to_rgba(BEST_COLOR)
    assert best.get_linewidth() > 2 * completed[0].get_linewidth()
    assert best.get_zorder() > max(line.get_zorder() for line in pruned + completed)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 4 and labels[0].startswith(f"completed ({count[TrialState.COMPLETE]})")
    assert labels[1].startswith(f"pruned ({count[TrialState.PRUNED]})") and labels[2] == "failed or running (3)"
    assert labels[3] == f"best: trial {view.best.number}"
    assert ax.get_xlabel() == "epoch"
    _assert_texts_inside_and_apart(fig, apart=False)  # lines cross labels; only the edges are checked here


def test_intermediate_values_y_range_is_where_trials_differ():
    # every report above 0.9 (as on the demo): the axis does not start at 0
    high = StudyView(synthetic_study(20, seed=3, start=0.97, top=1.02))
    values = [v for t in high.trials for v in t.intermediate_values.values()]
    assert min(values) > 0.9
    ax = figures.intermediate_values(high).axes[0]
    low, top = ax.get_ylim()
    assert 0.9 < low and max(values) <= top < 1.01
    below = sum(v < low for v in values)  # the lowest tenth or so: first epochs, where trials hardly differ
    assert 0 < below <= 0.1 * len(values)
    assert ax.get_ylabel() == f"macro_f1 reported\n(▼ {below} of {len(values)} reports below {low:.3g} not shown)"
    # one trial diverged: its reports are cut off, the axis label says how many, its stop sits on the floor
    trial = high.trials[0]
    high.study.add_trial(create_trial(state=TrialState.PRUNED, value=0.11, params=trial.params,
                                      distributions={k: SPACE[k] for k in trial.params},
                                      intermediate_values={1: 0.12, 2: 0.11}))
    view = StudyView(high.study)
    ax = figures.intermediate_values(view).axes[0]
    low = ax.get_ylim()[0]
    values = [v for t in view.trials for v in t.intermediate_values.values()]
    assert low > 0.85
    below = sum(v < low for v in values)
    assert below >= 2 and f"▼ {below} of {len(values)} reports below {low:.3g} not shown" in ax.get_ylabel()
    assert [(line.get_xdata(), line.get_ydata()) for line in ax.lines if line.get_marker() == "v"][-1] == (2, low)


def test_intermediate_values_steps_are_folds_with_cv():
    study = optuna.create_study(direction="maximize")
    for t in synthetic_study(4, seed=5, epochs=5).trials:
        t.user_attrs["fold_macro_f1"] = list(t.intermediate_values.values())
        study.add_trial(t)
    assert figures.intermediate_values(StudyView(study)).axes[0].get_xlabel() == "fold"


def test_f1_per_hour_shows_pruned_and_failed_and_marks_the_best_and_the_best_rate():
    view = _large()
    fig = figures.f1_per_hour(view)
    ax = fig.axes[0]
    rated = [t for t in view.completed if t.duration.total_seconds() > 0]
    fastest = max(rated, key=lambda t: t.value / (t.duration.total_seconds() / 3600))
    best = view.best
    assert fastest is not best  # the synthetic study has a cheaper trial that buys more per hour
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    pruned = sum(t.state == TrialState.PRUNED for t in view.trials)
    assert f"pruned ({pruned}): no final macro_f1, placed by its time" in labels
    assert "failed (3): no final macro_f1, placed by its time" in labels
    assert f"best macro_f1: trial {best.number}" in labels
    rate = fastest.value / (fastest.duration.total_seconds() / 3600)
    assert f"slope {rate:.3g}: trial {fastest.number}'s macro_f1 per CPU-hour, the most" in labels
    assert any(label.startswith("slope ") and f"trial {best.number}'s" in label for label in labels)
    markers = {line.get_marker(): len(line.get_xdata()) for line in ax.lines if line.get_linestyle() == "None"}
    assert markers == {"x": pruned, "v": 3}
    texts = [t.get_text() for t in _texts(fig)]
    assert f"trial {best.number}" in texts and f"trial {fastest.number}" in texts
    _assert_texts_inside_and_apart(fig, apart=False)


@pytest.mark.parametrize("draw", [figures.time_per_trial, figures.f1_per_hour, figures.intermediate_values])
def test_our_figures_keep_their_labels_inside_at_20_trials(draw):
    _assert_texts_inside_and_apart(draw(_small()), apart=False)


def _findings(page: str) -> list[str]:
    return [html.unescape(f) for f in re.findall(r'<p class="finding">(.*?)</p>', page)]


def test_the_page_says_what_each_figure_shows_with_the_studys_numbers(tmp_path):
    view = _small()
    study = view.study
    text = write_report(study, tmp_path / "report").page.read_text()
    assert "states.png" not in text and "Trials by state" not in text
    found = _findings(text)
    assert len(found) == 5  # history, importances, intermediate, time, macro_f1 per hour
    best = view.best
    assert found[0] == f"The best macro_f1, {best.value:.4f}, came from trial {best.number}; none of the " \
                       f"{sum(t.number > best.number for t in study.trials)} trials since has beaten it."
    ranked = list(optuna.importance.get_param_importances(study).items())[:3]
    assert found[1].startswith("Most important: " + ", ".join(f"{k} {v:.2f}" for k, v in ranked))
    assert "from 11 completed trials, too few for a firm ranking" in found[1] and "rough" in found[1]
    pruned: dict[int, list[int]] = {}
    for t in study.trials:
        if t.state == TrialState.PRUNED:
            pruned.setdefault(t.last_step, []).append(t.number)
    for step, numbers in pruned.items():
        assert f"{', '.join(map(str, numbers))} after epoch {step}" in found[2]
    assert found[2].startswith("Pruned: ") and found[2].endswith("11 completed trials reported up to epoch 8.")
    total = sum(t.duration.total_seconds() for t in study.trials) / 3600
    assert found[3].startswith(f"20 finished trials ran {total:.3g} CPU-hours in all (")
    rate = {t.number: t.value / (t.duration.total_seconds() / 3600) for t in view.completed}
    fastest = max(rate, key=rate.get)
    cheap = study.trials[fastest]

    def spent(t) -> str:
        return f"macro_f1 {t.value:.4f} in {t.duration.total_seconds() / 3600:.3g} CPU-hours"

    assert found[4] == (f"Most macro_f1 per CPU-hour: trial {fastest}, {rate[fastest]:.3g} ({spent(cheap)}); the best "
                        f"trial, {best.number}, bought {rate[best.number]:.3g} ({spent(best)}). A high rate marks a "
                        "cheap trial, not a better model.")
    assert "Importances, rough" in "".join(t.get_text() for t in _texts(figures.importances(view)))


def test_enough_trials_give_an_importance_ranking_without_the_warning(tmp_path):
    text = write_report(_large().study, tmp_path / "report").page.read_text()
    (importance,) = [f for f in _findings(text) if f.startswith("Most important")]
    assert importance.endswith(f"from {len(_large().completed)} completed trials.") and "rough" not in importance
