"""One volume per case: ``segkit prepare --series`` on a folder of two real DICOM series (and on a 4D
NIfTI), a 4D NIfTI given to ``segkit infer`` (one named output per phase, as a cine DICOM series), and
localizer images dropped from a real series with a one-line warning.

Real data: the Philips (series 401, 240 x 240 x 4) and Hitachi (series 10, 64 x 64 x 4) MR series of
``../shared/data/dicom`` and a crop of the LA 2018 LGE volume ``la_100``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from segkit.cli.app import app
from segkit.errors import DataError
from segkit.io.volumes import load_volume, save_volume, volume_inputs, volume_refs

pytestmark = pytest.mark.data
runner = CliRunner()
CONFIG = ("name: series\nmodality: mr\nclasses: [{id: 1, name: a, color: [255, 0, 0]}]\n"
          "prepare: {axis: 2, size: [32, 32], split: {train: 1, valid: 0, test: 0}}\n")


def _prepare(src: Path, out: Path, image_glob: str, label_glob: str, *more: str) -> tuple[int, str]:
    config = src.parent / "series.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    res = runner.invoke(app, ["prepare", "nifti", str(src), "--image-glob", image_glob, "--label-glob",
                              label_glob, "--config", str(config), "--workers", "1", "--out", str(out),
                              *more])
    return res.exit_code, " ".join(res.output.split())


def _errors(text: str) -> list[str]:
    return text.split("error: ")[1:]


def test_prepare_on_a_folder_of_two_series_asks_for_series_and_takes_the_one_picked(
    shared_data: Path, tmp_path: Path
) -> None:
    case = tmp_path / "study" / "c1"
    shutil.copytree(shared_data / "dicom/philips/anatomical/001", case / "dicom" / "a")
    shutil.copytree(shared_data / "dicom/hitachi/anatomical/001", case / "dicom" / "b")
    philips = load_volume(shared_data / "dicom/philips/anatomical/001")
    label = (philips.data > np.percentile(philips.data, 70)).astype(np.uint8)
    save_volume(case / "label.nii.gz", label, philips.affine)
    args = (tmp_path / "study", "*/dicom", "*/label.nii.gz")

    code, text = _prepare(*args[:1], tmp_path / "none", *args[1:])
    assert code == 2 and len(_errors(text)) == 1, text
    assert ("dicom: 2 series in one input (s010, s401) of case 'c1'; pick one per case with --series, "
            "e.g. --series 10") in text
    assert not (tmp_path / "none").exists()  # refused before anything is written

    code, text = _prepare(*args[:1], tmp_path / "by_number", *args[1:], "--series", "401")
    assert code == 0 and "1 case(s) prepared" in text, text
    code, text = _prepare(*args[:1], tmp_path / "by_glob", *args[1:], "--series", "s4*")
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "by_glob/train/images").iterdir()) == \
        sorted(p.name for p in (tmp_path / "by_number/train/images").iterdir())
    # the other series is really read: 64 x 64 Hitachi voxels do not fit the 240 x 240 Philips label
    code, text = _prepare(*args[:1], tmp_path / "hitachi", *args[1:], "--series", "10")
    assert code == 2 and "shape" in text, text
    for pattern, found in (("s*", "2 volumes"), ("7", "no volume")):
        code, text = _prepare(*args[:1], tmp_path / "bad", *args[1:], "--series", pattern)
        assert code == 2 and f"--series '{pattern}' matches {found} of case 'c1' (s010, s401)" in text, text


def test_prepare_picks_the_same_series_from_a_label_folder_and_records_both(
    shared_data: Path, tmp_path: Path
) -> None:
    import json

    from segkit.io.dicomwrite import SeriesSpec, write_dicom_series

    case = tmp_path / "study" / "c1"
    for sub, name, number in (("a", "philips", 401), ("b", "hitachi", 10)):
        shutil.copytree(shared_data / f"dicom/{name}/anatomical/001", case / "dicom" / sub)
        vol = load_volume(case / "dicom" / sub)
        label = (vol.data > np.percentile(vol.data, 70)).astype(np.uint8)
        spec = SeriesSpec("MR", 0.0, "LA label", number)
        write_dicom_series(case / "labels" / sub, label, vol.affine, spec)
    args = (tmp_path / "study", "*/dicom", "*/labels")
    code, text = _prepare(args[0], tmp_path / "out", *args[1:], "--series", "401")
    assert code == 0 and "1 case(s) prepared" in text, text
    record = json.loads((tmp_path / "out" / "dataset.json").read_text())["cases"]["c1"]
    assert record["series"] == {"image": {"name": "s401", "number": 401, "description": "", "phase": None},
                                "label": {"name": "s401_LA_label", "number": 401, "description": "LA label",
                                          "phase": None}}
    code, text = _prepare(args[0], tmp_path / "no", *args[1:], "--series", "s401")  # no label is s401
    assert code == 2 and ("labels: --series 's401' matches no volume of case 'c1' (s010_LA_label, "
                          "s401_LA_label)") in text, text


def test_prepare_resamples_a_gantry_tilted_series_only_on_request(shared_data: Path, tmp_path: Path) -> None:
    from segkit.io.volumes import VolumeRef

    case = tmp_path / "study" / "ct1"
    shutil.copytree(shared_data / "dicom/failing/gantrytilting/001", case / "dicom")
    ct = load_volume(VolumeRef(case / "dicom", resample_tilt=True))
    save_volume(case / "label.nii.gz", (ct.data > 200).astype(np.uint8), ct.affine)
    args = (tmp_path / "study", "*/dicom", "*/label.nii.gz")
    code, text = _prepare(args[0], tmp_path / "no", *args[1:])
    assert code == 2 and "gantry tilt" in text and "--resample-tilt" in text, text
    code, text = _prepare(args[0], tmp_path / "yes", *args[1:], "--resample-tilt")
    assert code == 0 and "1 case(s) prepared" in text, text


def _cine_nifti(shared_data: Path, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A two-phase 4D NIfTI from a 24 x 20 x 6 crop of la_100: phase 2 is phase 1 + 5."""
    img = nib.load(str(shared_data / "volumes/la2018_lge_mri/imagesTr/la_100.nii.gz"))
    crop = np.asarray(img.dataobj[80:104, 60:80, 40:46]).astype(np.int16)
    aff = img.affine.copy()
    aff[:3, 3] = img.affine[:3, :3] @ [80, 60, 40] + img.affine[:3, 3]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.stack([crop, crop + 5], axis=-1), aff), str(path))
    return crop, aff


