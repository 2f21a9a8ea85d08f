"""``segkit plan``'s command line: its help, and bad input as one line with exit code 2 and nothing written
(the plan itself is tested through the library, tests/unit/test_plan.py and tests/data/test_plan_real.py)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from segkit.cli.app import app

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


def test_one_labelled_case_is_refused_before_anything_is_written(shared_data: Path, tmp_path: Path) -> None:
    """The aorta CT set: with the aorta globs it holds one labelled volume; by default only the abdomen pair
    pairs and the aorta image is left out. Both: exit 2, one line, nothing written; the hint asks for a case,
    and for globs where an image went unpaired."""
    data = shared_data / "volumes" / "totalseg_aorta_ct"
    out = tmp_path / "plan"
    res = runner.invoke(app, ["plan", str(data), "--image-glob", "aorta*_image.nii.gz", "--label-glob",
                              "aorta*_structures_label.nii.gz", "--out", str(out)])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "1 labelled case (_ct): segkit train needs at least 2" in lines[0]
    assert lines[0].endswith("(hint: add a labelled case)")
    res = runner.invoke(app, ["plan", str(data), "--out", str(out)])
    assert res.exit_code == 2 and "1 labelled case (abdomen_ct_sm)" in res.stderr
    text = " ".join(res.stderr.split())
    assert "pair the files left out (aorta_ct_image.nii.gz: no label file for case 'aorta_ct')" in text
    assert not out.exists()
