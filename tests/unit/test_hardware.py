"""segkit.hardware: CPU detection and the `auto` choices of precision and XLA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segkit import hardware
from segkit.hardware import cpu_has_amx, resolve_jit_compile, resolve_precision

SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu vme avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
EPYC = """processor\t: 0
model name\t: AMD EPYC 7551 32-Core Processor
flags\t\t: fpu vme avx2 fma
"""
# the flag's name inside another word must not count
LOOKALIKE = "model name\t: Other\nflags\t\t: fpu xamx_bf16 amx_bf16x\n"


@pytest.fixture
def fresh_amx() -> Iterator[None]:
    """cpu_has_amx read afresh in the test, and again after it (SEGKIT_AMX as monkeypatch restores it)."""
    cpu_has_amx.cache_clear()
    yield
    cpu_has_amx.cache_clear()


@pytest.fixture
def cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake /proc/cpuinfo, read afresh (no SEGKIT_AMX, the cache cleared before and after)."""
    path = tmp_path / "cpuinfo"
    monkeypatch.setattr(hardware, "CPUINFO", path)
    monkeypatch.delenv(hardware.AMX_ENV, raising=False)
    cpu_has_amx.cache_clear()
    yield path
    cpu_has_amx.cache_clear()


@pytest.mark.parametrize(("text", "amx"),
                         [(SAPPHIRE_RAPIDS, True), (EPYC, False), (LOOKALIKE, False), ("", False)])
def test_amx_is_read_from_the_flags(cpuinfo: Path, text: str, amx: bool) -> None:
    cpuinfo.write_text(text)
    assert cpu_has_amx() is amx


def test_no_cpuinfo_means_no_amx(cpuinfo: Path) -> None:
    assert not cpuinfo.exists()
    assert cpu_has_amx() is False
    assert hardware.cpu_name().endswith("cores)")


def test_cpu_name_reads_the_model_name(cpuinfo: Path) -> None:
    cpuinfo.write_text(EPYC)
    assert hardware.cpu_name().startswith("AMD EPYC 7551 32-Core Processor (")


@pytest.mark.parametrize(("forced", "text", "amx"), [("0", SAPPHIRE_RAPIDS, False), ("1", EPYC, True),
                                                     ("", SAPPHIRE_RAPIDS, True), ("yes", EPYC, False)])
def test_segkit_amx_overrides_the_flags(
    cpuinfo: Path, monkeypatch: pytest.MonkeyPatch, forced: str, text: str, amx: bool
) -> None:
    cpuinfo.write_text(text)
    monkeypatch.setenv(hardware.AMX_ENV, forced)
    assert cpu_has_amx() is amx


@pytest.mark.parametrize(
    ("gpus", "amx", "precision", "xla"),
    [(0, False, "float32", True), (0, True, "mixed_bfloat16", False), (1, False, "mixed_float16", True),
     (2, True, "mixed_float16", True)],
)
def test_auto_choices(gpus: int, amx: bool, precision: str, xla: bool) -> None:
    assert resolve_jit_compile("auto", gpus, amx=amx) is xla
    assert resolve_precision("auto", gpus, xla=xla, amx=amx) == precision


@pytest.mark.parametrize("amx", [False, True])
def test_auto_precision_stays_float32_under_asked_for_xla_on_a_cpu(amx: bool) -> None:
    """XLA does not use the AMX kernels: bfloat16 would change the numbers of a `jit_compile: true` config
    without making it faster."""
    assert resolve_precision("auto", 0, xla=True, amx=amx) == "float32"
    assert resolve_precision("auto", 1, xla=True, amx=amx) == "mixed_float16"


@pytest.mark.parametrize("amx", [False, True])
def test_explicit_values_are_kept(amx: bool) -> None:
    for p in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(p, 0, amx=amx) == p
        assert resolve_precision(p, 1, amx=amx) == p
    assert resolve_jit_compile(True, 0, amx=amx) is True
    assert resolve_jit_compile(False, 1, amx=amx) is False


def test_the_suite_runs_as_without_amx(fresh_amx: None) -> None:
    """conftest sets SEGKIT_AMX=0, so `auto` trains float32 here whatever the CPU."""
    assert cpu_has_amx() is False
    assert resolve_jit_compile("auto", 0) is True
    assert resolve_precision("auto", 0) == "float32"


@pytest.mark.parametrize(("amx", "runs_in"), [(False, "float32"), (True, "mixed_bfloat16")])
def test_a_bfloat16_model_runs_in_float32_where_bfloat16_is_emulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_amx: None, amx: bool, runs_in: str
) -> None:
    """`auto` at prediction keeps a model's own policy, except bfloat16 on a CPU without AMX (or GPU); an
    asked-for policy always wins. XLA follows train.jit_compile auto the same way."""
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
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(cfg)
    finally:
        keras.config.set_dtype_policy(old)
    path = tmp_path / "model.keras"
    model.save(path)
    monkeypatch.setenv(hardware.AMX_ENV, "1" if amx else "0")
    monkeypatch.setattr(predict_models, "visible_gpus", lambda: 0)
    x = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    for precision in (None, "auto"):
        loaded = predict_models.load_model(path, cfg, precision)
        assert loaded.get_layer("head_conv").dtype_policy.name == runs_in
        np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=0.02)
    for asked in ("mixed_bfloat16", "float32"):
        assert predict_models.load_model(path, cfg, asked).get_layer("head_conv").dtype_policy.name == asked
    auto = cfg.model_copy(update={"train": cfg.train.model_copy(update={"jit_compile": "auto"})})
    compiled = predict_models.load_model(path, auto)
    assert compiled.compiled is (not amx)  # compiled only to switch XLA on
    if compiled.compiled:
        assert compiled.jit_compile is True
