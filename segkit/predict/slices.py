"""Batched slice prediction: softmax probabilities for a stack of slices (flip TTA, sliding windows).

Keras is not imported here; the model is any object with Keras' ``predict_on_batch`` and ``input_shape``.

Example:
    >>> probs = predict_probs(model, images, batch_size=8)   # (N, H, W, C) float32 -> (N, H, W, K) float32
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from segkit.errors import ConfigError
from segkit.predict.models import model_input_size

if TYPE_CHECKING:
    import keras

Predictor = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def make_predictor(model: keras.Model, batch_size: int) -> Predictor:
    """A callable (N, H, W, C) float32 -> (N, H, W, K) float32 probabilities, run in fixed-size batches.

    Once a full batch has run, a short last batch is zero-padded to ``batch_size`` so the compiled predict
    function is not traced again.
    """
    seen_full: set[tuple[int, ...]] = set()

    def predict(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        n = x.shape[0]
        outs = []
        for s in range(0, n, batch_size):
            chunk = x[s : s + batch_size]
            k = chunk.shape[0]
            if k == batch_size:
                seen_full.add(tuple(chunk.shape[1:]))
            elif tuple(chunk.shape[1:]) in seen_full:
                chunk = np.concatenate([chunk, np.zeros((batch_size - k, *chunk.shape[1:]), chunk.dtype)])
            y = np.asarray(model.predict_on_batch(np.ascontiguousarray(chunk, dtype=np.float32)),
                           dtype=np.float32)
            outs.append(y[:k])
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    return predict


def predict_probs(
    model: keras.Model,
    images: npt.NDArray[np.float32],
    batch_size: int = 8,
    tta: bool = False,
    overlap: float = 0.5,
    predictor: Predictor | None = None,
) -> npt.NDArray[np.float32]:
    """Softmax probabilities for a stack of slices.

    Slices of the model's input size are predicted directly; others (larger, or smaller) go through
    Gaussian-weighted sliding windows (``segkit.predict.tiling``), never resizing. With ``tta`` the prediction
    is the mean over the identity, a left-right flip and an up-down flip (each flipped back).

    Args:
        model: a Keras model (B, h, w, C) -> (B, h, w, K).
        images: (N, H, W, C) float32 in 0..1.
        batch_size: slices (or windows) per model call.
        tta: flip test-time augmentation.
        overlap: sliding-window overlap in [0, 1).
        predictor: a ``make_predictor`` callable to reuse across calls (built from ``model`` when None).

    Returns:
        (N, H, W, K) float32 probabilities.

    Raises:
        ConfigError: ``overlap`` outside [0, 1) (``infer.overlap``).
    """
    from segkit.predict.tiling import sliding_window_inference

    predictor = predictor or make_predictor(model, batch_size)
    roi = model_input_size(model)
    x = np.asarray(images, dtype=np.float32)

    def run(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if roi is None or tuple(batch.shape[1:3]) == roi:
            return predictor(batch)
        try:
            return sliding_window_inference(batch, roi, predictor, overlap=overlap, mode="gaussian",
                                            sw_batch_size=batch_size)
        except ValueError as e:
            raise ConfigError(str(e), path="infer.overlap", hint="use an overlap in [0, 1), e.g. 0.5") from e

    probs = run(x)
    if tta:
        probs = probs + run(x[:, :, ::-1].copy())[:, :, ::-1]
        probs = probs + run(x[:, ::-1].copy())[:, ::-1]
        probs = probs / np.float32(3.0)
    return np.ascontiguousarray(probs, dtype=np.float32)
