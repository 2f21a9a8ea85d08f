"""Inference: ``infer(cfg, input)`` dispatches on its input (``run``); label volumes in the input's geometry (``volume``), masks for slice folders (``folder``),
sliding windows (``tiling``) and model loading / batched prediction (``predict``).

Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from segkit.infer.folder import infer_folder
from segkit.infer.predict import load_model, load_models, run_models
from segkit.infer.run import InferencePlan, InferenceResult, infer, plan_inference, run_inference
from segkit.infer.volume import infer_volume, predict_volume

__all__ = ["InferencePlan", "InferenceResult", "infer", "infer_folder", "infer_volume", "load_model", "load_models",
           "plan_inference", "predict_volume", "run_inference", "run_models"]
