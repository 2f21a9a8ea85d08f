"""Model registry contract (SMP BaseModelTester style), FlexUNet = the seed architecture, GFLOP counting."""

from __future__ import annotations

import copy
import inspect
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import yaml

from segkit.config import CONV_KEYS, LEVEL_KEYS, MODEL_CATALOG, ModelConfig, validate_config
from segkit.errors import ConfigError
from segkit.models import MODELS, Convs, Levels, build_model, check_input_shape, model_summary

REPO = Path(__file__).resolve().parents[2]

TINY: dict[str, Any] = {
    "name": "tiny",
    "classes": [
        {"id": 1, "name": "LV", "color": [255, 0, 0]},
        {"id": 2, "name": "RV", "color": [0, 255, 0]},
        {"id": 3, "name": "Ao", "color": [0, 0, 255]},
    ],
    "data": {"image_size": [32, 32], "channels": 1},
    "model": {"base_filters": 4, "base_kernels": 5, "num_layers": 3, "dropout_rate": 0.1, "norm": "none"},
}


def tiny_cfg(**model: Any) -> Any:
    raw = copy.deepcopy(TINY)
    raw["model"].update(model)
    return validate_config(raw)


# === Seed architecture ===


def test_flexunet_reproduces_the_whole_heart_seed_parameter_count() -> None:
    raw = yaml.safe_load((REPO / "configs" / "seed" / "whole-heart.yaml").read_text())
    # the count does not depend on H, W (test_param_count_is_independent_of_image_size); 128 = 2**7 is the
    # smallest size the 7 poolings allow and builds in seconds
    raw["data"]["image_size"] = [128, 128]
    cfg = validate_config(raw)
    model = build_model(cfg)
    s = model_summary(model)
    assert s["params"] == 124_557_177
    # conv MACs scale with H*W: at 512x512 the seed model needs ~73.6 GFLOP per image
    assert round(s["gflops_per_image"] * (512 / 128) ** 2, 1) == 73.6
    assert model.input_shape == (None, 128, 128, 3)
    assert model.output_shape == (None, 128, 128, 9)
    # the seed's per-level rules: kernel max(7 - 2i, 3), filters 16 * 2**i, dropout 0.04 * i
    assert model.get_layer("enc0_conv1").kernel_size == (7, 7)
    assert model.get_layer("enc1_conv1").kernel_size == (5, 5)
    assert model.get_layer("enc3_conv1").kernel_size == (3, 3)
    assert model.get_layer("enc7_conv2").filters == 16 * 2**7
    assert model.get_layer("dec0_conv2").kernel_size == (7, 7)
    assert model.get_layer("enc2_drop").rate == pytest.approx(0.08)
    assert model.get_layer("dec6_drop").rate == pytest.approx(0.24)
    assert model.get_layer("up6").kernel_size == (2, 2) and model.get_layer("up6").strides == (2, 2)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 7


def test_param_count_is_independent_of_image_size() -> None:
    a = build_model(tiny_cfg())
    raw = copy.deepcopy(TINY)
    raw["data"]["image_size"] = [64, 48]
    b = build_model(validate_config(raw))
    assert a.count_params() == b.count_params()


def test_gflops_and_params_of_a_tiny_flexunet_match_a_hand_count() -> None:
    raw = copy.deepcopy(TINY)
    raw["classes"] = TINY["classes"][:1]  # 2 output channels
    raw["data"]["image_size"] = [16, 16]
    raw["model"] = {"base_filters": 2, "base_kernels": 3, "num_layers": 2, "dropout_rate": 0.0}
    s = model_summary(build_model(validate_config(raw)))
    # MACs per image (H*W*Cout*k*k*Cin; transpose: Hin*Win*Cin*k*k*Cout):
    #   enc0 16*16*2*9*1 = 4608, 16*16*2*9*2 = 9216; pool -> 8x8
    #   enc1  8*8*4*9*2 = 4608,    8*8*4*9*4 = 9216
    #   up0   8*8*4*(2*2)*2 = 2048; concat 2+2 = 4 channels
    #   dec0 16*16*2*9*4 = 18432, 16*16*2*9*2 = 9216; head 16*16*2*1*2 = 1024
    #   total 58368 MACs -> 2 * 58368 FLOP
    assert s["gflops_per_image"] == pytest.approx(2 * 58368 / 1e9)
    # params (k*k*Cin*Cout + Cout): 20 + 38 + 76 + 148 + up 2*2*4*2+2 = 34 + 74 + 38 + head 2*2+2 = 6
    assert s["params"] == 434


