"""Inference on finished runs: read the images to predict, load run folders, run each run's eval path (with
TTA), vote over runs, write the CSV. Knows nothing of Optuna (``search ensemble`` picks a study's runs and
calls :func:`predict`)."""

from .inputs import Inputs, read_inputs
from .predict import Prediction, predict
from .runs import Run, read_run
from .vote import vote

__all__ = ["predict", "Prediction", "read_inputs", "Inputs", "read_run", "Run", "vote"]
