"""segkit.io.volumes: NIfTI/NRRD loading to RAS affines, atomic NIfTI saving, bad-file errors."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

from segkit.errors import DataError
from segkit.io.volumes import Volume, load_volume, save_volume

AFF = np.array([[-1.2, 0, 0, 40.0], [0, -1.2, 0, 20.0], [0, 0, 2.5, -10.0], [0, 0, 0, 1]])


def test_nifti_roundtrip_keeps_values_affine_and_label_dtype(tmp_path: Path) -> None:
    lbl = np.zeros((6, 5, 4), dtype=np.int64)
    lbl[1:3, 2, 1] = 3
    img = np.linspace(-1000, 1000, 120, dtype=np.float64).reshape(6, 5, 4)
    save_volume(tmp_path / "l.nii.gz", lbl, AFF)
    save_volume(tmp_path / "i.nii.gz", img, AFF)
    save_volume(tmp_path / "big.nii", lbl * 1000, AFF)
    vl, vi, vb = (load_volume(tmp_path / n) for n in ("l.nii.gz", "i.nii.gz", "big.nii"))
    assert isinstance(vl, Volume) and vl.path == tmp_path / "l.nii.gz"
    assert vl.data.dtype == np.uint8 and vb.data.dtype == np.uint16 and vi.data.dtype == np.float32
    np.testing.assert_array_equal(vl.data, lbl)
    np.testing.assert_array_equal(vb.data, lbl * 1000)
    np.testing.assert_allclose(vi.data, img, atol=1e-3)
    np.testing.assert_allclose(vl.affine, AFF, atol=1e-5)
    hdr = nib.load(str(tmp_path / "l.nii.gz")).header
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 1
    # gzip magic: the .nii.gz suffix picked the compressed format; no temporary file is left behind.
    assert (tmp_path / "l.nii.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.nii", "i.nii.gz", "l.nii.gz"]


def test_trailing_singleton_dimension_is_squeezed(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((4, 3, 2, 1), np.uint8), AFF), str(tmp_path / "s.nii.gz"))
    assert load_volume(tmp_path / "s.nii.gz").data.shape == (4, 3, 2)


def test_nrrd_lps_becomes_ras_affine(tmp_path: Path) -> None:
    data = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2)
    dirs = np.array([[0.8, 0, 0], [0, -0.8, 0], [0, 0, 6.5]])  # one row per array axis, LPS world
    origin = np.array([-99.6, 99.6, -78.0])
    nrrd.write(
        str(tmp_path / "v.nrrd"),
        data,
        {"space": "left-posterior-superior", "space directions": dirs, "space origin": origin},
    )
    vol = load_volume(tmp_path / "v.nrrd")
    np.testing.assert_array_equal(vol.data, data)
    # Voxel (2, 1, 1): LPS point = origin + 2*row0 + 1*row1 + 1*row2 = (-98.0, 98.8, -71.5)
    # -> RAS (98.0, -98.8, -71.5).
    np.testing.assert_allclose(vol.affine @ [2, 1, 1, 1], [98.0, -98.8, -71.5, 1.0])
    # Axis 0 steps +0.8 mm along L (LPS x), axis 1 steps -0.8 mm along P, i.e. toward Anterior.
    assert "".join(nib.aff2axcodes(vol.affine)) == "LAS"


def test_nhdr_detached_header_and_ras_space(tmp_path: Path) -> None:
    data = np.ones((3, 3, 2), dtype=np.uint8)
    header = {
        "space": "right-anterior-superior",
        "space directions": np.diag([1.0, 2.0, 3.0]),
        "space origin": [1.0, 2.0, 3.0],
    }
    nrrd.write(str(tmp_path / "v.nhdr"), data, header, detached_header=True)
    vol = load_volume(tmp_path / "v.nhdr")
    assert vol.data.shape == (3, 3, 2)
    np.testing.assert_allclose(vol.affine, [[1, 0, 0, 1], [0, 2, 0, 2], [0, 0, 3, 3], [0, 0, 0, 1]])


def test_nrrd_unknown_space_is_an_error(tmp_path: Path) -> None:
    nrrd.write(str(tmp_path / "w.nrrd"), np.ones((2, 2, 2), np.uint8), {"space": "left-posterior-superior"})
    text = (tmp_path / "w.nrrd").read_bytes().replace(b"left-posterior-superior", b"scanner-xyz-time")
    (tmp_path / "w.nrrd").write_bytes(text)
    with pytest.raises(DataError, match="unsupported NRRD space 'scanner-xyz-time'") as info:
        load_volume(tmp_path / "w.nrrd")
    assert "w.nrrd" in info.value.one_line()


@pytest.fixture()
def bad_files(tmp_path: Path) -> Path:
    save_volume(tmp_path / "good.nii.gz", np.random.default_rng(0).normal(size=(20, 20, 10)), AFF)
    raw = (tmp_path / "good.nii.gz").read_bytes()
    (tmp_path / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    rng = np.random.default_rng(1)
    (tmp_path / "noise.nii.gz").write_bytes(rng.bytes(2000))
    (tmp_path / "noise.nii").write_bytes(rng.bytes(2000))
    (tmp_path / "noise.nrrd").write_bytes(rng.bytes(2000))
    nib.save(nib.Nifti1Image(np.zeros((5, 6), np.uint8), AFF), str(tmp_path / "flat.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 2), np.uint8), AFF), str(tmp_path / "series.nii.gz"))
    (tmp_path / "scan.vtk").write_bytes(b"x")
    (tmp_path / "scan.mha").write_bytes(b"x")  # a MetaImage suffix on a broken file
    return tmp_path


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.nii.gz", "cannot read volume"),
        ("noise.nii.gz", "cannot read volume"),
        ("noise.nii", "cannot read volume"),
        ("noise.nrrd", "cannot read volume"),
        ("flat.nii.gz", "expected a 3D volume, got 2D data of shape (5, 6)"),
        ("series.nii.gz", "a 4D volume of 2 phases (shape (5, 6, 7, 2))"),  # the cine rule (issue 18)
        ("missing.nii.gz", "volume file not found"),
        ("scan.vtk", "unsupported volume file type '.vtk'"),
        ("scan.mha", "cannot read volume (RuntimeError"),
    ],
)
def test_bad_volume_files_raise_data_error_naming_the_file(bad_files: Path, name: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        load_volume(bad_files / name)
    assert message in info.value.message
    assert info.value.path == bad_files / name
    assert name in info.value.one_line() and info.value.hint


def test_save_volume_refuses_names_it_does_not_write(tmp_path: Path) -> None:
    for name in ("x.vtk", "x.nhdr", "x.mhd", "x.dcm"):
        with pytest.raises(DataError, match="does not write"):
            save_volume(tmp_path / name, np.zeros((2, 2, 2)), np.eye(4))
    assert not os.listdir(tmp_path)


# === headers that claim more voxels than the file holds, or than memory can take ===


def _lying_nifti(path: Path, shape: tuple[int, ...], cls: type = nib.Nifti1Image) -> Path:
    """A small real file whose header is edited to claim ``shape`` (as a corrupt or hostile header would)."""
    img = cls(np.zeros((4, 4, 4), np.int16), np.eye(4))
    img.header.set_data_shape(shape)
    hdr = img.header.binaryblock
    data = np.zeros(64, np.int16).tobytes()
    offset = int(img.header["vox_offset"]) or len(hdr) + 4
    raw = hdr + b"\0" * (offset - len(hdr)) + data
    if path.name.endswith(".gz"):
        import gzip

        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize(
    ("name", "shape", "cls"),
    [
        ("big1.nii.gz", (32767, 32767, 32767), nib.Nifti1Image),
        ("big2.nii.gz", (100000, 100000, 100000), nib.Nifti2Image),
        ("small_claims_1024.nii.gz", (1024, 1024, 1024), nib.Nifti1Image),
        ("truncated.nii", (64, 64, 64), nib.Nifti1Image),
    ],
)
def test_header_claiming_more_than_the_file_is_refused_before_allocating(
    tmp_path: Path, name: str, shape: tuple[int, ...], cls: type
) -> None:
    import resource

    path = _lying_nifti(tmp_path / name, shape, cls)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError) as e:
        load_volume(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    line = e.value.one_line()
    dims = "x".join(map(str, shape))
    assert line.startswith(f"{path}: the header claims {dims} voxels") and "truncated" in line
    assert grown_mib < 64  # refused from the header, not after a giant allocation


def test_volume_too_big_for_memory_names_the_need(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segkit.io.volumes as vols

    path = tmp_path / "ok.nii.gz"
    save_volume(path, np.zeros((16, 16, 8), np.int16), np.eye(4))
    monkeypatch.setattr(vols, "_available_memory", lambda: 1024)
    with pytest.raises(
        DataError, match=r"a 16x16x8 volume needs [0-9.]+ KiB of memory; 1\.0 KiB is available"
    ):
        load_volume(path)


def test_nrrd_claiming_more_than_its_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lie.nrrd"
    nrrd.write(str(path), np.zeros((4, 4, 4), np.int16), {"encoding": "raw"})
    text = path.read_bytes().replace(b"sizes: 4 4 4", b"sizes: 4000 4000 4000")
    path.write_bytes(text)
    with pytest.raises(DataError, match="the header claims 4000x4000x4000 voxels"):
        load_volume(path)


def test_real_volumes_pass_the_size_check(shared_data: Path) -> None:
    shared_volumes = shared_data / "volumes"
    for path in [*sorted((shared_volumes / "pyradiomics_nrrd").glob("*.nrrd"))[:2],
                 *sorted((shared_volumes / "acdc_cine_mri").glob("*_image.nii.gz"))[:1]]:
        assert load_volume(path).data.ndim == 3
