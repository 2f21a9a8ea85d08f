"""``segkit plan``'s command line: its help, and bad input as one line with exit code 2 and nothing written
(the plan itself is tested through the library, tests/unit/test_plan.py and tests/data/test_plan_real.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from segkit.cli.app import app
from segkit.config import load_config

runner = CliRunner()


def test_help_names_the_budget_and_the_outputs() -> None:
    res = runner.invoke(app, ["plan", "--help"])
    assert res.exit_code == 0
    assert "--budget" in res.output and "fingerprint.json" in res.output and "--preset-like" in res.output


def test_a_folder_without_pairs_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no volumes here", encoding="utf-8")
    res = runner.invoke(app, ["plan", str(tmp_path), "--out", str(tmp_path / "plan")])
    assert res.exit_code == 2
    assert "no known dataset layout" in res.output and "--image-glob" in res.output
    assert not (tmp_path / "plan").exists()
    res = runner.invoke(app, ["plan", str(tmp_path), "--image-glob", "*_image.nii.gz"])
    assert res.exit_code == 2 and "give both --image-glob and --label-glob" in res.output


def test_the_aorta_ct_volume_is_planned_as_blocks_and_prepares(shared_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The aorta CT set holds one labelled volume (true / false lumen): the plan cuts it into 5 blocks of its
    164 axial slices and says in its header that the scores are within one patient; the printed prepare
    command then writes 5 cases, 3 to train, 1 to validate, 1 to test, with no class missing from training."""
    monkeypatch.chdir(tmp_path)
    data = shared_data / "volumes" / "totalseg_aorta_ct"
    res = runner.invoke(app, ["plan", str(data), "--image-glob", "*_ct_image.nii.gz", "--label-glob",
                              "*_ct_lumen_label.nii.gz", "--preset-like", "hocm", "--name", "aorta",
                              "--out", "plan"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "plan" / "config.yaml").read_text()
    assert "(1 case);" in text and "One labelled volume: cut into 5 blocks of slices (prepare.slabs)" in text
    cfg = load_config(tmp_path / "plan" / "config.yaml")
    assert (cfg.prepare.slabs, cfg.prepare.slab_gap_mm) == (5, 10.0)
    # its box is 21 % of the small field of view, but a cascade's crop would cover 62 % of the slice
    assert not cfg.cascade.enabled and "would cover 62% of the slice (>= 40%)" in text
    assert (cfg.prepare.split.train, cfg.prepare.split.valid, cfg.prepare.split.test) == (3, 1, 1)
    command = text.split("# Prepare: ", 1)[1].splitlines()[0]
    res = runner.invoke(app, shlex.split(command)[1:])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output
    splits = json.loads((tmp_path / "data" / "aorta" / "splits.json").read_text())  # the (fine) dataset
    cases = sorted(splits["train"] + splits["valid"] + splits["test"])
    assert cases == [f"aorta_slab{k}" for k in range(1, 6)]
    assert (len(splits["train"]), len(splits["valid"]), len(splits["test"])) == (3, 1, 1)


def test_a_volume_too_short_for_blocks_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = tmp_path / "raw"
    data.mkdir()
    label = np.zeros((8, 8, 20), np.uint8)
    label[2:5, 2:5, :] = 1
    nib.save(nib.Nifti1Image(label * 1.0, np.eye(4)), data / "a_image.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), data / "a_label.nii.gz")
    res = runner.invoke(app, ["plan", str(data), "--out", str(tmp_path / "plan")])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]  # after the fingerprint's bar
    assert len(lines) == 1
    assert "a_image.nii.gz: 1 labelled case (a) of 20 slices along axis 2: too few" in lines[0]
    assert lines[0].endswith("(hint: add a labelled case)")
    assert not (tmp_path / "plan").exists()