def test_one_class_head_is_sigmoid_and_several_classes_softmax() -> None:
    from segkit.models.flexunet import build_flexunet

    one = build_flexunet((16, 16, 1), 1, Levels(base_filters=2, num_layers=2), Convs(base_kernels=3))
    assert one.layers[-1].name == "head_sigmoid" and one.output_shape == (None, 16, 16, 1)
    assert build_model(tiny_cfg()).layers[-1].name == "head_softmax"


def test_max_filters_caps_every_level() -> None:
    model = build_model(tiny_cfg(max_filters=8))
    assert model.get_layer("enc2_conv1").filters == 8  # 4 * 2**2 = 16, capped
    assert model.get_layer("enc1_conv1").filters == 8
    assert model.get_layer("up1").filters == 8
    assert model.count_params() < build_model(tiny_cfg()).count_params()


def test_group_norm_uses_min_8_groups_and_batch_norm_is_inserted() -> None:
    g = build_model(tiny_cfg(norm="group"))
    assert g.get_layer("enc0_norm1").groups == 4  # 4 filters -> 4 groups
    assert g.get_layer("enc2_norm2").groups == 8  # 16 filters -> 8 groups
    b = build_model(tiny_cfg(norm="batch"))
    n_bn = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in b.layers)
    assert n_bn == 2 * (3 + 2)  # two per conv block, 3 encoder + 2 decoder blocks


