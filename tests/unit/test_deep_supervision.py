"""Deep supervision (``train.deep_supervision``): the heads, the weighted loss, the main-output metrics and
the config's checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from segkit.config import MODEL_CATALOG, validate_config
from segkit.errors import ConfigError
from segkit.losses import get_loss
from segkit.metrics.training import get_metrics
from segkit.models import build_model
from segkit.train.deep_supervision import (
    DeepSupervisionLoss,
    MainOutput,
    level_weights,
    with_deep_supervision,
)

CLASSES = [{"id": 1, "name": "a", "color": [255, 0, 0]}, {"id": 2, "name": "b", "color": [0, 255, 0]}]


def _cfg(name: str = "flexunet", levels: int = 2, num_layers: int = 4) -> object:
    return validate_config({
        "classes": CLASSES,
        "data": {"image_size": [64, 64], "channels": 1},
        "model": {"name": name, "num_layers": num_layers, "base_filters": 4, "base_kernels": 3},
        "train": {"deep_supervision": levels},
        "loss": {"name": "dice_ce"},
    })


def test_level_weights_halve_per_level_and_sum_to_one() -> None:
    assert level_weights(0) == [1.0]
    w = level_weights(3)
    assert len(w) == 4 and sum(w) == pytest.approx(1.0)
    assert [w[i] / w[i + 1] for i in range(3)] == pytest.approx([2.0, 2.0, 2.0])
    assert w[0] == pytest.approx(8 / 15)


ABLE = [n for n in MODEL_CATALOG.names() if MODEL_CATALOG.get(n).deep_supervision]


def test_the_models_flagged_are_those_ending_in_flexunets_decoder() -> None:
    assert sorted(n.replace("-", "_") for n in ABLE) == [
        "attention_unet", "efficientunet", "flexunet", "sharpunet", "transunet"]


@pytest.mark.parametrize("name", ABLE)
def test_heads_share_the_network_and_its_output_comes_first(name: str) -> None:
    cfg = _cfg(name, levels=2)
    net = build_model(cfg)
    trainer = with_deep_supervision(net, 2, cfg.num_classes)
    assert trainer.output_shape == (None, 64, 64, 9)
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    out = np.asarray(trainer(x))
    np.testing.assert_allclose(out[..., :3], np.asarray(net(x)), rtol=1e-5, atol=1e-6)
    for i in range(3):  # every head is a softmax over the 3 classes
        np.testing.assert_allclose(out[..., 3 * i:3 * (i + 1)].sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(out[..., 3:6], out[..., :3])  # the level-1 head is its own output
    # the network's weights are the trainer's: training the trainer trains the network
    net_ids = {id(v) for v in net.weights}
    assert net_ids <= {id(v) for v in trainer.weights}
    extra = [v.path for v in trainer.weights if id(v) not in net_ids]
    assert sorted(extra) == ["ds1_conv/bias", "ds1_conv/kernel", "ds2_conv/bias", "ds2_conv/kernel"]
    # the level-f head reads the decoder output at 1/2**f of the input
    assert trainer.get_layer("ds1_conv").input.shape[1:3] == (32, 32)
    assert trainer.get_layer("ds2_conv").input.shape[1:3] == (16, 16)


def test_a_model_without_flexunets_decoder_or_that_many_levels_is_refused() -> None:
    i = keras.Input((64, 64, 1))
    net = keras.Model(i, keras.layers.Conv2D(3, 1, activation="softmax")(i), name="plain")
    with pytest.raises(ConfigError, match="has no decoder level 1 \\(layers up0 and up1 of FlexUNet's"):
        with_deep_supervision(net, 1, 3)
    unet = build_model(_cfg(levels=0, num_layers=4))  # decoder levels 0..2, level 3 is the bottom
    assert with_deep_supervision(unet, 2, 3).output_shape == (None, 64, 64, 9)
    with pytest.raises(ConfigError, match="has no decoder level 3"):
        with_deep_supervision(unet, 3, 3)


def test_training_the_trainer_trains_the_heads_and_logs_a_plain_models_keys() -> None:
    cfg = _cfg(levels=2)
    net = build_model(cfg)
    trainer = with_deep_supervision(net, 2, 3)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), loss=DeepSupervisionLoss(get_loss(cfg), 3, 2),
                    metrics=[MainOutput(m, 3) for m in get_metrics(cfg)])
    rng = np.random.default_rng(4)
    x = rng.random((2, 64, 64, 1), dtype=np.float32)
    y = keras.ops.one_hot(rng.integers(0, 3, (2, 64, 64)), 3)
    head = np.asarray(trainer.get_layer("ds2_conv").kernel).copy()
    first = np.asarray(net.get_layer("enc0_conv1").kernel).copy()
    logs = trainer.train_on_batch(x, y, return_dict=True)
    assert not np.allclose(np.asarray(trainer.get_layer("ds2_conv").kernel), head)
    assert not np.allclose(np.asarray(net.get_layer("enc0_conv1").kernel), first)
    plain = build_model(cfg)
    plain.compile(optimizer="adam", loss=get_loss(cfg), metrics=get_metrics(cfg))
    assert set(logs) == set(plain.train_on_batch(x, y, return_dict=True))


def test_under_mixed_precision_the_outputs_stay_float32() -> None:
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        trainer = with_deep_supervision(build_model(_cfg(levels=2)), 2, 3)
        assert str(trainer.output.dtype) == "float32"
        assert str(trainer.get_layer("ds1_conv").compute_dtype) == "bfloat16"
    finally:
        keras.config.set_dtype_policy(policy)


def test_the_loss_is_the_weighted_sum_over_the_outputs() -> None:
    rng = np.random.default_rng(1)
    k = 3
    y = keras.ops.one_hot(rng.integers(0, k, (2, 8, 8)), k)
    preds = [keras.ops.softmax(rng.normal(size=(2, 8, 8, k)).astype("float32")) for _ in range(3)]
    base = keras.losses.CategoricalCrossentropy()
    ds = DeepSupervisionLoss(base, k, 2)
    got = float(ds(y, keras.ops.concatenate(preds, axis=-1)))
    w = level_weights(2)
    want = sum(wi * float(base(y, p)) for wi, p in zip(w, preds, strict=True))
    assert got == pytest.approx(want, rel=1e-5)
    # a perfect main output still pays for the heads
    perfect = keras.ops.concatenate([y, preds[1], preds[2]], axis=-1)
    want = w[0] * float(base(y, y)) + w[1] * float(base(y, preds[1])) + w[2] * float(base(y, preds[2]))
    assert float(ds(y, perfect)) == pytest.approx(want, rel=1e-5)


def test_metrics_score_the_main_output_only_under_their_own_names() -> None:
    cfg = _cfg()
    rng = np.random.default_rng(2)
    y = keras.ops.one_hot(rng.integers(0, 3, (2, 16, 16)), 3)
    main = keras.ops.softmax(rng.normal(size=(2, 16, 16, 3)).astype("float32"))
    heads = keras.ops.one_hot(rng.integers(0, 3, (2, 16, 16)), 3)
    for plain, wrapped in zip(get_metrics(cfg), get_metrics(cfg), strict=True):
        m = MainOutput(wrapped, 3)
        assert m.name == plain.name
        plain.update_state(y, main)
        m.update_state(y, keras.ops.concatenate([main, heads, heads], axis=-1))
        a, b = float(plain.result()), float(m.result())
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b)
        m.reset_state()
        m.update_state(y, keras.ops.concatenate([y, heads, heads], axis=-1))
        if plain.name == "fg_dice":
            assert float(m.result()) == pytest.approx(1.0)  # reset, then a perfect main output


def test_equal_outputs_give_the_configured_base_loss_itself() -> None:
    cfg = _cfg(levels=1)
    rng = np.random.default_rng(3)
    y = keras.ops.one_hot(rng.integers(0, 3, (1, 16, 16)), 3)
    p = keras.ops.softmax(rng.normal(size=(1, 16, 16, 3)).astype("float32"))
    base = get_loss(cfg)
    ds = DeepSupervisionLoss(base, 3, 1)
    # main and head equal: the weighted sum is the base loss itself
    assert float(ds(y, keras.ops.concatenate([p, p], axis=-1))) == pytest.approx(float(base(y, p)), rel=1e-5)


@pytest.mark.parametrize(
    ("model", "levels", "num_layers", "message"),
    [
        ("unet3plus", 1, 4,
         "decoder \\(attention_unet, efficientunet, flexunet, sharpunet, transunet\\), not unet3plus"),
        ("flexunet", 3, 4, "deep_supervision 3 is more than the 2 decoder levels"),
        ("flexunet", 1, 2, "deep_supervision 1 is more than the 0 decoder levels"),
    ],
)
def test_config_refuses_what_cannot_be_deeply_supervised(model: str, levels: int, num_layers: int,
                                                         message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(model, levels, num_layers)


def test_off_by_default_and_the_most_levels_validate() -> None:
    assert validate_config({"classes": CLASSES}).train.deep_supervision == 0
    assert _cfg(levels=2, num_layers=4).train.deep_supervision == 2
    assert _cfg("unet", levels=1).train.deep_supervision == 1  # the alias of flexunet
