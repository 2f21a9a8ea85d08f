"""Segmentation metrics.

- ``segkit.metrics.training``: stateful Keras metrics reported each epoch during ``fit`` (foreground Dice per
  class and its mean from hard predictions, and the seed experiments' ``dice_coef_multiclass`` for
  comparison).
- ``segkit.metrics.overlap`` and ``segkit.metrics.surface``: pure per-case functions (Dice / IoU from TP/FP/FN
  counts with one named empty-reference rule, surface distances); no TensorFlow.
- ``segkit.metrics.scores``: ``ScoreTable``, the one accumulator of per case x class values and their
  reduction over cases, used by ``evaluate``, the cross-validation summary and the post-processing choice.
"""
