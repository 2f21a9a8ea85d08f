"""Training stage: ``train_model(cfg)`` (``fit.py``), the Keras callbacks (the ``callbacks`` package, one
module per concern), the ``tf.distribute`` strategy of ``train.strategy`` (``strategy.py``) and the
multi-worker training loop (``distributed.py``), and deep supervision's heads, loss and metrics
(``deep_supervision.py``). Cross-validation, which trains and then evaluates each
fold, is the layer above: ``segkit.cv.run_cv``.

Importing ``segkit.train`` does not import TensorFlow; ``train_model`` does when called.
"""

from __future__ import annotations

from segkit.train.fit import TrainResult, train_model

__all__ = ["TrainResult", "train_model"]
