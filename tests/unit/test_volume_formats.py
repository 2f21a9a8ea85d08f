"""segkit.io.volumes as the one owner of volumes: every format reads back what was written (real ACDC volume),
the sidecar geometry rule of NumPy/HDF5, and which paths count as volumes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.io.volumes import CaseKind, is_volume, load_volume, save_volume, volume_format, volume_suffix

ACDC = "volumes/acdc_cine_mri/patient002_frame01"


@pytest.fixture(scope="module")
def acdc(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, label, affine) of a real ACDC cine-MRI frame, cropped to 64 x 64 x 10."""
    img = nib.load(str(shared_data / f"{ACDC}_image.nii.gz"))
    lbl = nib.load(str(shared_data / f"{ACDC}_label.nii.gz"))
    crop = (slice(80, 144), slice(90, 154))
    return (np.asarray(img.dataobj, dtype=np.float32)[crop], np.asarray(lbl.dataobj)[crop],
            img.affine @ np.array([[1, 0, 0, 80], [0, 1, 0, 90], [0, 0, 1, 0], [0, 0, 0, 1.0]]))


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nrrd", "v.mha", "v.npy", "v.npz", "v.h5"])
def test_every_written_format_reads_back_the_same_voxels_and_world_affine(
    tmp_path: Path, acdc: tuple[np.ndarray, np.ndarray, np.ndarray], name: str
) -> None:
    image, label, affine = acdc
    assert np.unique(label).tolist() == [0, 1, 2, 3]
    for what, arr in (("image", image), ("label", label)):
        path = save_volume(tmp_path / f"{what}_{name}", arr, affine)
        vol = load_volume(path)
        np.testing.assert_array_equal(vol.data, arr)
        np.testing.assert_allclose(vol.affine, affine, atol=1e-4)
        assert vol.format == volume_format(path).name  # type: ignore[union-attr]
    assert load_volume(tmp_path / f"label_{name}").data.dtype == np.uint8


def test_metaimage_header_plus_raw_is_read_with_its_lps_geometry(tmp_path: Path) -> None:
    """A hand-written .mhd + .raw: Offset/ElementSpacing/TransformMatrix are LPS; the RAS affine flips x
    and y."""
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)  # stored x fastest: array (z, y, x)
    (tmp_path / "v.raw").write_bytes(data.tobytes())
    (tmp_path / "v.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 10 20 30\nElementSpacing = 0.5 0.75 2\n"
        "DimSize = 4 3 2\nElementType = MET_SHORT\nElementDataFile = v.raw\n")
    vol = load_volume(tmp_path / "v.mhd")
    assert vol.data.shape == (4, 3, 2) and vol.data[1, 2, 1] == data[1, 2, 1]
    np.testing.assert_allclose(vol.affine,
                               [[-0.5, 0, 0, -10], [0, -0.75, 0, -20], [0, 0, 2, 30], [0, 0, 0, 1]])


def test_numpy_without_sidecar_warns_once_and_assumes_1mm_identity(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    np.save(tmp_path / "a.npy", np.zeros((4, 5, 6), np.int16))
    with caplog.at_level(logging.WARNING):
        vol = load_volume(tmp_path / "a.npy")
    np.testing.assert_array_equal(vol.affine, np.eye(4))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no sidecar a.npy.json" in lines[0] and "1 mm" in lines[0]


def test_hdf5_sidecar_with_lps_geometry_and_zyx_axes(tmp_path: Path) -> None:
    import h5py

    zyx = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    with h5py.File(tmp_path / "la.h5", "w") as f:
        f["image"] = zyx
        f["label"] = (zyx > 30).astype(np.uint8)
    (tmp_path / "la.json").write_text(json.dumps(
        {"origin": [1, 2, 3], "spacing": [0.5, 0.5, 2.0], "space": "LPS", "axes": "zyx"}))
    vol = load_volume(tmp_path / "la.h5")
    assert vol.data.shape == (5, 4, 3) and vol.data[4, 1, 2] == zyx[2, 1, 4]
    np.testing.assert_allclose(vol.affine, [[-0.5, 0, 0, -1], [0, -0.5, 0, -2], [0, 0, 2, 3], [0, 0, 0, 1]])


def test_what_counts_as_a_volume(tmp_path: Path, shared_data: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "a.png").write_bytes(b"x")
    series = shared_data / "dicom/siemens/anatomical/001"
    renamed = tmp_path / "IM0001"  # a DICOM file without a suffix is recognised by its content
    renamed.write_bytes(next(series.iterdir()).read_bytes())
    assert [is_volume(tmp_path / n) for n in ("notes.txt", "a.png")] == [False, False]
    assert volume_format(series).name == "dicom" and volume_format(renamed).name == "dicom"  # type: ignore[union-attr]
    assert volume_suffix(Path("x_seg.seg.nrrd")) == ".seg.nrrd"
    assert volume_suffix(Path("x.nii.gz")) == ".nii.gz"
    assert CaseKind.VOLUME == "volume" and CaseKind("slices2d") is CaseKind.SLICES2D
    assert f"{CaseKind.VOLUME}" == str(CaseKind.VOLUME) == "volume"


def test_probabilities_keep_their_class_axis_in_nrrd_and_mha(tmp_path: Path) -> None:
    import nrrd
    import SimpleITK as sitk

    aff = np.array([[-1.2, 0, 0, 40.0], [0, -1.2, 0, 20.0], [0, 0, 2.5, -10.0], [0, 0, 0, 1]])
    probs = np.random.default_rng(0).random((6, 5, 4, 3)).astype(np.float32)
    data, header = nrrd.read(str(save_volume(tmp_path / "p.nrrd", probs, aff)))
    np.testing.assert_array_equal(data, probs)
    assert header["kinds"] == ["domain", "domain", "domain", "vector"]
    img = sitk.ReadImage(str(save_volume(tmp_path / "p.mha", probs, aff)))
    assert img.GetNumberOfComponentsPerPixel() == 3 and img.GetOrigin() == (-40.0, -20.0, -10.0)
    np.testing.assert_array_equal(np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0, 3)), probs)
