"""DICOM series in (segkit.io.dicom through segkit.io.volumes): the real series of ../shared/data/dicom
match their reference NIfTI; every series that is not one valid volume is refused with one line naming the
folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from segkit.errors import DataError
from segkit.io.volumes import load_volume

VALID = [
    "siemens/anatomical/001", "ge/anatomical/001", "philips/anatomical/001", "hitachi/anatomical/001",
    "generic/anatomical/001", "generic/anatomical/002_non_isotropic", "philips_enhanced/anatomical/001",
    "siemens_multiframe/anatomical/001", "hyperfine/anatomical/001", "generic/compressed/001",
    "generic/compressed_j2k/001", "generic/compressed_jpeg/001", "generic/compressed_jpegls/001",
    "generic/compressed_rle/001",
]
REFUSED = {
    "failing/gantrytilting/001": "gantry tilt",
    "failing/notavolume/001": "4 images at 1 slice position(s)",
    "failing/slicecount/001": "2 slice(s); a volume needs at least 3",
    "failing/sliceincrement/001": "uneven spacing between slices (5.000 to 10.000 mm",
    "failing/sliceincrement/002": "uneven spacing between slices",
    "failing/sliceorientation/001": "slices with different orientations",
    "ge/anatomical/001_single_slice": "1 slice(s); a volume needs at least 3",
    "generic/rgb/001": "colour pixel data (RGB)",
}


def _canonical(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, dtype=np.float64), affine))


@pytest.mark.parametrize("series", VALID)
def test_valid_series_match_their_reference_in_voxels_and_world_affine(
    shared_data: Path, series: str
) -> None:
    folder = shared_data / "dicom" / series
    ref_path = folder.parent / f"{folder.name}_ground_truth.nii.gz"
    if not ref_path.exists():  # generic/compressed: the same series as compressed_j2k
        ref_path = shared_data / "dicom/generic/compressed_j2k/001_ground_truth.nii.gz"
    vol = load_volume(folder)
    assert vol.format == "dicom" and vol.data.shape[2] >= 4
    ref = nib.load(str(ref_path))
    ref_data = np.asarray(ref.dataobj, dtype=np.float64)
    ref_data = ref_data.reshape(ref_data.shape[:3])  # philips_enhanced's reference has a 4th axis of 1
    a, b = _canonical(vol.data, vol.affine), _canonical(ref_data, ref.affine)
    np.testing.assert_allclose(a.get_fdata(), b.get_fdata(), rtol=1e-4, atol=1e-4 * np.abs(ref_data).max())
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)


@pytest.mark.parametrize("series", sorted(REFUSED))
def test_series_that_are_not_one_volume_are_refused_naming_the_folder(shared_data: Path, series: str) -> None:
    folder = shared_data / "dicom" / series
    with pytest.raises(DataError) as info:
        load_volume(folder)
    assert REFUSED[series] in info.value.message
    assert info.value.path == folder and info.value.hint and "\n" not in info.value.one_line()


def _copy(shared_data: Path, tmp_path: Path, series: str = "siemens/anatomical/001") -> Path:
    dst = tmp_path / "in"
    shutil.copytree(shared_data / "dicom" / series, dst)
    return dst


def test_nested_folders_without_suffix_read_as_one_series(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "dicom/siemens/anatomical/001"
    for i, f in enumerate(sorted(src.iterdir())):
        (tmp_path / f"sub{i % 2}").mkdir(exist_ok=True)
        shutil.copy(f, tmp_path / f"sub{i % 2}" / f"IMG{i}")
    np.testing.assert_array_equal(load_volume(tmp_path).data, load_volume(src).data)


def test_non_image_objects_truncated_files_and_missing_decoders_are_refused(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(shared_data, tmp_path)
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    for tag in ("PixelData", "Rows", "Columns"):
        delattr(ds, tag)
    ds.Modality = "RTSTRUCT"
    only = tmp_path / "rt"
    only.mkdir()
    ds.save_as(only / "rt.dcm")
    with pytest.raises(DataError, match="RTSTRUCT.*convert its contours to a label volume"):
        load_volume(only)
    first.write_bytes(first.read_bytes()[:3000])  # the preamble survives, the pixels do not
    with pytest.raises(DataError, match="unreadable DICOM file|cannot decode the pixel data"):
        load_volume(folder)
    import pydicom.pixels.decoders.base as base

    def no_decoder(uid: object) -> object:
        raise NotImplementedError

    monkeypatch.setattr(base, "get_decoder", no_decoder)
    with pytest.raises(DataError, match=r"no decoder installed for the transfer syntax JPEG-LS"):
        load_volume(shared_data / "dicom/generic/compressed_jpegls/001")


def test_a_folder_with_two_series_names_both(shared_data: Path) -> None:
    with pytest.raises(DataError, match=r"2 series in one input \(s002, s003\)"):
        load_volume(shared_data / "dicom/failing/sliceincrement")


def test_ct_round_trip_through_a_written_dicom_ct_series_gives_the_same_hu(
    shared_data: Path, tmp_path: Path
) -> None:
    from segkit.io.dicomwrite import SeriesSpec, write_dicom_series

    src = load_volume(shared_data / "volumes/totalseg_aorta_ct/abdomen_ct_sm_image.nii.gz")
    assert src.data.min() == -1100  # below the intercept: stored as signed 16 bit
    files = write_dicom_series(tmp_path / "ct", src.data, src.affine, SeriesSpec("CT", -1024.0))
    first = pydicom.dcmread(files[0])
    assert len(files) == 30 and first.RescaleIntercept == -1024 and first.Modality == "CT"
    assert str(first.PatientName) == "anonymous"
    back = load_volume(tmp_path / "ct")
    np.testing.assert_array_equal(back.data, src.data)
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-3)


def _two_phases(shared_data: Path, folder: Path, trigger: bool) -> None:
    """The siemens series twice: phase 1 as is, phase 2 with new instance UIDs and pixels + 7."""
    folder.mkdir()
    for i, f in enumerate(sorted((shared_data / "dicom/siemens/anatomical/001").iterdir())):
        for phase in (0, 1):
            ds = pydicom.dcmread(f)
            if phase:
                ds.SOPInstanceUID = pydicom.uid.generate_uid()
                ds.PixelData = (ds.pixel_array + 7).astype(ds.pixel_array.dtype).tobytes()
            if trigger:
                ds.TriggerTime = 400.0 * phase
            ds.save_as(folder / f"p{phase}_{i}.dcm")


def test_a_two_phase_cine_series_gives_one_named_volume_per_phase(shared_data: Path, tmp_path: Path) -> None:
    from segkit.io.volumes import volume_inputs

    _two_phases(shared_data, tmp_path / "cine", trigger=True)
    with pytest.raises(DataError, match=r"2 series in one input \(a cine or multi-phase series.*"
                                        r"s004_phase01, s004_phase02\)"):
        load_volume(tmp_path / "cine")
    refs = volume_inputs(tmp_path / "cine")
    assert [r.case_id for r in refs] == ["s004_phase01", "s004_phase02"]
    one, two = (load_volume(r) for r in refs)
    np.testing.assert_array_equal(two.data, one.data + 7)
    np.testing.assert_array_equal(one.affine, two.affine)
    _two_phases(shared_data, tmp_path / "untimed", trigger=False)  # no temporal key: refused
    with pytest.raises(DataError, match=r"8 images at 4 slice position\(s\)"):
        load_volume(tmp_path / "untimed")


def _tilted(shared_data: Path, folder: Path, rows_per_slice: int) -> None:
    """The Siemens series with gantry tilt: slice k (along the normal) moved ``rows_per_slice`` x k pixel rows
    down its columns, its pixels moved up as much (zeros enter at the bottom), so the world content stays."""
    folder.mkdir()
    files = sorted((shared_data / "dicom/siemens/anatomical/001").iterdir())
    sets = [pydicom.dcmread(f) for f in files]
    ori = np.asarray(sets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(ori[:3], ori[3:])
    dist = [float(np.asarray(ds.ImagePositionPatient, dtype=float) @ normal) for ds in sets]
    step = (max(dist) - min(dist)) / (len(dist) - 1)
    for i, ds in enumerate(sets):
        k = round((dist[i] - min(dist)) / step)
        n = rows_per_slice * k
        ds.ImagePositionPatient = list(np.asarray(ds.ImagePositionPatient, dtype=float)
                                       + n * float(ds.PixelSpacing[0]) * ori[3:])
        pixels = np.zeros_like(ds.pixel_array)
        pixels[: pixels.shape[0] - n] = ds.pixel_array[n:]
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"IM{i}")


def test_gantry_tilt_is_resampled_on_request_onto_the_untilted_grid(
    shared_data: Path, tmp_path: Path
) -> None:
    from segkit.io.volumes import VolumeRef, read_header

    _tilted(shared_data, tmp_path / "tilt", rows_per_slice=2)
    with pytest.raises(DataError, match="gantry tilt") as err:
        load_volume(tmp_path / "tilt")
    assert "--resample-tilt" in (err.value.hint or "")
    vol = load_volume(VolumeRef(tmp_path / "tilt", resample_tilt=True))
    reference = load_volume(shared_data / "dicom/siemens/anatomical/001")
    assert vol.data.dtype == np.float32 and vol.data.shape == reference.data.shape
    np.testing.assert_allclose(vol.affine, reference.affine, atol=1e-4)
    # integer shifts: linear interpolation is exact; the last slice lost its 6 rows at the edge
    np.testing.assert_array_equal(vol.data[:, 6:, :], reference.data[:, 6:, :])
    shape, affine = read_header(VolumeRef(tmp_path / "tilt", resample_tilt=True))  # headers only
    assert shape == vol.data.shape
    np.testing.assert_allclose(affine, vol.affine, atol=1e-9)
    # the real tilted CT (dicom2nifti's failing/gantrytilting): resampled, its grid no longer sheared, the
    # first slice (no drift) as stored, in HU
    folder = shared_data / "dicom/failing/gantrytilting/001"
    ct = load_volume(VolumeRef(folder, resample_tilt=True))
    axes = ct.affine[:3, :3] / np.linalg.norm(ct.affine[:3, :3], axis=0)
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-6)
    first = pydicom.dcmread(folder / "IM-0001-0001.dcm")
    assert ct.data.shape == (512, 512, 4) and int(first.RescaleIntercept) == -1024
    np.testing.assert_array_equal(ct.data[:, :, 0], first.pixel_array.T.astype(np.float32) - 1024)