def test_a_4d_nifti_is_one_volume_per_phase_or_refused_naming_the_option(
    shared_data: Path, tmp_path: Path
) -> None:
    path = tmp_path / "cine" / "heart.nii.gz"
    crop, aff = _cine_nifti(shared_data, path)
    with pytest.raises(DataError, match=r"a 4D volume of 2 phases \(shape \(24, 20, 6, 2\)\)") as err:
        load_volume(path)
    assert err.value.hint == ("infer segments each phase (heart_phase01, ...); "
                              "prepare: pick one with --series '*_phase01'")
    refs = volume_refs(path)
    assert [(r.case_id, r.phase) for r in refs] == [("heart_phase01", 1), ("heart_phase02", 2)]
    assert volume_inputs(path.parent) == refs
    one, two = (load_volume(r) for r in refs)
    np.testing.assert_array_equal(one.data, crop)
    np.testing.assert_array_equal(two.data, crop + 5)
    np.testing.assert_allclose(one.affine, aff)
    np.testing.assert_allclose(two.affine, aff)

    save_volume(tmp_path / "cases" / "heart_label.nii.gz", (crop > np.median(crop)).astype(np.uint8), aff)
    shutil.copy(path, tmp_path / "cases" / "heart_image.nii.gz")
    args = (tmp_path / "cases", "*_image.nii.gz", "*_label.nii.gz")
    code, text = _prepare(args[0], tmp_path / "no", *args[1:])
    assert code == 2 and ("heart_image.nii.gz: 2 phases in one input (heart_image_phase01, "
                          "heart_image_phase02) of case 'heart'; pick one per case with --series, "
                          "e.g. --series 'heart_image_phase01'") in text, text
    code, text = _prepare(args[0], tmp_path / "yes", *args[1:], "--series", "*_phase02")
    assert code == 0 and "1 case(s) prepared" in text, text
    from segkit.prepare.manifest import load_manifest
    from segkit.prepare.record import case_records

    record = case_records(load_manifest(tmp_path / "yes"))["heart"]
    assert record.series == {"image": {"name": "heart_image_phase02", "number": None, "description": "",
                                       "phase": 2}, "label": None}
    image, label = record.volume_refs() or ()  # what evaluate reads from the sources: the phase picked
    np.testing.assert_array_equal(load_volume(image).data, crop + 5)


