"""Inference: label volumes in the input's geometry (``volume``), masks for slice folders (``folder``),
sliding windows (``tiling``) and model loading / batched prediction (``predict``).

Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from segkit.infer.folder import infer_folder
from segkit.infer.predict import load_model, load_models, run_models
from segkit.infer.volume import infer_volume, predict_volume

__all__ = ["infer_folder", "infer_volume", "load_model", "load_models", "predict_volume", "run_models"]