def _layer_outputs(model: keras.Model, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    sub = keras.Model(model.input, [model.get_layer(n).output for n in names])
    return [np.asarray(y, np.float64) for y in sub(x, training=False)]


def test_instance_norm_normalises_each_channel_of_each_image_on_its_own(
    group_norm_reference: Callable[..., np.ndarray]
) -> None:
    model = build_model(tiny_cfg(norm="instance"))
    assert model.get_layer("enc0_norm1").groups == 4 and model.get_layer("enc2_norm2").groups == 16
    rng = np.random.default_rng(3)
    norm = model.get_layer("enc1_norm1")
    gamma, beta = rng.uniform(0.5, 1.5, 8), rng.uniform(-0.5, 0.5, 8)
    norm.set_weights([gamma.astype(np.float32), beta.astype(np.float32)])
    x = rng.random((2, 32, 32, 1), dtype=np.float32)
    x[1] *= 5  # another image's statistics must not leak in
    a, got = _layer_outputs(model, ["enc1_conv1", "enc1_norm1"], x)
    np.testing.assert_allclose(got, group_norm_reference(a, 8, gamma, beta, 1e-5), atol=1e-4)  # 8 channels


def _leaky(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0, v, 0.01 * v)


def test_norm_act_block_normalises_before_each_leaky_relu_and_drops_out_after_the_first() -> None:
    seed = build_model(tiny_cfg(norm="group"))
    assert seed.get_layer("enc0_conv1").get_config()["activation"] == "relu"
    model = build_model(tiny_cfg(norm="group", block="norm_act"))
    assert model.get_layer("enc0_conv1").get_config()["activation"] == "linear"
    assert model.get_layer("enc1_drop").input is model.get_layer("enc1_act1").output
    assert model.get_layer("enc1_conv2").input is model.get_layer("enc1_drop").output
    x = np.random.default_rng(4).random((1, 32, 32, 1), dtype=np.float32)
    n1, a1, n2, a2 = _layer_outputs(model, ["enc0_norm1", "enc0_act1", "enc0_norm2", "enc0_act2"], x)
    for n, act in ((n1, a1), (n2, a2)):
        np.testing.assert_allclose(act, _leaky(n), rtol=1e-6, atol=1e-7)
    assert (a2 < 0).any() and not any(isinstance(ly, keras.layers.Add) for ly in model.layers)


@pytest.mark.parametrize(("channels", "norm"), [(16, "none"), (3, "none"), (16, "group"), (3, "group")])
def test_residual_block_adds_its_input_or_a_projection_of_it_before_the_last_activation(
    channels: int, norm: str, group_norm_reference: Callable[..., np.ndarray]
) -> None:
    from segkit.models.blocks import BlockConv, conv_block

    inp = keras.Input((16, 16, channels))
    model = keras.Model(inp, conv_block(inp, 16, BlockConv(3, block="residual"), norm, "b"))
    rng = np.random.default_rng(5)
    conv2 = model.get_layer("b_conv2")
    conv2.set_weights([np.zeros_like(w) for w in conv2.get_weights()])  # the pair's conv adds nothing
    beta2 = np.zeros(16)
    if norm == "group":  # a zero map through group norm is its offset
        beta2 = rng.uniform(-0.5, 0.5, 16)
        model.get_layer("b_norm2").set_weights([np.ones(16, np.float32), beta2.astype(np.float32)])
    x = rng.normal(size=(2, 16, 16, channels)).astype(np.float32)
    short = x.astype(np.float64)
    names = [ly.name for ly in model.layers]
    if channels == 16:  # same channels: the input itself
        assert "b_short" not in names
    else:  # a 1x1 convolution to 16 channels, then the norm
        kernel, bias = model.get_layer("b_short").get_weights()
        short = short @ kernel[0, 0] + bias
        if norm == "group":
            gamma, beta = rng.uniform(0.5, 1.5, 16), rng.uniform(-0.5, 0.5, 16)
            model.get_layer("b_short_norm").set_weights([gamma.astype(np.float32), beta.astype(np.float32)])
            short = group_norm_reference(short, 8, gamma, beta)
    got = np.asarray(model(x), np.float64)
    np.testing.assert_allclose(got, _leaky(beta2 + short), rtol=1e-4, atol=1e-5)


def test_a_residual_instance_norm_model_saves_and_loads_safely(tmp_path: Path) -> None:
    model = build_model(tiny_cfg(norm="instance", block="residual"))
    x = np.random.default_rng(6).random((1, 32, 32, 1), dtype=np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    assert loaded.get_layer("enc2_norm2").groups == 16 and loaded.get_layer("enc1_norm1").epsilon == 1e-5
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(loaded(x, training=False)))


@pytest.mark.parametrize(("size", "coarse", "deepest"), [
    ((16, 16), None, "1x1 deepest map of data.image_size 16x16"),
    ((16, 32), None, "1x2 deepest map of data.image_size"),
    ((32, 32), (16, 16), "of cascade.coarse_size 16x16"),
])
def test_instance_norm_over_two_pixels_or_fewer_at_the_deepest_level_is_a_config_error(
    size: tuple[int, int], coarse: tuple[int, int] | None, deepest: str
) -> None:
    raw = copy.deepcopy(TINY)
    raw["data"]["image_size"] = list(size)
    raw["model"].update(norm="instance", num_layers=5)
    if coarse is not None:
        raw["cascade"] = {"enabled": True, "coarse_size": list(coarse)}
    with pytest.raises(ConfigError) as e:
        validate_config(raw)
    assert deepest in e.value.message and "(after 4 poolings)" in e.value.message
    assert "lower model.num_layers" in e.value.message
    raw["model"]["num_layers"] = 4  # 2x2 at least: four pixels to normalise over
    assert build_model(validate_config(raw)).get_layer("enc3_norm1").groups == 32


def test_an_unknown_block_is_one_config_error_listing_the_blocks() -> None:
    with pytest.raises(ConfigError) as e:
        tiny_cfg(block="resnet")
    text = f"{e.value.message} {e.value.hint}"
    assert "model.block" in text and all(b in text for b in ("relu_norm", "norm_act", "residual"))


def test_context_slices_multiply_input_channels() -> None:
    raw = copy.deepcopy(TINY)
    raw["data"].update(channels=3, context_slices=1)
    assert build_model(validate_config(raw)).input_shape == (None, 32, 32, 9)


def test_bad_image_size_error_names_size_divisor_and_padded_size() -> None:
    with pytest.raises(ConfigError) as e:
        check_input_shape((100, 96), num_layers=4)
    assert "100x96 is not divisible by 8" in e.value.message
    assert e.value.path == "data.image_size"
    assert "pad to 104x96" in e.value.hint and "96x96" in e.value.hint


def test_unknown_model_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as e:  # with the rest of the config
        tiny_cfg(name="flexunett")
    assert e.value.message == "key 'model.name': unknown model 'flexunett'"
    assert "did you mean 'flexunet'" in e.value.hint and "attention-unet" in e.value.hint
    cfg = tiny_cfg()
    unchecked = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": "flexunett"})})
    with pytest.raises(ConfigError) as e:  # and again at build time, in the same words
        build_model(unchecked)
    assert e.value.path == "model.name" and e.value.message == "unknown model 'flexunett'"
    assert "did you mean 'flexunet'" in e.value.hint and "attention-unet" in e.value.hint


def test_unet_is_an_alias_of_flexunet() -> None:
    a, b = build_model(tiny_cfg(name="unet")), build_model(tiny_cfg(name="flexunet"))
    assert a.name == "flexunet" and a.count_params() == b.count_params()
    assert "unet" not in MODELS.names()
    assert MODELS.aliases() == MODEL_CATALOG.aliases() == {"unet": "flexunet"}


def test_attention_unet_gates_every_skip() -> None:
    from segkit.models.blocks import AttentionGate

    model = build_model(tiny_cfg(name="attention_unet"))
    gates = [layer for layer in model.layers if isinstance(layer, AttentionGate)]
    assert len(gates) == 2  # num_layers - 1 skips
    # gate MACs are counted: 1x1 convs w_x (Cx*F), w_g (Cg*F), psi (F) per pixel
    flex = model_summary(build_model(tiny_cfg()))["gflops_per_image"]
    att = model_summary(model)["gflops_per_image"]
    # level 1: 16x16, Cx=Cg=8, F=4: 256*(32+32+4); level 0: 32x32, Cx=Cg=4, F=2: 1024*(8+8+2)
    assert att - flex == pytest.approx(2 * (256 * 68 + 1024 * 18) / 1e9)


# === Contract over every registered model ===


@pytest.mark.parametrize("name", MODELS.names())
class TestModelContract:
    def test_builds_from_config_with_softmax_output(self, name: str) -> None:
        model = build_model(tiny_cfg(name=name))
        x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
        y = model.predict(x, verbose=0)
        assert y.shape == (2, 32, 32, 4) and y.dtype == np.float32
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)

    def test_odd_size_raises_config_error_naming_padded_size(self, name: str) -> None:
        raw = copy.deepcopy(TINY)
        raw["data"]["image_size"] = [35, 39]  # +3, +7 px
        raw["model"]["name"] = name
        with pytest.raises(ConfigError) as e:
            build_model(validate_config(raw))
        assert "35x39 is not divisible by 4" in e.value.message and "36x40" in e.value.hint

    def test_keras_save_and_safe_load_give_equal_outputs(self, name: str, tmp_path: Path) -> None:
        model = build_model(tiny_cfg(name=name, norm="group"))
        x = np.random.default_rng(1).random((1, 32, 32, 1), dtype=np.float32)
        path = tmp_path / "m.keras"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True, compile=False)
        # called directly: predict would trace a graph for each of the two models (graph-mode inference is
        # the softmax test's predict above and every export's check in test_export_zoo)
        np.testing.assert_array_equal(np.asarray(model(x, training=False)),
                                      np.asarray(loaded(x, training=False)))

    @pytest.mark.parametrize(("channels", "context"), [(3, 0), (1, 1)])
    def test_rgb_and_2_5d_inputs(self, name: str, channels: int, context: int) -> None:
        raw = copy.deepcopy(TINY)
        raw["model"]["name"] = name
        raw["data"].update({"channels": channels, "context_slices": context})
        model = build_model(validate_config(raw))
        assert model.input_shape == (None, 32, 32, 3)
        y = model(np.zeros((1, 32, 32, 3), np.float32), training=False)  # the shapes: no predict graph needed
        assert tuple(y.shape) == (1, 32, 32, 4)

    def test_fit_as_training_compiles_it_lowers_the_loss(self, name: str, tmp_path: Path) -> None:
        """Compiled as ``segkit train`` compiles it (float32 output, the config's loss and metrics), ``fit``
        lowers the loss on a learnable batch, and the trained model (custom loss and metrics attached) saves
        and safe-loads to the same outputs: the per-model CLI epoch this replaced checked nothing more."""
        from segkit.losses import get_loss
        from segkit.metrics.training import get_metrics
        from segkit.train.fit import float32_output

        keras.utils.set_random_seed(3)
        cfg = tiny_cfg(name=name, dropout_rate=0.0, norm="group")
        model = float32_output(build_model(cfg))
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=get_loss(cfg), metrics=get_metrics(cfg),
                      jit_compile=False)
        rng = np.random.default_rng(2)
        x = rng.random((4, 32, 32, 1), dtype=np.float32)
        labels = (x[..., 0] * 4).astype(int).clip(0, 3)  # learnable: the class is the intensity band
        y = np.eye(4, dtype=np.float32)[labels]
        # The optimizer's, loss's and metrics' variables made eagerly first (public calls): left to fit, they
        # are made while its step is traced, and tf.function then traces the step a second time without them
        # -- half of this test's time on the larger models, the losses being the same. That deferred path is
        # model-independent and runs in every `segkit train` test.
        model.optimizer.build(model.trainable_variables)
        y_pred = model(x, training=False)
        model.compute_loss(x, y, y_pred)
        model.compute_metrics(x, y, y_pred, None)
        history = model.fit(x, y, batch_size=4, epochs=11, verbose=0).history
        assert "fg_dice" in history, sorted(history)
        first, last = history["loss"][0], history["loss"][-1]
        assert last < 0.9 * first, (first, last)
        path = tmp_path / "trained.keras"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True, compile=False)
        again = np.asarray(loaded(x, training=False))
        np.testing.assert_allclose(again, np.asarray(model(x, training=False)), atol=1e-6)

    @pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
    def test_mixed_precision_keeps_float32_probabilities(self, name: str, policy: str) -> None:
        old = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = build_model(tiny_cfg(name=name, norm="batch"))
            first_conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
            assert first_conv.compute_dtype == policy.split("_")[1]
            y = model(np.ones((1, 32, 32, 1), np.float32), training=False)
        finally:
            keras.mixed_precision.set_global_policy(old)
        assert keras.backend.standardize_dtype(y.dtype) == "float32"
        np.testing.assert_allclose(np.asarray(y).sum(-1), 1.0, atol=1e-5)


