"""Shared fixtures. Real data lives in ../shared/data (CI always has it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data. Missing data is a failure (CI always has it; a user's clone must have it too)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}: put the team's shared/ folder beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201 - yields a factory
    """``make(size, readonly=False) -> Path``: a fresh tmpfs of ``size`` (e.g. ``"300K"``) mounted under tmp_path,
    to test full-disk and read-only faults for real. Needs root (CI runs as root); elsewhere the test is skipped
    with that reason."""
    import subprocess

    mounts: list[Path] = []

    def make(size: str, readonly: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
        d = tmp_path / f"fs{len(mounts)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
