"""A real LA volume (LA 2018 la_100, cropped to 64 x 64 x 12) with its label, written in every format segkit
reads -- NIfTI, NRRD, MHA, NPY + sidecar, H5 + sidecar, and a DICOM MR series with its label as DICOM-SEG --
gives identical prepared slices and identical inferred labels in world space from every format."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.config import validate_config
from segkit.io.volumes import VolumeRef, load_volume, save_volume

CFG = {
    "name": "tiny-la",
    "modality": "mr",
    "classes": [{"id": 1, "name": "left_atrium", "color": [255, 0, 0]}],
    "prepare": {"axis": 2, "size": [32, 32], "empty_slices": "keep"},
    "data": {"image_size": [32, 32], "channels": 1},
    "model": {"name": "flexunet", "base_filters": 4, "base_kernels": 3, "num_layers": 2, "dropout_rate": 0.0},
    "infer": {"batch_size": 16},
}
CROP = (slice(60, 124), slice(40, 104), slice(40, 52))


@pytest.fixture(scope="module")
def cases(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, object]]:
    """format -> (image path or series folder, label path), all written from one crop of la_100."""
    from segkit.io.dicomwrite import SeriesSpec, write_dicom_series
    from segkit.io.segmentations import LabelOutput, Segment, write_labels

    la = shared_data / "volumes/la2018_lge_mri"
    img, lbl = nib.load(str(la / "imagesTr/la_100.nii.gz")), nib.load(str(la / "labelsTr/la_100.nii.gz"))
    start = np.array([CROP[0].start, CROP[1].start, CROP[2].start, 1.0])
    affine = img.affine.copy()
    affine[:, 3] = img.affine @ start
    image, label = img.dataobj.get_unscaled()[CROP], np.asarray(lbl.dataobj)[CROP]  # stored int16 values
    assert label.sum() > 500 and image.dtype == np.int16
    root = tmp_path_factory.mktemp("formats")
    out: dict[str, tuple[object, object]] = {}
    exts = (("nifti", ".nii.gz"), ("nrrd", ".nrrd"), ("mha", ".mha"), ("npy", ".npy"), ("h5", ".h5"))
    for fmt, ext in exts:
        out[fmt] = (save_volume(root / f"la_image{ext}", image, affine),
                    save_volume(root / f"la_label{ext}", label, affine))
    write_dicom_series(root / "dicom", image, affine, SeriesSpec("MR", 0.0, "LA LGE", 7))
    seg = write_labels(root / "la_label.dcm", label, affine,
                       LabelOutput("dicom-seg", (Segment(1, "left_atrium", (255, 0, 0)),),
                                   VolumeRef(root / "dicom")))
    out["dicom"] = (root / "dicom", seg)
    out["mha-label"] = (root / "dicom", root / "la_label.mha")  # a DICOM series with an MHA label
    return out


def test_every_format_gives_identical_prepared_slices(cases: dict[str, tuple[Path, Path]]) -> None:
    from segkit.prepare.slicing import slice_case

    cfg = validate_config(CFG)
    sliced = {fmt: slice_case(load_volume(i), load_volume(lab), cfg, "la", np.random.default_rng(0))
              for fmt, (i, lab) in cases.items()}
    ref = sliced["nifti"].slices
    assert len(ref) == 12 and sum(int(s[2].sum() > 0) for s in ref) >= 6
    for fmt, case in sliced.items():
        assert [s[0] for s in case.slices] == [s[0] for s in ref], fmt
        for (_, a_img, a_lbl), (_, b_img, b_lbl) in zip(case.slices, ref, strict=True):
            np.testing.assert_array_equal(a_img, b_img, err_msg=fmt)
            np.testing.assert_array_equal(a_lbl, b_lbl, err_msg=fmt)


def test_every_format_gives_identical_inferred_labels_in_world_space(
    cases: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    import keras

    from segkit.infer.volume import infer_volume
    from segkit.models import build_model

    cfg = validate_config(dict(CFG, data={**CFG["data"], "dir": str(tmp_path / "none")},
                               train={"run_dir": str(tmp_path / "run")}))
    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    world = {}
    for fmt, (image, _) in cases.items():
        if fmt == "mha-label":
            continue
        res = infer_volume(model, image, cfg, tmp_path / fmt)
        seg = nib.as_closest_canonical(nib.load(str(res.seg_path)))
        world[fmt] = (np.asarray(seg.dataobj), seg.affine)
    labels, affine = world["nifti"]
    assert labels.shape == (64, 64, 12) and 0 < int((labels > 0).sum()) < labels.size
    for fmt, (lab, aff) in world.items():
        np.testing.assert_array_equal(lab, labels, err_msg=fmt)
        np.testing.assert_allclose(aff, affine, atol=1e-3, err_msg=fmt)


def test_read_header_gives_the_shape_and_affine_of_every_format_without_the_voxels(
    cases: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    import shutil

    import pydicom
    import SimpleITK as sitk

    from segkit.errors import DataError
    from segkit.io.volumes import read_header

    for fmt, (image, label) in cases.items():
        for path in (image, label):
            vol = load_volume(path)
            shape, affine = read_header(path)
            assert shape == vol.data.shape, (fmt, path)
            np.testing.assert_allclose(affine, vol.affine, atol=1e-6, err_msg=str(path))
    nifti = load_volume(cases["nifti"][0])
    # the voxel data cut off after the header: the header still reads, the volume does not
    broken = tmp_path / "broken"
    broken.mkdir()
    for src in (cases["npy"][0], cases["mha"][0]):
        data = Path(src).read_bytes()
        (broken / Path(src).name).write_bytes(data[: len(data) // 4])
    shutil.copy(Path(str(cases["npy"][0]) + ".json"), broken / "la_image.npy.json")
    shutil.copytree(cases["dicom"][0], broken / "dicom")
    for f in (broken / "dicom").iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelData = ds.PixelData[:10]
        ds.save_as(f)
    mhd = broken / "la.mhd"  # header text + raw file, written by SimpleITK
    img = sitk.ReadImage(str(cases["mha"][0]))
    sitk.WriteImage(img, str(mhd))
    mhd.with_suffix(".raw").write_bytes(b"")
    for path in (broken / "la_image.npy", broken / "la_image.mha", broken / "dicom", mhd):
        shape, affine = read_header(path)
        assert shape == (64, 64, 12), path
        np.testing.assert_allclose(affine, nifti.affine, atol=1e-3, err_msg=str(path))
        with pytest.raises(DataError):
            load_volume(path)
