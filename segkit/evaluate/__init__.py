"""Evaluation: per case x class Dice, IoU, HD95, ASSD and NSD of a trained model on whole volumes
(``run``), or of label volumes made by any tool (``predictions``).

The post-processing that ``evaluate`` applies (``apply_postprocessing``) lives in ``segkit.postprocess``.
Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from segkit.evaluate.predictions import ScoringOptions, evaluate_predictions
from segkit.evaluate.run import EvaluationResult, evaluate_model

__all__ = ["EvaluationResult", "ScoringOptions", "evaluate_model", "evaluate_predictions"]
