"""``scripts/gpu_check.sh`` where there is no GPU: its options, the one-line refusal, and the images/s figure
of its helper. (``--cpu-smoke`` runs the whole script at toy size but takes minutes here, so it is run by
hand, not in the suite.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
_spec = importlib.util.spec_from_file_location("gpu_check_train", REPO / "scripts" / "gpu_check_train.py")
assert _spec is not None and _spec.loader is not None
gpu_check_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check_train)


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NVIDIA_SMI": str(tmp_path / "no-nvidia-smi")}  # no GPU, also on a GPU machine
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60,
                          cwd=tmp_path)


def test_without_a_gpu_it_says_so_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    res = _run("--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [
        "gpu_check: no GPU on this machine (nvidia-smi lists none); nothing to measure (--cpu-smoke checks"
        " the script at toy size on the CPU)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "gpu_check: unknown option '--bogus' (see --help)"),
    (["--la-minutes", "4min"], "gpu_check: minutes must be a number, got '4min'"),
    (["--out"], "--out needs a folder"),
])
def test_bad_options_are_refused_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    res = _run(*args, tmp_path=tmp_path)
    assert res.returncode != 0 and res.stderr.strip().splitlines()[-1].endswith(message)


def test_help_lists_the_options(tmp_path: Path) -> None:
    res = _run("--help", tmp_path=tmp_path)
    assert res.returncode == 0
    assert res.stdout.startswith("Usage: bash scripts/gpu_check.sh")
    for option in ("--out DIR", "--demo-minutes M", "--la-minutes M", "--cpu-smoke"):
        assert option in res.stdout


def test_images_per_second_is_the_median_over_epochs_without_each_epochs_first_step() -> None:
    # (epoch, step, elapsed s): epoch 1 steps 1..5 in 2 s -> 4 x 8 / 2 = 16/s; epoch 2 in 1 s -> 32/s; epoch 3
    # has one batch event (no interval) and is left out
    batches = [(1, 1, 10.0), (1, 3, 11.0), (1, 5, 12.0), (2, 1, 20.0), (2, 5, 21.0), (3, 1, 30.0)]
    assert gpu_check_train.steady_images_per_s(batches, 8) == pytest.approx(24.0)
    assert gpu_check_train.steady_images_per_s([(1, 1, 5.0)], 8) is None


def test_an_output_folder_that_is_not_its_own_is_never_wiped(tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"  # a GPU listed, so the script gets as far as its output folder
    fake.write_text('#!/bin/sh\necho "GPU 0: Fake GPU (UUID: GPU-0)"\n')
    fake.chmod(0o755)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    res = subprocess.run(["bash", str(SCRIPT), "--out", str(mine)], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "NVIDIA_SMI": str(fake)})
    assert res.returncode == 2 and res.stderr.splitlines() == [
        f"gpu_check: {mine} is not empty and holds no earlier gpu_check output; choose another --out"]
    assert (mine / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("kind", ["file", "link", "link/"])
def test_an_output_that_is_a_file_or_a_symbolic_link_is_refused_and_kept(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "earlier"  # an earlier gpu_check output: replaced when named itself, not via a link
    target.mkdir()
    (target / "card.txt").write_text("1 x Fake GPU")
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("keep")
    else:
        out.symlink_to(target)
    res = _run("--out", str(out) + ("/" if kind == "link/" else ""), tmp_path=tmp_path)
    problem = "exists and is not a folder; choose another --out" if kind == "file" else (
        "is a symbolic link; give the folder itself")
    assert res.returncode == 2 and res.stderr.splitlines() == [f"gpu_check: --out {out} {problem}"]
    assert (out.read_text() == "keep") if kind == "file" else out.is_symlink()
    assert (target / "card.txt").read_text() == "1 x Fake GPU"