# === Honest signatures: each model receives exactly the keys it declares ===

CHANGED = {
    "base_filters": 6,
    "num_layers": 2,
    "max_filters": 6,
    "norm": "group",
    "base_kernels": 3,
    "dilation": 2,
    "dropout_rate": 0.2,
    "block": "residual",
}


def architecture(model: keras.Model) -> tuple[int, str]:
    """Parameter count and every layer's config: equal for two builds of the same architecture."""
    layers = [(ly.name, ly.get_config()) for ly in model.layers]
    return model.count_params(), json.dumps(layers, sort_keys=True, default=str)


def test_the_keras_registry_and_the_tensorflow_free_catalog_agree() -> None:
    assert MODELS.names() == MODEL_CATALOG.names() and len(MODELS.names()) == 10
    from dataclasses import fields

    assert {f.name for f in fields(Levels)} == set(LEVEL_KEYS) and {f.name for f in fields(Convs)} == set(
        CONV_KEYS
    )
    sections = {
        f
        for f, info in ModelConfig.model_fields.items()
        if f not in ("name", "pretrained_weights") and f not in LEVEL_KEYS + CONV_KEYS
    }
    assert sections == {MODEL_CATALOG.get(n).section for n in MODEL_CATALOG.names()} - {None}


@pytest.mark.parametrize("name", MODELS.names())
def test_a_builder_accepts_only_the_records_of_the_keys_it_declares(name: str) -> None:
    entry = MODELS.get(name)
    assert entry.keys is MODEL_CATALOG.get(name)
    honours = entry.keys.honours
    assert set(LEVEL_KEYS) <= honours and honours in (set(LEVEL_KEYS), set(LEVEL_KEYS) | set(CONV_KEYS))
    params = set(inspect.signature(entry.build).parameters) - {"input_shape", "num_classes", "name"}
    expected = {"levels"} | ({"convs"} if set(CONV_KEYS) <= honours else set())
    assert params == expected | ({"options"} if entry.keys.section else set())
    if "convs" not in params:  # base_kernels, dilation, dropout_rate have nowhere to go
        with pytest.raises(TypeError, match="convs"):
            entry.build((32, 32, 1), 4, Levels(base_filters=4, num_layers=3), convs=Convs())
    if entry.keys.section:  # the options record is its own config section's class
        annotation = entry.build.__annotations__["options"]
        assert annotation == ModelConfig.model_fields[entry.keys.section].annotation.__name__


