"""A finished trial's results in Optuna's artifact store, and the best checkpoints of the study's top k.

Every COMPLETE or PRUNED trial, and a FAIL that left a metrics.json, gets its confusion matrix, per-class F1 and
learning curves as PNGs, errors.png (the best epoch's most confident val mistakes: training/mistakes.py), and its
metrics.json. The study's ``artifacts.keep_top_k`` best completed trials also
keep their best.pt; a checkpoint that drops out of the top k is removed from the store, so a long study holds k
checkpoints, not one per trial.

It is one of the lease's end hooks (search/store/_lease.py). Uploads happen before the lease tells the outcome
(:meth:`TrialArtifacts.before_tell`): an artifact is an attribute of its trial, and Optuna refuses to update a
finished one. Retention happens after the tell (:meth:`TrialArtifacts.after_tell`), under the study lock, so
that concurrent workers rank the same told values and never remove a checkpoint another one still counts on.

With ``cv:`` a trial's folder holds one run per fold. Its confusion matrix is the folds' sum (each val image is
validated in exactly one fold: the out-of-fold matrix), its per-class F1 the folds' mean (as the trial records
it), and each fold keeps its own learning curves, metrics.json and best.pt (``search ensemble`` votes with every
fold's model): ``learning_curves_fold-0.png``, ``metrics_fold-0.json``, ``best_fold-0.pt``, ...
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
from pathlib import Path
from typing import NamedTuple

import optuna
from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from search.errors import SearchError
from search.observe._charts import confusion_matrix_png, learning_curves_png, per_class_f1_png
from search.ranking import completed, ranked
from search.store import EndHook, Lease, study_lock
from search.study import ArtifactsConfig
from training.errors import one_line
from training.mistakes import errors_png
from training.run_folder import METRICS_FILE, RunMetrics, mean_per_class_f1, read_runs, summed_confusion

__all__ = ["TrialArtifacts", "for_study", "open_store", "store_location", "served_location", "LOCATION_ATTR",
           "KEPT_ATTR"]

log = logging.getLogger(__name__)
LOCATION_ATTR = "artifact_store"   # study user attr: where its workers put the artifacts (for `search dashboard`)
KEPT_ATTR = "kept_checkpoints"     # study user attr: {trial number: [artifact ids]} of the checkpoints kept


def store_location(cfg: ArtifactsConfig, output_root: Path) -> str:
    """``s3://BUCKET``, or the store's folder as an absolute path (a dashboard started elsewhere finds it)."""
    if cfg.s3_bucket:
        return f"s3://{cfg.s3_bucket}"
    return str(Path(cfg.path).expanduser().resolve() if cfg.path else (Path(output_root) / "artifacts").resolve())


def open_store(location: str, create: bool = False):
    """The artifact store at ``location`` (``s3://BUCKET`` or a folder; ``create``: make the folder)."""
    if location.startswith("s3://"):
        try:
            return Boto3ArtifactStore(location.removeprefix("s3://"))
        except ImportError as e:
            raise SearchError(f"artifact store {location}: S3 needs boto3; `pip install boto3`, or drop "
                              "artifacts.s3_bucket to keep the artifacts in a folder") from e
    folder = Path(location)
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SearchError(f"artifacts.path: cannot create the artifact folder '{folder}' ({e.strerror}); "
                              "set artifacts.path in the study file to a writable folder") from None
    return FileSystemArtifactStore(folder)


@functools.cache
def for_study(cfg: ArtifactsConfig, output_root: Path) -> TrialArtifacts:
    """One per worker and study (the lease's hooks are built at every claim)."""
    location = store_location(cfg, output_root)
    return TrialArtifacts(open_store(location, create=True), location, cfg.keep_top_k)


