"""Training stage: ``train_model(cfg)`` (``fit.py``), cross-validation ``run_cv(cfg)`` (``cv.py``) and the
Keras callbacks (the ``callbacks`` package, one module per concern).

Importing ``segkit.train`` does not import TensorFlow; ``train_model`` does when called.
"""

from __future__ import annotations

from segkit.train.cv import CVResult, run_cv
from segkit.train.fit import TrainResult, train_model

__all__ = ["CVResult", "TrainResult", "run_cv", "train_model"]
