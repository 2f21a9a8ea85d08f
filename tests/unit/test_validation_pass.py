"""segkit.train.fit._validation_steps: the validation split as one finite pass per epoch, without tf.data's
autotuning, whose iterators stalled the process for ~30 s each time Keras dropped one (every validation)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from segkit.train.fit import _validation_steps

UNKNOWN = int(tf.data.UNKNOWN_CARDINALITY)
INFINITE = int(tf.data.INFINITE_CARDINALITY)


def _batches(n: int, batch: int) -> tf.data.Dataset:
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    return tf.data.Dataset.from_tensor_slices((x, x)).batch(batch)


@pytest.mark.parametrize(("n", "batch", "steps"), [(10, 4, 3), (8, 4, 2), (1, 4, 1), (3, 4, 1)])
def test_one_finite_pass_of_hidden_length(n: int, batch: int, steps: int) -> None:
    """Hidden length: Keras builds no next-epoch iterator ahead (it does for a dataset of known length)."""
    ds, got = _validation_steps(_batches(n, batch), None, n, batch)
    assert got == steps
    assert int(ds.cardinality()) == UNKNOWN
    assert ds.options().autotune.enabled is False  # dropping an autotuned iterator stalled for ~30 s
    seen = np.concatenate([x.numpy().ravel() for x, _ in ds])
    np.testing.assert_array_equal(seen, np.arange(n))  # every sample once, in order, then the end


@pytest.mark.parametrize("configured", [2, 3])  # within one pass, exactly one pass
def test_configured_steps_within_one_pass_stay_finite(configured: int) -> None:
    ds, got = _validation_steps(_batches(10, 4), configured, 10, 4)
    assert got == configured and int(ds.cardinality()) == UNKNOWN
    assert ds.options().autotune.enabled is False


def test_configured_steps_beyond_one_pass_repeat_the_split_untuned() -> None:
    ds, got = _validation_steps(_batches(10, 4), 5, 10, 4)
    assert got == 5 and int(ds.cardinality()) == INFINITE
    assert ds.options().autotune.enabled is False
    assert [len(x) for x, _ in ds.take(5)] == [4, 4, 2, 4, 4]


def test_fit_validates_on_the_whole_split_every_epoch() -> None:
    """With the weights frozen (learning rate 0), every epoch's val_loss is the loss over all 10 samples:
    the finite pass is rebuilt each epoch, never runs dry, never truncates."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    train = tf.data.Dataset.from_tensor_slices((x, x)).batch(4).repeat()
    valid, val_steps = _validation_steps(_batches(10, 4), None, 10, 4)
    history = model.fit(train, validation_data=valid, epochs=3, steps_per_epoch=2,
                        validation_steps=val_steps, shuffle=False, verbose=0)
    expected = float(np.mean((model.predict(x, verbose=0) - x) ** 2))
    np.testing.assert_allclose(history.history["val_loss"], [expected] * 3, rtol=1e-5)
