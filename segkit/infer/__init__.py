"""Inference: ``infer(cfg, input)`` dispatches on its input (``run``); label volumes in the input's geometry
(``volume``), masks for slice folders (``folder``), and one call's settings (``options``).

Prediction itself (model loading, batched slices, sliding windows, whole volumes) is ``segkit.predict``,
shared with train and evaluate; the component filter and the post-processing decision are
``segkit.postprocess``. Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from segkit.infer.folder import infer_folder
from segkit.infer.options import InferOptions, InferSettings
from segkit.infer.run import InferencePlan, InferenceResult, infer, plan_inference, run_inference
from segkit.infer.volume import infer_volume

__all__ = ["InferOptions", "InferSettings", "InferencePlan", "InferenceResult", "infer", "infer_folder",
           "infer_volume", "plan_inference", "run_inference"]