def test_glob_and_label_skipping_match_the_phase_names_of_4d_files(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from segkit.infer.run import select_volumes

    _cine_nifti(shared_data, tmp_path / "in" / "cine.nii.gz")
    shutil.copy(tmp_path / "in" / "cine.nii.gz", tmp_path / "in" / "heart_seg.nii.gz")
    with caplog.at_level(logging.WARNING, logger="segkit.infer.run"):
        keep, skipped = select_volumes(tmp_path / "in", None)
    assert [r.case_id for r in keep] == ["cine_phase01", "cine_phase02"]
    assert skipped == ["heart_seg_phase01", "heart_seg_phase02"]
    assert "skipped 2 label-named file(s): heart_seg_phase01, heart_seg_phase02" in caplog.text
    keep, _ = select_volumes(tmp_path / "in", "*_phase02")
    assert [(r.path.name, r.phase) for r in keep] == [("cine.nii.gz", 2), ("heart_seg.nii.gz", 2)]
    keep, _ = select_volumes(tmp_path / "in", "cine.nii.gz")  # the file name still picks every phase
    assert [r.case_id for r in keep] == ["cine_phase01", "cine_phase02"]


def test_infer_writes_one_named_output_per_phase_of_a_4d_nifti(
    shared_data: Path, tmp_path: Path, repo_root: Path
) -> None:
    import keras

    from segkit.config import load_config
    from segkit.models import build_model

    path = tmp_path / "cine.nii.gz"
    _, aff = _cine_nifti(shared_data, path)
    sets = ["model.num_layers=3", "model.base_filters=4", "data.image_size=[32,32]",
            f"data.dir={tmp_path / 'nodata'}", f"train.run_dir={tmp_path / 'run'}"]
    config = repo_root / "configs" / "demo.yaml"
    keras.utils.set_random_seed(3)
    (tmp_path / "run").mkdir()
    build_model(load_config(config, sets)).save(tmp_path / "run" / "model.keras")
    more = [a for s in sets for a in ("--set", s)]
    res = runner.invoke(app, ["infer", str(config), "--input", str(path), "--output", str(tmp_path / "out"),
                              *more])
    assert res.exit_code == 0, res.output
    segs = sorted(p.name for p in (tmp_path / "out").glob("*_seg.nii.gz"))
    assert segs == ["cine_phase01_seg.nii.gz", "cine_phase02_seg.nii.gz"]
    for name in segs:
        seg = load_volume(tmp_path / "out" / name)
        assert seg.data.shape == (24, 20, 6)
        np.testing.assert_allclose(seg.affine, aff, atol=1e-5)


def _series_with_localizer(shared_data: Path, folder: Path, localizers: int) -> None:
    """The Siemens series (4 slices), and ``localizers`` of its files turned into a coronal localizer of
    the same series (ImageType ... LOCALIZER, other orientation, new instance UID)."""
    folder.mkdir()
    files = sorted((shared_data / "dicom/siemens/anatomical/001").iterdir())
    for i, f in enumerate(files):
        shutil.copy(f, folder / f"IM{i}")
    for k in range(localizers):
        ds = pydicom.dcmread(files[k])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.save_as(folder / f"LOC{k}")


def test_localizer_images_are_dropped_with_one_warning(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _series_with_localizer(shared_data, tmp_path / "with_loc", 1)
    with caplog.at_level(logging.WARNING, logger="segkit.io.dicom"):
        vol = load_volume(tmp_path / "with_loc")
    reference = load_volume(shared_data / "dicom/siemens/anatomical/001")
    np.testing.assert_array_equal(vol.data, reference.data)
    np.testing.assert_array_equal(vol.affine, reference.affine)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["with_loc: 1 localizer/scout image(s) dropped"]
    only = tmp_path / "only_loc"
    only.mkdir()
    for f in (tmp_path / "with_loc").glob("LOC*"):
        shutil.copy(f, only / f.name)
    with pytest.raises(DataError, match="no image series: only localizer images") as err:
        load_volume(only)
    assert Path(err.value.path or "") == only
