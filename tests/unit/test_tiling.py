"""Sliding-window inference: exact reconstruction with an identity model, agreement with direct inference."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.predict.tiling import importance_map, sliding_window_inference, window_starts


def _identity(x: np.ndarray) -> np.ndarray:
    return x


@pytest.mark.parametrize(
    ("shape", "roi", "overlap", "mode"),
    [
        ((1, 64, 64, 1), (32, 32), 0.5, "gaussian"),
        ((2, 100, 70, 3), (32, 48), 0.25, "gaussian"),
        ((1, 37, 53, 2), (16, 16), 0.0, "constant"),
        ((1, 45, 45, 1), (20, 12), 0.9, "gaussian"),
        ((1, 20, 10, 1), (32, 32), 0.5, "gaussian"),  # smaller than the window: padded and cropped back
    ],
)
def test_identity_model_reproduces_input(
    shape: tuple[int, ...], roi: tuple[int, int], overlap: float, mode: str
) -> None:
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    y = sliding_window_inference(x, roi, _identity, overlap=overlap, mode=mode, sw_batch_size=3)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-6)


def test_window_starts_cover_the_image() -> None:
    assert window_starts(64, 32, 0.5) == [0, 16, 32]
    assert window_starts(70, 32, 0.25) == [0, 24, 38]  # stride 24, last window flush with the end
    assert window_starts(20, 32, 0.5) == [0]


def test_gaussian_importance_map() -> None:
    w = importance_map((32, 32))
    assert w.shape == (32, 32) and w.max() == pytest.approx(1.0) and w.min() > 0
    assert w[15, 15] > w[0, 15] > w[0, 0]  # centre weighs more than edges, edges more than corners
    np.testing.assert_allclose(w, w.T)


@pytest.mark.parametrize("overlap", [-0.1, 1.0, 1.5])
def test_bad_overlap_is_rejected(overlap: float) -> None:
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\)"):
        sliding_window_inference(np.zeros((1, 8, 8, 1), np.float32), (4, 4), _identity, overlap=overlap)


def test_bad_overlap_is_a_config_error_in_predict() -> None:
    import keras

    from segkit.errors import ConfigError
    from segkit.predict.slices import predict_probs

    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1, activation="softmax")(inp))
    with pytest.raises(ConfigError, match=r"overlap must be in \[0, 1\)") as e:
        predict_probs(model, np.zeros((1, 16, 16, 1), np.float32), overlap=1.0)
    assert e.value.path == "infer.overlap"


def test_tiled_matches_direct_on_translation_invariant_pattern() -> None:
    import keras
    # A tiny fully-convolutional, translation-invariant model (3x3 convs, no pooling): receptive field 5x5.
    keras.utils.set_random_seed(3)
    inp = keras.Input((None, None, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    out = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(h)
    model = keras.Model(inp, out)
    # A translation-invariant pattern: a periodic plaid of period 8 px on a 64x64 image = twice the 32x32
    # model.
    yy, xx = np.mgrid[0:64, 0:64]
    img = (0.5 + 0.25 * np.sin(2 * np.pi * xx / 8) + 0.25 * np.cos(2 * np.pi * yy / 8)).astype(np.float32)
    x = img[None, ..., None]
    direct = np.asarray(model.predict_on_batch(x))

    def predict(b: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(b))

    tiled = sliding_window_inference(x, (32, 32), predict, overlap=0.5)
    # away from the image borders (receptive field + margin)
    inner = (slice(None), slice(4, -4), slice(4, -4))
    # Window borders see zero padding, but the Gaussian gives them weight <= exp(-8) where another window
    # covers the pixel from its centre, so the blend equals direct inference to within 1e-3 and labels agree
    # exactly.
    np.testing.assert_allclose(tiled[inner], direct[inner], atol=1e-3)
    np.testing.assert_array_equal(tiled[inner].argmax(-1), direct[inner].argmax(-1))
    # Constant weights (no Gaussian) would blend border artefacts in at full weight: the Gaussian matters.
    flat = sliding_window_inference(x, (32, 32), predict, overlap=0.5, mode="constant")
    assert np.abs(flat[inner] - direct[inner]).max() > np.abs(tiled[inner] - direct[inner]).max()
