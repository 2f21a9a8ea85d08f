"""`segkit infer` on DICOM: a series folder, a folder of several series (one output each, named by series),
DICOM-SEG output equal to the NIfTI output and read by `segkit evaluate --predictions`, refusals (exit 2,
one line, nothing written), and label-named files skipped unless --glob. A tiny untrained model is enough:
its labels are deterministic."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from segkit.cli.app import app
from segkit.config import load_config
from segkit.io.volumes import load_volume

runner = CliRunner()
# no XLA compilation per command (demo.yaml turns it on; the README quick start infers with it)
TINY = ["model.num_layers=3", "model.base_filters=4", "data.image_size=[32,32]", "infer.batch_size=16",
        "train.jit_compile=false"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, repo_root: Path, shared_data: Path) -> dict[str, Path]:
    import keras

    from segkit.models import build_model

    root = tmp_path_factory.mktemp("dcminf")
    run = root / "run"
    config = repo_root / "configs" / "demo.yaml"
    sets = [*TINY, f"data.dir={root / 'nodata'}", f"train.run_dir={run}"]
    keras.utils.set_random_seed(3)
    run.mkdir()
    build_model(load_config(config, sets)).save(run / "model.keras")
    series = root / "study"  # two series in nested folders, file names without a suffix
    for name in ("hitachi/anatomical/001", "generic/anatomical/002_non_isotropic"):
        dst = series / name.split("/")[0] / "sub"
        dst.mkdir(parents=True)
        for i, f in enumerate(sorted((shared_data / "dicom" / name).iterdir())):
            shutil.copy(f, dst / f"IMG{i}")
    return {"root": root, "config": config, "study": series, "data": shared_data / "dicom"}


def _args(setup: dict[str, Path], *more: str) -> list[str]:
    sets: list[str] = []
    for s in (*TINY, f"data.dir={setup['root'] / 'nodata'}", f"train.run_dir={setup['root'] / 'run'}"):
        sets += ["--set", s]
    return ["infer", str(setup["config"]), *more, *sets]


def test_series_folder_to_nifti_and_dicom_seg_with_equal_labels(setup: dict[str, Path]) -> None:
    src = setup["data"] / "hitachi/anatomical/001"
    out = setup["root"] / "one"
    for fmt in ("nifti", "dicom-seg"):
        res = runner.invoke(app, _args(setup, "--input", str(src), "--output", str(out / fmt),
                                       "--output-format", fmt))
        assert res.exit_code == 0, res.output
    nifti, seg = load_volume(out / "nifti/001_seg.nii.gz"), load_volume(out / "dicom-seg/001_seg.dcm")
    assert seg.format == "dicom-seg" and nifti.data.shape == (64, 64, 4)
    np.testing.assert_array_equal(seg.data, nifti.data)
    np.testing.assert_allclose(seg.affine, nifti.affine, atol=1e-3)
    np.testing.assert_allclose(nifti.affine, load_volume(src).affine, atol=1e-6)
    # segkit evaluate --predictions reads the DICOM-SEG and scores it against the NIfTI (identical: Dice 1)
    preds, refs = setup["root"] / "preds", setup["root"] / "refs"
    preds.mkdir()
    refs.mkdir()
    shutil.copy(out / "dicom-seg/001_seg.dcm", preds / "001_seg.dcm")
    labels = nifti.data.copy()
    labels[:8, :8, 0] = 1  # at least one foreground voxel in the reference
    nib.save(nib.Nifti1Image(labels, nifti.affine), str(refs / "001_label.nii.gz"))
    shutil.copy(refs / "001_label.nii.gz", preds / "x.tmp")  # not a volume: ignored
    res = runner.invoke(app, ["evaluate", "--predictions", str(preds), "--reference", str(refs),
                              "--out", str(setup["root"] / "ev")])
    assert res.exit_code == 0, res.output


def test_folder_with_two_series_gives_one_named_output_each(setup: dict[str, Path]) -> None:
    out = setup["root"] / "two"
    res = runner.invoke(app, _args(setup, "--input", str(setup["study"]), "--output", str(out)))
    assert res.exit_code == 0, res.output
    segs = sorted(p.name for p in out.glob("*_seg.nii.gz"))
    assert segs == ["s010_seg.nii.gz", "s201_seg.nii.gz"]
    assert nib.load(str(out / "s010_seg.nii.gz")).shape == (64, 64, 4)  # hitachi: series number 10
    assert nib.load(str(out / "s201_seg.nii.gz")).shape == (64, 28, 4)  # generic 002: series number 201


@pytest.mark.parametrize("series,reason", [
    ("failing/sliceincrement/001", "uneven spacing between slices"),
    ("generic/rgb/001", "colour pixel data"),
    ("failing/gantrytilting/001", "gantry tilt"),
])
def test_refused_series_exit_2_with_one_line_and_write_nothing(
    setup: dict[str, Path], series: str, reason: str
) -> None:
    out = setup["root"] / "bad"
    res = runner.invoke(app, _args(setup, "--input", str(setup["data"] / series), "--output", str(out)))
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and reason in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_dicom_seg_needs_a_dicom_input_and_label_files_are_skipped(setup: dict[str, Path]) -> None:
    folder = setup["root"] / "acdc"
    folder.mkdir()
    img = nib.Nifti1Image(np.zeros((16, 16, 3), np.int16), np.eye(4))
    for name in ("p1_image.nii.gz", "p1_label.nii.gz", "p1_seg.nii.gz"):
        nib.save(img, str(folder / name))
    res = runner.invoke(app, _args(setup, "--input", str(folder), "--output-format", "dicom-seg"))
    assert res.exit_code == 2 and "dicom-seg needs a DICOM series" in res.stderr
    out = setup["root"] / "acdc_out"
    res = runner.invoke(app, _args(setup, "--input", str(folder), "--output", str(out)))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["p1_image_seg.nii.gz"]
    assert "skipped 2 label-named file(s): p1_label.nii.gz, p1_seg.nii.gz" in res.output
    out2 = setup["root"] / "acdc_glob"
    res = runner.invoke(app, _args(setup, "--input", str(folder), "--output", str(out2),
                                   "--glob", "*_label*"))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out2.glob("*.nii.gz")) == ["p1_label_seg.nii.gz"]


def test_prepare_reads_dicom_series_folders_and_names_several_series(
    setup: dict[str, Path], shared_data: Path
) -> None:
    from segkit.io.dicomwrite import SeriesSpec, write_dicom_series
    from segkit.io.volumes import save_volume

    la = shared_data / "volumes/la2018_lge_mri"
    cases = setup["root"] / "cases"
    for c in ("la_100", "la_101", "la_102"):
        img, lbl = nib.load(str(la / f"imagesTr/{c}.nii.gz")), nib.load(str(la / f"labelsTr/{c}.nii.gz"))
        aff = img.affine @ np.diag([4, 4, 8, 1.0])
        write_dicom_series(cases / c / "image", img.dataobj.get_unscaled()[::4, ::4, ::8], aff,
                           SeriesSpec("MR", 0.0))
        save_volume(cases / c / "label.nii.gz", np.asarray(lbl.dataobj)[::4, ::4, ::8], aff)
    config = setup["root"] / "la.yaml"
    config.write_text("name: la-dicom\nmodality: mr\n"
                      "classes: [{id: 1, name: left_atrium, color: [255, 0, 0]}]\n"
                      "prepare: {axis: 2, size: [32, 32]}\ndata: {image_size: [32, 32], channels: 1}\n")
    args = ["prepare", "nifti", str(cases), "--image-glob", "*/image", "--label-glob", "*/label.nii.gz",
            "--config", str(config), "--workers", "1"]
    res = runner.invoke(app, [*args, "--out", str(setup["root"] / "prepared")])
    assert res.exit_code == 0, res.output
    assert "3 case(s) prepared" in res.output
    shutil.copytree(setup["data"] / "hitachi/anatomical/001", cases / "la_101" / "image" / "extra")
    res = runner.invoke(app, [*args, "--out", str(setup["root"] / "prepared2")])
    assert res.exit_code != 0 and "2 series in one input (s001_segkit, s010)" in " ".join(res.output.split())


def test_resample_tilt_segments_a_gantry_tilted_ct_on_an_untilted_grid(setup: dict[str, Path]) -> None:
    src = setup["data"] / "failing/gantrytilting/001"
    out = setup["root"] / "tilt"
    res = runner.invoke(app, _args(setup, "--input", str(src), "--output", str(out), "--resample-tilt"))
    assert res.exit_code == 0, res.output
    seg = load_volume(out / "001_seg.nii.gz")
    assert seg.data.shape == (512, 512, 4)
    axes = seg.affine[:3, :3] / np.linalg.norm(seg.affine[:3, :3], axis=0)
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-5)  # the tilted input's grid is sheared


def test_dicom_seg_with_resample_tilt_is_refused_before_inference(setup: dict[str, Path]) -> None:
    """A DICOM-SEG references the source's slices, not the resampled grid: the combination is refused up
    front (exit 2, one line, nothing written) on the real tilted CT, instead of failing after inference."""
    src = setup["data"] / "failing/gantrytilting/001"
    out = setup["root"] / "tilt-seg"
    res = runner.invoke(app, _args(setup, "--input", str(src), "--output", str(out), "--resample-tilt",
                                   "--output-format", "dicom-seg"))
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "dicom-seg cannot be written with --resample-tilt" in lines[0]
    assert lines[0].endswith("(hint: choose nifti, nrrd, mha or seg.nrrd for a resampled series)")
    assert not out.exists()
