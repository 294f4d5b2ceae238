"""Showing a study: each trial mirrored to a W&B run (and a TensorBoard run), its charts and checkpoints in
Optuna's artifact store, the offline HTML report (``observe.report``) and the live progress board
(``observe.progress``).
"""

from search.observe._artifacts import (
           KEPT_ATTR,
           LOCATION_ATTR,
           TrialArtifacts,
           for_study,
           open_store,
           served_location,
           store_location,
)
from search.observe._charts import (
           confusion_matrix_figure,
           confusion_matrix_png,
           learning_curves_figure,
           learning_curves_png,
           per_class_f1_figure,
           per_class_f1_png,
)
from search.observe._tensorboard import Mirrors, TrialBoard
from search.observe._wandb_mirror import TrialMirror, per_class_metrics, run_config, wandb_mode

__all__ = ["TrialArtifacts", "for_study", "open_store", "store_location", "served_location", "LOCATION_ATTR",
           "KEPT_ATTR", "confusion_matrix_png", "per_class_f1_png", "learning_curves_png", "confusion_matrix_figure",
           "per_class_f1_figure", "learning_curves_figure", "TrialMirror", "wandb_mode", "run_config",
           "per_class_metrics", "TrialBoard", "Mirrors"]