@pytest.mark.parametrize("name", MODELS.names())
def test_every_declared_key_changes_the_model_and_no_other_key_does(name: str) -> None:
    base = architecture(build_model(tiny_cfg(name=name)))
    honours = MODEL_CATALOG.get(name).honours
    for key, value in CHANGED.items():
        changed = architecture(build_model(tiny_cfg(name=name, **{key: value})))
        assert (changed != base) == (key in honours), (name, key)


def test_a_fresh_process_loads_the_models_after_importing_segkit_models(tmp_path: Path) -> None:
    # infer loads models with only `import segkit.models`: that import must register AttentionGate, Sharpen,
    # PositionEmbedding and SwinBlock (the models with custom layers; one process loads all four)
    names = ["attention_unet", "sharpunet", "transunet", "swinunet"]
    paths = [tmp_path / f"{name}.keras" for name in names]
    for name, path in zip(names, paths, strict=True):
        build_model(tiny_cfg(name=name)).save(path)
    code = (
        "import sys, keras, segkit.models\n"
        "for p in sys.argv[1:]:\n"
        "    print(keras.models.load_model(p, safe_mode=True, compile=False).output_shape)"
    )
    res = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-4:] == ["(None, 32, 32, 4)"] * 4


def test_models_command_lists_every_model_with_params_and_gflops() -> None:
    from typer.testing import CliRunner

    from segkit.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["models", "--size", "64", "--set", "model.num_layers=3"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for n in MODELS.names():
        line = next(ln for ln in res.stdout.splitlines() if f" {n.replace('-', '_')} " in ln)
        cfg = tiny_cfg(name=n, base_filters=16, base_kernels=7, num_layers=3, dropout_rate=0.05)
        s = model_summary(
            build_model(
                validate_config(
                    {
                        **copy.deepcopy(TINY),
                        "model": cfg.model.model_dump(),
                        "data": {"image_size": [64, 64], "channels": 1},
                    }
                )
            )
        )
        assert f"{s['params']:,}" in line and f"{s['gflops_per_image']:.2f}" in line, (n, line, s)
    one = runner.invoke(app, ["models", "unet3plus"], terminal_width=200)
    assert (
        one.exit_code == 0
        and "full-scale skip connections" in one.stdout
        and "name: 'unet3plus'" in one.stdout
    )
    bad = runner.invoke(app, ["models", "unet4plus"])
    assert bad.exit_code == 2 and "unknown model 'unet4plus'" in bad.stderr


def test_sharpen_applies_the_high_boost_kernel_to_every_channel() -> None:
    from segkit.models.blocks import SHARPEN_KERNEL, Sharpen

    x = np.zeros((1, 5, 5, 2), np.float32)
    x[0, 2, 2, 0] = 1.0  # a delta in channel 0
    x[0, :, :, 1] = 3.0  # a constant in channel 1
    y = np.asarray(Sharpen()(x))
    np.testing.assert_allclose(y[0, 1:4, 1:4, 0], np.array(SHARPEN_KERNEL)[::-1, ::-1], atol=1e-6)
    np.testing.assert_allclose(
        y[0, 1:4, 1:4, 1], 3.0, atol=1e-5
    )  # flat regions pass unchanged (sum of kernel = 1)
    assert not Sharpen().weights  # fixed: nothing to train


def test_aspp_rates_follow_the_deepest_map() -> None:
    from segkit.models.deeplabv3plus import scaled_aspp_rates

    assert scaled_aspp_rates(32) == (6, 12, 18)  # the paper's, at output stride 16 of 512 px
    assert scaled_aspp_rates(8) == (2, 3, 4)
    assert scaled_aspp_rates(4) == (1, 2, 3)  # 128 px, 6 levels: still three distinct branches


def test_depthwise_convolutions_are_counted() -> None:
    from segkit.models import layer_macs

    inp = keras.Input((8, 8, 3))
    dw = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    keras.Model(inp, dw(inp))
    assert layer_macs(dw) == 8 * 8 * 6 * 3 * 3  # each of the 6 output maps: 9 products per pixel


def test_shifted_window_mask_keeps_wrapped_regions_apart() -> None:
    from segkit.models.swinunet import shifted_window_mask

    assert shifted_window_mask(4, 4, 2, 0).all()  # plain windows: every token sees its window
    m = shifted_window_mask(4, 4, 2, 1)
    assert m.shape == (4, 4, 4)
    assert m[0].all()  # the top-left window lies in one region
    np.testing.assert_array_equal(m[3], np.eye(4, dtype=bool))  # bottom-right: four regions met by the roll
    assert all((mi == mi.T).all() and mi.diagonal().all() for mi in m)


def test_swinunet_builds_non_square_inputs_whose_maps_a_window_does_not_divide() -> None:
    raw = copy.deepcopy(TINY)
    raw["model"].update({"name": "swinunet", "num_layers": 5})
    raw["data"]["image_size"] = [160, 128]  # a 10x8 map at stride 16: 4x4 windows fit 8, not 10
    model = build_model(validate_config(raw))
    assert model.predict(np.zeros((1, 160, 128, 1), np.float32), verbose=0).shape == (1, 160, 128, 4)


def test_efficientunet_with_no_map_at_the_deepest_stride_is_a_config_error() -> None:
    raw = copy.deepcopy(TINY)
    raw["model"].update({"name": "efficientunet", "num_layers": 6})
    raw["data"]["image_size"] = [32, 32]  # stride 32 would be a 1x1 map
    with pytest.raises(ConfigError, match="no feature map of stride 32"):
        build_model(validate_config(raw))


def test_dense_and_attention_are_counted() -> None:
    from segkit.models import layer_macs

    inp = keras.Input((16, 8))
    dense = keras.layers.Dense(4)
    mha = keras.layers.MultiHeadAttention(2, 3)
    keras.Model(inp, mha(dense(inp), dense(inp)))
    assert layer_macs(dense) == 16 * 8 * 4
    assert layer_macs(mha) == 4 * 16 * 4 * 6 + 2 * 16 * 16 * 6


# === Per-model options (model.<name>) and pretrained weights ===


def test_each_models_own_options_reach_its_layers() -> None:
    t = build_model(tiny_cfg(name="transunet", transunet={"depth": 3, "heads": 2, "mlp_ratio": 4.0}))
    assert [
        n for n in ("vit0_msa", "vit1_msa", "vit2_msa", "vit3_msa") if n in {ly.name for ly in t.layers}
    ] == ["vit0_msa", "vit1_msa", "vit2_msa"]
    assert t.get_layer("vit0_msa").num_heads == 2
    assert t.get_layer("vit0_mlp1").units == 4 * t.get_layer("vit0_mlp2").units
    s = build_model(tiny_cfg(name="swinunet", swinunet={"window": 2, "heads": 1}))
    block = s.get_layer("enc1_w")
    assert (block.window, block.heads) == (2, 1)
    d = build_model(tiny_cfg(name="deeplabv3plus", deeplabv3plus={"aspp_rates": [1, 2, 5]}))
    assert [d.get_layer(f"aspp_r{k}").dilation_rate for k in range(3)] == [(1, 1), (2, 2), (5, 5)]
    m1 = model_summary(build_model(tiny_cfg(name="multiresunet")))["params"]
    m2 = model_summary(build_model(tiny_cfg(name="multiresunet", multiresunet={"alpha": 3.0})))["params"]
    assert m2 > m1
    u3 = build_model(tiny_cfg(name="unet3plus", unet3plus={"cat_filters": 6}))
    assert u3.get_layer("d0_from_e0").filters == 6 and u3.get_layer("d0_fuse").filters == 6 * 3
    u2a = build_model(tiny_cfg(name="u2net")).count_params()
    assert build_model(tiny_cfg(name="u2net", u2net={"mid_ratio": 1.0})).count_params() > u2a
    b0 = build_model(tiny_cfg(name="efficientunet"))
    b1 = build_model(tiny_cfg(name="efficientunet", efficientunet={"backbone": "b1"}))
    assert b1.count_params() > b0.count_params() and b1.output_shape == b0.output_shape


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("transunet", {"depht": 3}, "depht"),
        ("transunet", {"heads": 0}, "model.transunet.heads"),
        ("efficientunet", {"backbone": "b7"}, "model.efficientunet.backbone"),
        ("deeplabv3plus", {"aspp_rates": [0, 2, 3]}, "at least 1"),
    ],
)
def test_model_options_are_validated(key: str, value: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        tiny_cfg(**{key: value})
    assert message in e.value.one_line()


def test_pretrained_weights_load_and_a_mismatch_is_one_config_error(tmp_path: Path) -> None:
    keras.utils.set_random_seed(3)
    source = build_model(tiny_cfg())
    path = tmp_path / "mine.weights.h5"
    source.save_weights(path)
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    keras.utils.set_random_seed(4)
    loaded = build_model(pretrained=True, cfg=tiny_cfg(pretrained_weights=str(path)))
    np.testing.assert_allclose(loaded.predict_on_batch(x), source.predict_on_batch(x), atol=1e-6)
    keras_file = tmp_path / "whole.keras"
    source.save(keras_file)
    np.testing.assert_allclose(
        build_model(pretrained=True, cfg=tiny_cfg(pretrained_weights=str(keras_file))).predict_on_batch(x),
        source.predict_on_batch(x),
        atol=1e-6,
    )
    with pytest.raises(ConfigError, match="do not fit this model"):
        build_model(pretrained=True, cfg=tiny_cfg(pretrained_weights=str(path), base_filters=8))
    with pytest.raises(ConfigError, match="not found"):
        build_model(pretrained=True, cfg=tiny_cfg(pretrained_weights=str(tmp_path / "missing.weights.h5")))
    other = tmp_path / "weights.npz"
    other.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"\.weights\.h5 or \.keras"):
        build_model(pretrained=True, cfg=tiny_cfg(pretrained_weights=str(other)))


def test_pretrained_weights_of_another_architecture_are_refused_not_half_loaded(tmp_path: Path) -> None:
    path = tmp_path / "flex.weights.h5"
    build_model(tiny_cfg()).save_weights(path)
    with pytest.raises(ConfigError, match="do not fit this model"):
        build_model(tiny_cfg(name="attention_unet", pretrained_weights=str(path)), pretrained=True)


def test_rebuilding_a_model_never_needs_the_pretrained_file(tmp_path: Path) -> None:
    """Only a fresh training start loads model.pretrained_weights; inference rebuilds (precision) and
    `segkit models` must work after the file is gone."""
    cfg = tiny_cfg(pretrained_weights=str(tmp_path / "gone.weights.h5"))
    assert build_model(cfg).output_shape == (None, 32, 32, 4)
