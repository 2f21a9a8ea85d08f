"""segkit.hardware: CPU detection and the `auto` choices of precision and XLA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segkit import hardware
from segkit.errors import ConfigError
from segkit.hardware import cpu_has_bf16, resolve_jit_compile, resolve_precision

SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ZEN4 = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu vme avx2 avx512f avx512_bf16 avx512_vnni
"""
EPYC = """processor\t: 0
model name\t: AMD EPYC 7551 32-Core Processor
flags\t\t: fpu vme avx2 fma
"""
# the flag's name inside another word must not count
LOOKALIKE = "model name\t: Other\nflags\t\t: fpu xamx_bf16 amx_bf16x avx512_bf16x\n"


@pytest.fixture
def cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake /proc/cpuinfo, read afresh (neither SEGKIT_BF16 nor SEGKIT_AMX, the cache cleared before and
    after)."""
    path = tmp_path / "cpuinfo"
    monkeypatch.setattr(hardware, "CPUINFO", path)
    monkeypatch.delenv(hardware.BF16_ENV, raising=False)
    monkeypatch.delenv(hardware.AMX_ENV, raising=False)
    hardware._bf16_flag.cache_clear()
    yield path
    hardware._bf16_flag.cache_clear()


@pytest.mark.parametrize(("text", "bf16"), [(SAPPHIRE_RAPIDS, True), (ZEN4, True), (EPYC, False),
                                            (LOOKALIKE, False), ("", False)])
def test_native_bfloat16_is_read_from_the_flags(cpuinfo: Path, text: str, bf16: bool) -> None:
    """AMX tiles (Xeon) or AVX512-BF16 (Zen 4) count; AVX2 + FMA (Zen 1) and look-alike words do not."""
    cpuinfo.write_text(text)
    assert cpu_has_bf16() is bf16


def test_no_cpuinfo_means_no_native_bfloat16(cpuinfo: Path) -> None:
    assert not cpuinfo.exists()
    assert cpu_has_bf16() is False
    assert hardware.cpu_name().endswith("cores)")


def test_cpu_name_reads_the_model_name(cpuinfo: Path) -> None:
    cpuinfo.write_text(EPYC)
    assert hardware.cpu_name().startswith("AMD EPYC 7551 32-Core Processor (")


@pytest.mark.parametrize("env", ["SEGKIT_BF16", "SEGKIT_AMX"])
@pytest.mark.parametrize(("forced", "text", "bf16"), [("0", SAPPHIRE_RAPIDS, False), ("0", ZEN4, False),
                                                      ("1", EPYC, True), ("", SAPPHIRE_RAPIDS, True),
                                                      (" 1 ", EPYC, True)])
def test_the_environment_overrides_the_flags(
    cpuinfo: Path, monkeypatch: pytest.MonkeyPatch, env: str, forced: str, text: str, bf16: bool
) -> None:
    """SEGKIT_BF16, or its older name SEGKIT_AMX (which earlier README commands use)."""
    cpuinfo.write_text(text)
    monkeypatch.setenv(env, forced)
    assert cpu_has_bf16() is bf16


def test_segkit_bf16_wins_over_the_older_name(cpuinfo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo.write_text(EPYC)
    monkeypatch.setenv(hardware.AMX_ENV, "1")
    monkeypatch.setenv(hardware.BF16_ENV, "0")
    assert cpu_has_bf16() is False
    monkeypatch.setenv(hardware.BF16_ENV, "")  # empty: unset, the older name decides
    assert cpu_has_bf16() is True


def test_a_bad_segkit_bf16_is_refused_even_beside_a_good_older_name(
    cpuinfo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpuinfo.write_text(EPYC)
    monkeypatch.setenv(hardware.AMX_ENV, "1")
    monkeypatch.setenv(hardware.BF16_ENV, "on")
    with pytest.raises(ConfigError, match=r"SEGKIT_BF16 must be 0 or 1 \(got 'on'\)"):
        cpu_has_bf16()


@pytest.mark.parametrize("env", ["SEGKIT_BF16", "SEGKIT_AMX"])
@pytest.mark.parametrize("bad", ["yes", "true", "2", "off"])
def test_a_bad_override_is_refused_in_one_line(
    cpuinfo: Path, monkeypatch: pytest.MonkeyPatch, env: str, bad: str
) -> None:
    cpuinfo.write_text(SAPPHIRE_RAPIDS)
    monkeypatch.setenv(env, bad)
    with pytest.raises(ConfigError, match=rf"{env} must be 0 or 1 \(got '{bad}'\)") as e:
        cpu_has_bf16()
    assert f"unset {env}" in (e.value.hint or "")


def test_the_override_is_read_at_each_call(cpuinfo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo.write_text(EPYC)
    assert cpu_has_bf16() is False
    monkeypatch.setenv(hardware.BF16_ENV, "1")
    assert cpu_has_bf16() is True
    monkeypatch.setenv(hardware.BF16_ENV, "0")
    assert cpu_has_bf16() is False


@pytest.mark.parametrize(
    ("gpus", "bf16", "precision", "xla"),
    [(0, False, "float32", True), (0, True, "mixed_bfloat16", False), (1, False, "mixed_float16", True),
     (2, True, "mixed_float16", True)],
)
def test_auto_choices(gpus: int, bf16: bool, precision: str, xla: bool) -> None:
    assert resolve_jit_compile("auto", gpus, bf16=bf16) is xla
    assert resolve_precision("auto", gpus, xla=xla, bf16=bf16) == precision
    assert hardware.resolve_policy("auto", "auto", gpus, bf16=bf16) == (precision, xla)


@pytest.mark.parametrize("bf16", [False, True])
def test_auto_precision_stays_float32_under_asked_for_xla_on_a_cpu(bf16: bool) -> None:
    """XLA does not use oneDNN's bfloat16 kernels: bfloat16 would change the numbers of a `jit_compile: true`
    config without making it faster."""
    assert resolve_precision("auto", 0, xla=True, bf16=bf16) == "float32"
    assert resolve_precision("auto", 1, xla=True, bf16=bf16) == "mixed_float16"


@pytest.mark.parametrize("bf16", [False, True])
def test_explicit_values_are_kept(bf16: bool) -> None:
    for p in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(p, 0, bf16=bf16) == p
        assert resolve_precision(p, 1, bf16=bf16) == p
    assert resolve_jit_compile(True, 0, bf16=bf16) is True
    assert resolve_jit_compile(False, 1, bf16=bf16) is False


@pytest.mark.parametrize(("policy", "bf16", "runs_in"), [
    ("mixed_bfloat16", False, "float32"), ("mixed_bfloat16", True, "mixed_bfloat16"),
    ("mixed_float16", True, "float32"),  # a GPU-trained model on a CPU
    ("float32", True, "float32"),
])
def test_a_mixed_model_runs_in_float32_where_its_half_type_is_emulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, bf16: bool, runs_in: str
) -> None:
    """`auto` at prediction keeps a model's own policy, except bfloat16 on a CPU without native bfloat16 (or
    GPU); an asked-for policy always wins. XLA follows train.jit_compile auto the same way."""
    import keras
    import numpy as np

    from segkit.config import validate_config
    from segkit.models import build_model
    from segkit.predict import models as predict_models

    cfg = validate_config({
        "classes": [{"id": 1, "name": "LV", "color": [255, 0, 0]},
                    {"id": 2, "name": "RV", "color": [0, 255, 0]}],
        "data": {"image_size": [32, 32], "channels": 1},
        "model": {"base_filters": 4, "base_kernels": 3, "num_layers": 3, "norm": "none"},
    })
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_model(cfg)
    finally:
        keras.config.set_dtype_policy(old)
    path = tmp_path / "model.keras"
    model.save(path)
    monkeypatch.setenv(hardware.BF16_ENV, "1" if bf16 else "0")
    monkeypatch.setattr(predict_models, "visible_gpus", lambda: 0)
    x = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    for precision in (None, "auto"):
        loaded = predict_models.load_model(path, cfg, precision)
        assert loaded.get_layer("head_conv").dtype_policy.name == runs_in
        np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=0.02)
    for asked in (policy, "float32"):
        assert predict_models.load_model(path, cfg, asked).get_layer("head_conv").dtype_policy.name == asked
    auto = cfg.model_copy(update={"train": cfg.train.model_copy(update={"jit_compile": "auto"})})
    compiled = predict_models.load_model(path, auto)
    assert compiled.compiled is (not bf16)  # compiled only to switch XLA on
    if compiled.compiled:
        assert compiled.jit_compile is True


def _tiny(**train: object):  # noqa: ANN202 - segkit Config
    from segkit.config import validate_config

    return validate_config({
        "classes": [{"id": 1, "name": "LV", "color": [255, 0, 0]}],
        "data": {"image_size": [32, 32], "channels": 1},
        "model": {"base_filters": 4, "base_kernels": 3, "num_layers": 3},
        "train": train,
    })


@pytest.mark.parametrize(("given", "kept"), [("auto", "auto"), ("AUTO", "auto"), (True, True), (False, False),
                                             ("false", False)])
def test_jit_compile_takes_true_false_or_auto(given: object, kept: object) -> None:
    assert _tiny(jit_compile=given).train.jit_compile == kept


@pytest.mark.parametrize("bad", ["maybe", 1, [True]])
def test_a_bad_jit_compile_is_refused_naming_the_key_and_the_choices(bad: object) -> None:
    with pytest.raises(ConfigError) as e:
        _tiny(jit_compile=bad)
    msg = str(e.value)
    assert "train.jit_compile" in msg and "give true, false or auto" in msg and "\n" not in msg
    assert ".bool" not in msg  # not pydantic's name of a union branch


@pytest.mark.parametrize(("bf16", "jit", "precision", "xla"), [
    ("1", "auto", "mixed_bfloat16", False), ("0", "auto", "float32", True),
    ("1", True, "float32", True),  # XLA asked for: bfloat16 would be no faster there
    ("1", False, "mixed_bfloat16", False),
])
def test_training_resolves_auto_for_this_machine(monkeypatch: pytest.MonkeyPatch, bf16: str, jit: object,
                                                 precision: str, xla: bool) -> None:
    from segkit.train import fit

    monkeypatch.setenv(hardware.BF16_ENV, bf16)
    dev = fit._device(_tiny(jit_compile=jit))
    assert (dev.precision, dev.jit_compile) == (precision, xla)


def test_a_resumed_run_says_when_its_precision_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from segkit.train import fit

    (tmp_path / "versions.json").write_text('{"precision": "float32"}')
    with caplog.at_level("WARNING"):
        fit._warn_precision_change(tmp_path, "float32")
    assert not caplog.records
    with caplog.at_level("WARNING"):
        fit._warn_precision_change(tmp_path, "mixed_bfloat16")
    assert "resuming in mixed_bfloat16: the run was trained in float32" in caplog.text


def test_a_bfloat16_model_becomes_float32_from_its_own_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The float32 copy is built from the saved model, not from the config: a model given with --model beside
    a config of another network (here 8 base filters instead of 4) still runs, in float32, with its own
    weights; a copy that cannot be made leaves the model as saved, with a warning."""
    import keras
    import numpy as np

    from segkit.models import build_model
    from segkit.predict import models as predict_models

    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(_tiny())
    finally:
        keras.config.set_dtype_policy(old)
    model.save(tmp_path / "model.keras")
    monkeypatch.setenv(hardware.BF16_ENV, "0")
    monkeypatch.setattr(predict_models, "visible_gpus", lambda: 0)
    other = _tiny().model_copy(update={"model": _tiny().model.model_copy(update={"base_filters": 8})})
    loaded = predict_models.load_model(tmp_path / "model.keras", other)
    assert {layer.dtype_policy.name for layer in loaded._flatten_layers()} == {"float32"}
    assert loaded.count_params() == model.count_params()
    for mine, theirs in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    x = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=0.02)

    def broken(config: object) -> object:
        return {"class_name": "NoSuchLayer", "config": {}}

    def unchanged(config: object) -> object:  # a Keras whose config the transform does not recognise
        return config

    for transform in (broken, unchanged):
        monkeypatch.setattr(predict_models, "_float32_config", transform)
        caplog.clear()
        with caplog.at_level("WARNING"):
            kept = predict_models.load_model(tmp_path / "model.keras", other)
        assert kept.get_layer("head_conv").dtype_policy.name == "mixed_bfloat16"
        assert "running it in mixed_bfloat16 as saved" in caplog.text


@pytest.mark.parametrize(("bf16", "amx", "overridden"), [("", "", False), (" ", "", False), ("0", "", True),
                                                         ("", "1", True), ("1", "0", True)])
def test_bf16_overridden_is_either_name_set(cpuinfo: Path, monkeypatch: pytest.MonkeyPatch, bf16: str,
                                            amx: str, overridden: bool) -> None:
    """What the test suite and bench_deploy check before pinning float32: a user's SEGKIT_AMX=1 stays."""
    monkeypatch.setenv(hardware.BF16_ENV, bf16)
    monkeypatch.setenv(hardware.AMX_ENV, amx)
    assert hardware.bf16_overridden() is overridden
