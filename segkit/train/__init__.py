"""Training stage: ``train_model(cfg)`` (``fit.py``) and its Keras callbacks (``callbacks.py``).

Importing ``segkit.train`` does not import TensorFlow; ``train_model`` does when called.
"""

from __future__ import annotations

from segkit.train.fit import TrainResult, train_model

__all__ = ["TrainResult", "train_model"]
