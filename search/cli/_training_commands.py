"""The commands of one configuration, outside a study: train it (or one run per seed), cross-validate it, predict
with finished runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from search.cli._app import (
    ImagesOpt,
    OutOpt,
    OverwriteOpt,
    PlainOpt,
    StorageOpt,
    Tta,
    TtaOpt,
    Vote,
    VoteOpt,
    json_keeps_stdout,
    within,
)
from search.cli._printing import print_predicted
from training.errors import ConfigError


def train(config: Path = typer.Option(..., "--config", help="training config or study file (defaults)"),
          output: Optional[Path] = typer.Option(None, "--output", help="the run's folder (default: a new "
                                                "runs/train/CONFIG-N; runs/full/... with --full-data, "
                                                "runs/seeds/... with --seeds)"),
          overwrite: bool = OverwriteOpt,
          full_data: bool = typer.Option(False, "--full-data", help="train on every image (train + val) for "
                                         "train.full_data_epochs epochs (an export's best epoch); no validation"),
          seeds: Optional[str] = typer.Option(None, "--seeds", help="comma-separated seeds: one run each, under "
                                              "OUTPUT/seed-N, then each macro-F1 and the mean +- std"),
          threads: Optional[int] = typer.Option(None, "--threads", callback=within(1, what=" (CPU threads)"),
                                                help="CPU threads (train.num_threads); an export's header names "
                                                "its trial's, for a bit-exact CPU replay"),
          as_json: bool = typer.Option(False, "--json", help="print the result as one JSON line last"),
          plain: bool = PlainOpt) -> None:
    """Train one configuration (or one per seed)."""
    from search.cli._printing import parse_seeds, print_runs, progress_printer, read_run_config
    from search.observe.progress import epoch_display
    from training import fit
    from training.run_folder import output_folder

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
            if r["macro_f1"] is not None:
                _errors_sheet(out, config.stem)
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
                if runs[seed]["macro_f1"] is not None:
                    _errors_sheet(out / f"seed-{seed}", f"{config.stem} seed {seed}")
        print_runs(runs, "seed", as_json)


def _errors_sheet(folder: Path, title: str) -> None:
    """errors.png in a trained run's folder, as a trial gets: its best epoch's most confident val mistakes (none
    when it made none; an earlier run's, under --overwrite, goes). A sheet that cannot be drawn is a warning on
    stderr; the run stands."""
    from training.errors import one_line
    from training.mistakes import errors_png

    (folder / "errors.png").unlink(missing_ok=True)
    try:
        errors_png(folder, folder / "errors.png", title)
    except Exception as e:  # e.g. its images moved since training
        print(f"warning: {folder / 'errors.png'} not drawn: {one_line(e)}", file=sys.stderr)


def cv(config: Path = typer.Option(..., "--config", help="training config or study file (defaults)"),
       folds: int = typer.Option(..., "--folds", help="k: stratified folds, grouped by person (mask) or "
                                 "data.group_column (csv)"),
       output: Optional[Path] = typer.Option(None, "--output", help="the folds' parent folder (default: a new "
                                             "runs/cv/CONFIG-N)"),
       overwrite: bool = OverwriteOpt,
       as_json: bool = typer.Option(False, "--json",
                                    help="the last line is {\"folds\": [...], \"mean\", \"std\"}")) -> None:
    """Cross-validate one configuration: one normal run per fold, under OUTPUT/fold-i."""
    from search.cli._printing import print_runs, progress_printer, read_run_config
    from training.cv import cross_validate
    from training.run_folder import output_folder

    if as_json:
        json_keeps_stdout()
    cfg = read_run_config(config)
    with output_folder(output, Path("runs") / "cv", config.stem, overwrite) as out:
        lines = progress_printer(cfg.train.epochs, as_json, folds)
        results = cross_validate(cfg, out, folds, epoch_callback=lines, fold_callback=lines.fold_done)
        print_runs(dict(enumerate(results)), "fold", as_json)


def audit(config: Optional[Path] = typer.Option(None, "--config", help="training config or study file (defaults)"),
          folds: Optional[int] = typer.Option(None, "--folds", help="k: out-of-fold probabilities from k stratified, "
                                              "grouped folds (5 is usual)"),
          from_cv: Optional[Path] = typer.Option(None, "--from-cv", help="reuse a `search cv` output (or a cv trial's "
                                                 "folder) instead of training"),
          output: Optional[Path] = typer.Option(None, "--out", help="where label_issues.csv/.png go (default: a new "
                                                "runs/audit/CONFIG-N)"),
          overwrite: bool = OverwriteOpt) -> None:
    """Find labels that look wrong: out-of-fold probabilities for every image, then cleanlab's confident learning."""
    from search.cli._printing import progress_printer, read_run_config
    from training.audit import OUTPUTS, audit as audit_labels, cv_folder_of
    from training.config import load_config
    from training.mistakes import MAX_SHOWN
    from training.run_folder import CONFIG_FILE, model_folders, output_folder

    if from_cv is None and (config is None or folds is None):
        raise typer.BadParameter("give --config and --folds K (the audit cross-validates the config), or --from-cv "
                                 "DIR to reuse a cross-validation", param_hint="--from-cv")
    if from_cv is not None and (config is not None or folds is not None):
        raise typer.BadParameter("--from-cv reuses a cross-validation as it was trained: its folds and config come "
                                 "with it; leave out --config and --folds", param_hint="--from-cv")
    if from_cv is not None and not from_cv.is_dir():
        raise ConfigError(f"--from-cv {from_cv}: no such folder; pass a `search cv` output (fold-i folders)")
    if from_cv is not None:
        from_cv = cv_folder_of(from_cv)
    cfg = read_run_config(config) if config is not None else load_config(model_folders(from_cv)[0] / CONFIG_FILE)
    stem = config.stem if config is not None else (from_cv.parent if from_cv.name == "folds" else from_cv).name
    with output_folder(output, Path("runs") / "audit", stem, overwrite, option="--out", outputs=OUTPUTS) as out:
        lines = progress_printer(cfg.train.epochs, False, folds) if from_cv is None else None
        r = audit_labels(cfg, out, folds, from_cv, epoch_callback=lines,
                         fold_callback=lines.fold_done if lines else None)
    print(f"{len(r.issues)} of {r.n_images} images look mislabeled; the most suspect first in {r.csv}"
          + (f", the top {min(len(r.issues), MAX_SHOWN)} shown in {r.sheet}" if r.sheet else ""))
    for line in r.people:
        print(line)
    if r.issues:
        print("next: look at the sheet, then put the paths to drop in data.exclude or the fixes in data.relabel "
              "(an edited copy of label_issues.csv works for either), and search again")


def explain(run: Optional[Path] = typer.Option(None, "--run", help="a finished run folder (config.yaml, best.pt)"),
            study: Optional[str] = typer.Option(None, "--study", help="explain this study's best trial instead"),
            storage: Optional[str] = StorageOpt,
            images: Optional[Path] = typer.Option(None, "--images", help="images to explain (as `search predict` "
                                                  "takes them); default: the run's val mistakes"),
            output: Optional[Path] = typer.Option(None, "--out", help="where the PNGs go (default: a new "
                                                  "runs/explain/RUN-N)"),
            method: str = typer.Option("gradcam", "--method", help="gradcam, gradcam++, eigencam, hirescam, xgradcam, "
                                       "layercam or scorecam"),
            n: int = typer.Option(32, "--n", callback=within(1, 1024, " (images)"), help="at most this many images"),
            overwrite: bool = OverwriteOpt) -> None:
    """What a run looked at: class-activation maps (Grad-CAM and kin) of its mistakes or of any images."""
    from search.cli._study_commands import best_run_folder
    from training.inference.explain import OUTPUTS, explain as explain_images
    from training.run_folder import output_folder

    if (run is None) == (study is None):
        raise typer.BadParameter("give one of --run DIR or --study NAME", param_hint="--run")
    folder = run if run is not None else best_run_folder(study, storage)
    with output_folder(output, Path("runs") / "explain", folder.name, overwrite, option="--out",
                       outputs=OUTPUTS) as out:
        done = explain_images(folder, out, images, method, n)
    what = "val mistakes" if images is None else "images"
    print(f"wrote {len(done)} {method} maps of {folder}'s {what} to {out} (the sheet: {out / 'explain.png'})")


def predict(run: list[Path] = typer.Option(..., "--run", help="a run folder (config.yaml, best.pt); repeat it to "
                                           "vote over several runs"),
            images: Path = ImagesOpt, out: Path = OutOpt, tta: Optional[Tta] = TtaOpt, vote: Vote = VoteOpt,
            probabilities: bool = typer.Option(False, "--probabilities", help="one column per class: the (mean) "
                                               "probabilities instead of the class")) -> None:
    """Predict images with one or more finished runs (their best.pt) and write a CSV."""
    from training.inference import predict as predict_images

    twice = sorted({str(r) for r in run if run.count(r) > 1})
    if twice:
        raise ConfigError(f"--run {twice[0]} is given twice; a vote counts each run once, so pass each folder once")
    r = predict_images(run, images, out, tta=tta.value if tta else None, how=vote.value, probabilities=probabilities)
    print_predicted(len(r.inputs), f"{len(run)} run{'s' if len(run) != 1 else ''}",
               {"vote": vote.value if len(run) > 1 else None, "tta": tta.value if tta else None}, out)
