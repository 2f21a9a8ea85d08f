"""``segkit.export.graph.exportable``: the graph ``segkit export`` converts swaps each 2D GroupNormalization
for the row-mean one (same weights, same function), inside ensemble members too, and its ONNX conversion is
as close to a float64 group normalization as Keras float32 is; a Dense layer's exact GELU is written with erf.

Keras' own GroupNormalization, converted by tf2onnx and run by ONNX Runtime 1.32, is 5.5e-5 away from float64
on the input below (8x the row-mean graph's 6.9e-6); on the left-atrial bench run's probabilities 2.1e-3
against 8e-6 (the module docstring of ``segkit.export.graph``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _gn_model(groups: int = 8, channels: int = 16, epsilon: float = 1e-3):  # noqa: ANN202 - keras.Model
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, channels))
    norm = keras.layers.GroupNormalization(groups=groups, epsilon=epsilon, name="norm")
    out = norm(inp)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    norm.set_weights([rng.uniform(0.5, 1.5, channels).astype(np.float32),
                      rng.uniform(-0.5, 0.5, channels).astype(np.float32)])
    return model


def _input() -> np.ndarray:
    rng = np.random.default_rng(0)  # a narrow spread around channel offsets up to 4: long sums matter
    return (rng.random((2, 64, 64, 16)) * 0.1 + rng.random(16) * 4).astype(np.float32)


def test_exportable_swaps_group_norm_with_the_same_function() -> None:
    import keras

    from segkit.export.graph import exportable

    model = _gn_model()
    graph = exportable(model)
    assert graph is not model and type(graph.get_layer("norm")).__name__ == "RowMeanGroupNormalization"
    x = _input()
    assert np.max(np.abs(graph.predict_on_batch(x) - model.predict_on_batch(x))) < 2e-5
    inp = keras.Input((64, 64, 16))
    members = [keras.Model(model.input, model.output, name=f"member_{i}")(inp) for i in range(2)]
    ens = keras.Model(inp, keras.layers.Average()(members))
    swapped = [type(sub).__name__ for layer in exportable(ens).layers for sub in getattr(layer, "layers", [])]
    assert swapped.count("RowMeanGroupNormalization") == 2
    plain = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
    assert exportable(plain) is plain  # nothing to swap: the model itself


@pytest.mark.parametrize(("groups", "epsilon"), [(8, 1e-3), (16, 1e-5)])  # (16, 1e-5): model.norm instance
def test_exported_group_norm_matches_float64(
    tmp_path: Path, groups: int, epsilon: float, group_norm_reference: Callable[..., np.ndarray]
) -> None:
    ort = pytest.importorskip("onnxruntime")
    from segkit.export.graph import exportable

    model = _gn_model(groups, epsilon=epsilon)
    gamma, beta = (np.asarray(w, np.float64) for w in model.get_layer("norm").get_weights())
    x = _input()
    ref = group_norm_reference(x, groups, gamma, beta, epsilon)
    path = tmp_path / "gn.onnx"
    exportable(model).export(str(path), format="onnx", verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    keras_err = float(np.max(np.abs(model.predict_on_batch(x) - ref)))
    assert np.max(np.abs(got - ref)) <= max(2e-5, 3 * keras_err)


def test_exact_gelu_dense_is_written_with_erf() -> None:
    import keras

    from segkit.export.graph import erf_gelu, exportable

    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 4))
    model = keras.Model(inp, keras.layers.Dense(6, activation="gelu", name="mlp")(inp))
    graph = exportable(model)
    assert graph.get_layer("mlp").activation is erf_gelu and model.get_layer("mlp").activation is not erf_gelu
    x = np.linspace(-6, 6, 2 * 10 * 4, dtype=np.float32).reshape(2, 10, 4)
    assert np.max(np.abs(graph.predict_on_batch(x) - model.predict_on_batch(x))) < 1e-6


def test_int8_dice_helpers_match_hand_counts() -> None:
    """labels_dice pools every voxel and averages the classes present; mean_dice is it on the argmax."""
    from segkit.export.quantize import labels_dice, mean_dice

    ref = np.zeros((2, 4, 4), np.uint8)
    ref[0, :2, :2] = 1  # 4 voxels of class 1
    ref[1, 0, :] = 2  # 4 voxels of class 2
    pred = ref.copy()
    pred[0, 0, 0] = 0  # class 1: tp 3, fn 1 -> 6/7
    pred[1, 1, :2] = 2  # class 2: tp 4, fp 2 -> 8/10
    assert labels_dice(pred, ref, 3) == pytest.approx((6 / 7 + 8 / 10) / 2)
    assert labels_dice(np.zeros_like(ref), np.zeros_like(ref), 3) == 1.0  # nothing anywhere
    probs = np.eye(3, dtype=np.float32)[pred]  # one-hot: argmax gives pred back
    assert mean_dice(probs, ref, 3) == labels_dice(pred, ref, 3)
