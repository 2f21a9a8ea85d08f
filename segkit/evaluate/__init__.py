"""Evaluation: per case x class Dice, IoU, HD95, ASSD and NSD on reassembled volumes (``run``).

Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from segkit.evaluate.postprocess import apply_postprocessing, choose_postprocessing
from segkit.evaluate.predictions import evaluate_predictions
from segkit.evaluate.run import EvaluationResult, evaluate_model

__all__ = ["EvaluationResult", "apply_postprocessing", "choose_postprocessing", "evaluate_model",
           "evaluate_predictions"]
