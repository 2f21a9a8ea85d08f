"""Prediction, shared by train (the post-processing choice), evaluate and infer: model loading (``models``),
batched slice prediction with flip TTA (``slices``), sliding windows (``tiling``), whole volumes in their
original geometry (``volume``), prepared cases read back from their sources (``cases``) and deployment
bundles of ``segkit export`` run by ONNX Runtime, LiteRT or TensorFlow (``bundle``).

It sits below those stages and above ``prepare`` / ``data`` / ``io``; post-processing (``segkit.postprocess``)
sits above it. Importing this package does not import TensorFlow.
"""