class TrialArtifacts(EndHook):
    """One study's artifact store, as its workers fill it: each trial's files, and the top k's checkpoints."""

    def __init__(self, store, location: str, keep_top_k: int) -> None:
        self.store, self.location, self.keep_top_k = store, location, keep_top_k

    def before_tell(self, lease: Lease) -> None:
        """Upload the trial's artifacts while the trial can still take them (Optuna adds none to a finished
        trial). A stop signal (the trial is re-queued; its retry uploads) and a trial another worker already
        ended never get here; an upload's own error is logged, never the trial's."""
        self._upload(lease, lease.outcome.state)

    def after_tell(self, lease: Lease) -> None:
        """With this trial's outcome told, keep the top k's checkpoints only."""
        if lease.outcome.told:
            lease.store(lambda: self._retain(lease.study, lease.storage), "keep the best checkpoints")

    # -------------------------------------------------------------- before the tell

    def _upload(self, lease: Lease, state: TrialState) -> None:
        try:
            self._upload_all(lease, state)
        except Exception as e:  # charts are worth a warning, never the trial
            log.warning("trial %d: artifacts not stored: %s", lease.number, one_line(e, with_last=True))

    def _upload_all(self, lease: Lease, state: TrialState) -> None:
        study = lease.study
        if lease.store(lambda: study.user_attrs.get(LOCATION_ATTR), "read the study") != self.location:
            lease.store(lambda: study.set_user_attr(LOCATION_ATTR, self.location), "record the artifact store")
        output_dir = lease.frozen().user_attrs.get("output_dir")
        runs = read_runs(output_dir)
        if not runs:
            return
        value = lease.outcome.value if state == TrialState.COMPLETE else None
        score = f", macro-F1 {value:.4f}" if value is not None else ""
        title = f"{study.study_name} trial {lease.number} {state.name}{score}"
        with tempfile.TemporaryDirectory(prefix="artifacts-") as tmp:
            for path in _result_files(runs, Path(tmp), title):
                self._put(lease, path)
            errors = self._errors_png(lease, output_dir, Path(tmp), title)
            if errors is not None:
                self._put(lease, errors)
            if state == TrialState.COMPLETE and self._may_rank(study, lease.number, value):
                self._keep_checkpoints(lease, runs, Path(tmp))

    @staticmethod
    def _errors_png(lease: Lease, output_dir: str, tmp: Path, title: str) -> Path | None:
        """Its val mistakes as images; a sheet that cannot be drawn is a warning, and the checkpoints are still
        kept."""
        try:
            return errors_png(output_dir, tmp / "errors.png", title)
        except Exception as e:
            log.warning("trial %d: errors.png not drawn: %s", lease.number, one_line(e, with_last=True))
            return None

    def _put(self, lease: Lease, path: Path) -> str:
        return lease.store(lambda: upload_artifact(artifact_store=self.store, file_path=str(path),
                                                   study_or_trial=lease.trial), f"store {path.name}")

    def _may_rank(self, study: optuna.Study, number: int, value: float) -> bool:
        """Whether the trial is among the k best so far: the top k only gets better, so a trial outside it now
        never enters it, and its checkpoint need not travel to the store."""
        if self.keep_top_k == 0:
            return False
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        top = ranked([*done, _Told(number, value)])[:self.keep_top_k]
        return any(t.number == number for t in top)

    def _keep_checkpoints(self, lease: Lease, runs: list[RunMetrics], tmp: Path) -> None:
        ids = []
        for run in runs:
            if run.best_checkpoint is not None:
                named = tmp / (f"best_{run.label}.pt" if run.label else "best.pt")
                named.symlink_to(run.best_checkpoint.resolve())  # the store's file name, without a copy
                ids.append(self._put(lease, named))
        if not ids:
            return
        study = lease.study

        def record() -> None:
            with study_lock(lease.storage, lease.storage.url, study.study_name):
                kept = dict(study.user_attrs.get(KEPT_ATTR) or {})
                kept[str(lease.number)] = ids
                study.set_user_attr(KEPT_ATTR, kept)

        lease.store(record, "record its checkpoint")

    # -------------------------------------------------------------- after the tell

    def _retain(self, study: optuna.Study, storage) -> None:
        if not study.user_attrs.get(KEPT_ATTR):  # one read, outside the lock, for the usual trial outside the top k
            return
        with study_lock(storage, storage.url, study.study_name):
            kept = dict(study.user_attrs.get(KEPT_ATTR) or {})
            trials = study.get_trials(deepcopy=False)
            top = {t.number for t in ranked(completed(trials))
                   [:self.keep_top_k]}
            running = {t.number for t in trials if t.state == TrialState.RUNNING}  # uploaded, not told yet
            dropped = [n for n in kept if int(n) not in top and int(n) not in running]
            for number in dropped:
                for artifact_id in kept.pop(number):
                    with contextlib.suppress(ArtifactNotFound):  # removed by an earlier pass that died
                        self.store.remove(artifact_id)
            if dropped:
                study.set_user_attr(KEPT_ATTR, kept)


class _Told(NamedTuple):
    """A trial's value before it is told, to rank it with the told ones."""
    number: int
    value: float


def _result_files(runs: list[RunMetrics], tmp: Path, title: str) -> list[Path]:
    """The charts and metrics files of a trial's runs, named as the store will show them (a fold's with its
    ``_fold-i`` suffix)."""
    files = []
    first = runs[0].metrics
    folds = len(runs) if runs[0].label else 0
    matrix = summed_confusion([r for r in runs if r.metrics.get("confusion_matrix")])
    if matrix is not None and not first.get("multilabel"):  # multi-label: one 2x2 matrix per label, no class grid
        note = f" (sum of {folds} folds)" if folds else ""
        files.append(confusion_matrix_png(matrix, first["classes"], tmp / "confusion_matrix.png", title + note))
    per_class = mean_per_class_f1(runs)
    if per_class:
        note = f" (mean of {folds} folds)" if folds else ""
        files.append(per_class_f1_png(per_class, tmp / "per_class_f1.png", title + note))
    for run in runs:
        suffix = f"_{run.label}" if run.label else ""
        if run.metrics.get("history"):
            label = f" {run.label}" if run.label else ""
            curves = tmp / f"learning_curves{suffix}.png"
            files.append(learning_curves_png(run.metrics["history"], curves, title + label))
        named = tmp / f"metrics{suffix}.json"
        named.symlink_to((run.folder / METRICS_FILE).resolve())
        files.append(named)
    return files


def served_location(storage, override: str | None) -> tuple[str | None, list[str]]:
    """The store ``search dashboard`` serves: ``--artifacts``, else the one the store's studies recorded (the
    newest study's when they differ; the others are returned too), else ``./runs/artifacts`` if it exists."""
    if override:
        if not override.startswith("s3://") and not Path(override).is_dir():
            raise SearchError(f"--artifacts {override}: no such folder; pass the artifact store's folder (a study's "
                              "artifacts.path, by default <--output>/artifacts) or s3://BUCKET")
        return override, []
    recorded = [s.user_attrs[LOCATION_ATTR] for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
                if s.user_attrs.get(LOCATION_ATTR)]
    if recorded:
        return recorded[-1], sorted(set(recorded) - {recorded[-1]})
    default = Path("runs") / "artifacts"
    return (str(default.resolve()), []) if default.is_dir() else (None, [])
