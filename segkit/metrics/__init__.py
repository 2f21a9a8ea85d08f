"""Segmentation metrics.

- ``segkit.metrics.training``: stateful Keras metrics reported each epoch during ``fit`` (foreground Dice per
  class and its mean from hard predictions, and the seed experiments' ``dice_coef_multiclass`` for comparison).
- Evaluation metrics on reassembled volumes (Dice/IoU from TP/FP/FN counts, surface distances) live beside it
  and need no TensorFlow.
"""
