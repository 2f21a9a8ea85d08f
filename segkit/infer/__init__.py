"""Inference: label volumes in the input's geometry (``volume``), masks for slice folders (``folder``),
sliding windows (``tiling``) and model loading / batched prediction (``predict``).

Importing this package does not import TensorFlow.
"""

from __future__ import annotations
