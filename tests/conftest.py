"""Shared fixtures. Real data lives in ../shared/data (CI always has it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from segkit.hardware import BF16_ENV, bf16_overridden

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# precision / XLA `auto` choose as on a CPU without native bfloat16, so the suite trains alike (float32) on
# every CPU, and CLI subprocesses inherit it; tests/unit/test_hardware.py covers the bfloat16 choices.
if not bf16_overridden():  # unless the user asked for a precision
    os.environ[BF16_ENV] = "0"
# pytest-xdist's worker processes inherit COLUMNS=80 / LINES=24, which rich reads once, when segkit's module
# consoles are made; without them the width follows each CliRunner call's env, as in a plain pytest run.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def pytest_configure(config: pytest.Config) -> None:
    try:
        from hypothesis import HealthCheck, settings

        settings.register_profile(
            "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        )
        settings.load_profile("ci")
    except ImportError:  # hypothesis is a test dependency; without it the property tests fail to import
        pass


# `make test` runs the suite on 2 processes (pytest-xdist, `-n 2`): TensorFlow keeps about one core busy per
# process, so a second process halves the wall time on the 2-core machines. Each test module goes to one
# process as a whole (its module-scoped fixtures, e.g. a trained tiny run, are built once); the modules named
# here hold independent tests that are spread one by one. A scheduler of our own, because xdist's
# `--dist loadgroup` silently stops grouping on pytest 9.2 (pytest-dev/pytest-xdist#1386).
SPREAD_MODULES = {"test_models", "test_export_zoo"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    if config.getoption("dist") != "load":  # an explicit --dist other than xdist's default wins
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if Path(path).stem in SPREAD_MODULES else path

    return ByModule(config, log)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data. Missing data is a failure (CI always has it; a user's clone must have it
    too)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}: "
                    "put the team's shared/ folder beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


class RecordingProgress:
    """A ``segkit.progress.Progress`` that keeps every call, to check what a library function reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []  # ("start", total, description) / ("advance", n, "")

    def start(self, total: int, description: str = "") -> None:
        self.calls.append(("start", total, description))

    def advance(self, n: int = 1) -> None:
        assert n > 0, f"advance({n})"
        self.calls.append(("advance", n, ""))

    @property
    def tasks(self) -> list[tuple[str, int, int]]:
        """(description, total, sum of its advances) per ``start``; an advance before any start fails."""
        out: list[list] = []
        for kind, n, description in self.calls:
            if kind == "start":
                out.append([description, n, 0])
            else:
                assert out, "advance() before start()"
                out[-1][2] += n
        return [(d, t, done) for d, t, done in out]


def _constant_model(path: Path, channels: int, bias: list[float], weight: list[float] | None = None) -> Path:
    """Save a 1x1-conv softmax model whose output is ``softmax(bias)`` at every pixel (argmax = one class),
    or with ``weight`` ``softmax(weight * x + bias)`` (x: the pixel's first channel, 0..1)."""
    import keras

    inp = keras.Input((None, None, channels))
    conv = keras.layers.Conv2D(len(bias), 1, activation="softmax")
    model = keras.Model(inp, conv(inp))
    kernel = np.zeros((1, 1, channels, len(bias)), np.float32)
    if weight is not None:
        kernel[0, 0, 0] = weight
    conv.set_weights([kernel, np.asarray(bias, np.float32)])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def constant_model() -> Callable[..., Path]:
    """``constant_model(path, channels, bias, weight=None)``: save a 1x1-conv softmax model predicting
    ``softmax(bias)`` at every pixel (``softmax(weight * x + bias)`` with ``weight``), and return ``path``."""
    return _constant_model


def _group_norm_reference(
    x: np.ndarray, groups: int, gamma: np.ndarray, beta: np.ndarray, epsilon: float = 1e-3
) -> np.ndarray:
    """Group normalization of channels-last ``x`` (B, H, W, C) in float64: each image's ``groups`` groups of
    channels normalised over H x W and the group's channels, then scaled by ``gamma`` and offset by ``beta``
    (Keras' default epsilon 1e-3; ``groups = C`` is instance normalization)."""
    b, h, w, c = x.shape
    r = x.astype(np.float64).reshape(b, h, w, groups, c // groups)
    mean, var = r.mean((1, 2, 4), keepdims=True), r.var((1, 2, 4), keepdims=True)
    return ((r - mean) / np.sqrt(var + epsilon)).reshape(x.shape) * gamma + beta


@pytest.fixture(scope="session")
def group_norm_reference() -> Callable[..., np.ndarray]:
    """``group_norm_reference(x, groups, gamma, beta, epsilon=1e-3)``: a float64 group normalization to
    check Keras' and the exported graphs' against."""
    return _group_norm_reference


@pytest.fixture
def recording_progress() -> type[RecordingProgress]:
    """The class ``RecordingProgress`` (call it for each recorder a test needs)."""
    return RecordingProgress


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201 - yields a factory
    """``make(size, readonly=False) -> Path``: a fresh tmpfs of ``size`` (e.g. ``"300K"``) mounted under
    tmp_path, to test full-disk and read-only faults for real. Needs root (CI runs as root); elsewhere the
    test is skipped with that reason."""
    import subprocess

    mounts: list[Path] = []

    def make(size: str, readonly: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
        d = tmp_path / f"fs{len(mounts)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
