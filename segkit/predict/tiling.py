"""Sliding-window (tiled) inference with Gaussian weighting, for images larger than the model input.

One pure function, modelled on MONAI's ``monai.inferers.utils.sliding_window_inference``: it takes a
predictor callable, ``roi_size``, ``overlap`` and ``mode``; it pads an image smaller than the window, runs the
windows in batches, blends overlapping outputs with an importance map, and crops back to the input size.
Images are never resized.

Example:
    >>> x = np.random.default_rng(0).random((1, 100, 70, 1), dtype=np.float32)
    >>> y = sliding_window_inference(x, (32, 32), lambda b: b, overlap=0.5)
    >>> bool(np.allclose(x, y, atol=1e-6))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

Predictor = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.floating]]
SIGMA_SCALE = 0.125  # Gaussian sigma of a window as a fraction of its size (MONAI's default)


def window_starts(length: int, roi: int, overlap: float) -> list[int]:
    """Start offsets of windows of size ``roi`` covering ``length`` (>= roi) with the given overlap.

    The stride is ``max(1, int(roi * (1 - overlap)))``; the last window is flush with the end.
    """
    if length <= roi:
        return [0]
    stride = max(1, int(roi * (1.0 - overlap)))
    starts = list(range(0, length - roi + 1, stride))
    if starts[-1] != length - roi:
        starts.append(length - roi)
    return starts


def importance_map(
    roi_size: Sequence[int], mode: str = "gaussian", sigma_scale: float = SIGMA_SCALE
) -> npt.NDArray[np.float64]:
    """(h, w) float64 window weights: constant ones, or a Gaussian with sigma = ``sigma_scale`` * roi.

    The Gaussian is normalised to a maximum of 1 and clamped below at its smallest positive value (as in
    MONAI), so border pixels of a window still count where only one window covers them.
    """
    if mode == "constant":
        return np.ones(tuple(roi_size), dtype=np.float64)
    if mode != "gaussian":
        raise ValueError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
    axes = []
    for r in roi_size:
        sigma = max(sigma_scale * r, 1e-3)
        c = (r - 1) / 2.0
        axes.append(np.exp(-0.5 * ((np.arange(r) - c) / sigma) ** 2))
    w = np.outer(axes[0], axes[1])
    w /= w.max()
    positive = w[w > 0]
    return np.maximum(w, positive.min())


def sliding_window_inference(
    inputs: npt.NDArray[np.floating],
    roi_size: Sequence[int],
    predictor: Predictor,
    overlap: float = 0.25,
    mode: str = "gaussian",
    sw_batch_size: int = 4,
) -> npt.NDArray[np.float32]:
    """Run ``predictor`` on overlapping windows of ``inputs`` and blend the outputs.

    Args:
        inputs: (B, H, W, C) float images (channels last).
        roi_size: window (h, w) = the model's input size.
        predictor: maps (N, h, w, C) float32 windows to (N, h, w, K) outputs (e.g. softmax probabilities).
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        mode: "gaussian" (centre pixels weigh more) or "constant".
        sw_batch_size: windows per predictor call.

    An image smaller than the window is padded with zeros; the Gaussian's sigma is ``SIGMA_SCALE`` times the
    window size.

    Returns:
        (B, H, W, K) float32 blended outputs, cropped to the input size.

    Raises:
        ValueError: ``overlap`` outside [0, 1), a bad ``roi_size`` or ``mode``, or inputs that are not 4-D.
    """
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    x = np.asarray(inputs)
    if x.ndim != 4:
        raise ValueError(f"inputs must be (B, H, W, C), got shape {x.shape}")
    if len(roi_size) != 2 or min(roi_size) < 1:
        raise ValueError(f"roi_size must be two positive ints, got {tuple(roi_size)}")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
    rh, rw = int(roi_size[0]), int(roi_size[1])
    b, h, w, _ = x.shape
    ph, pw = max(rh - h, 0), max(rw - w, 0)
    if ph or pw:  # pad symmetrically, crop back at the end
        pads = ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
        x = np.pad(x, pads, mode="constant", constant_values=0.0)
    hh, ww = x.shape[1], x.shape[2]
    weights = importance_map((rh, rw), mode, SIGMA_SCALE)
    boxes = [(i, j) for i in window_starts(hh, rh, overlap) for j in window_starts(ww, rw, overlap)]
    jobs = [(n, i, j) for n in range(b) for i, j in boxes]

    acc: npt.NDArray[np.float64] | None = None
    norm = np.zeros((b, hh, ww, 1), dtype=np.float64)
    for start in range(0, len(jobs), sw_batch_size):
        chunk = jobs[start : start + sw_batch_size]
        windows = np.stack([x[n, i : i + rh, j : j + rw] for n, i, j in chunk]).astype(np.float32)
        out = np.asarray(predictor(windows))
        if out.ndim != 4 or out.shape[:3] != (len(chunk), rh, rw):
            raise ValueError(f"predictor returned shape {out.shape} for windows of shape {windows.shape}")
        if acc is None:
            acc = np.zeros((b, hh, ww, out.shape[-1]), dtype=np.float64)
        for k, (n, i, j) in enumerate(chunk):
            acc[n, i : i + rh, j : j + rw] += out[k] * weights[..., None]
            norm[n, i : i + rh, j : j + rw] += weights[..., None]
    if acc is None:
        raise ValueError("inputs hold no image (batch size 0)")
    result = acc / norm
    top, left = ph // 2, pw // 2
    return result[:, top : top + h, left : left + w].astype(np.float32)
