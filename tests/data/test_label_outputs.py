"""Label volumes out (segkit.io.segmentations): NRRD, MetaImage, 3D Slicer .seg.nrrd and DICOM-SEG reopen to
the same labels on the same voxels in world space, for a single-frame and an enhanced multi-frame series."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from segkit.io.segmentations import LabelOutput, Segment, read_seg_nrrd_segments, write_labels
from segkit.io.volumes import VolumeRef, load_volume

SEGMENTS = (Segment(1, "left_atrium", (255, 0, 0)), Segment(2, "aorta", (0, 128, 255)))


def _world(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.uint8), affine))
    return np.asarray(img.dataobj), img.affine


@pytest.mark.parametrize("series", ["hitachi/anatomical/001", "philips_enhanced/anatomical/001"])
@pytest.mark.parametrize("fmt,ext", [("nrrd", ".nrrd"), ("mha", ".mha"), ("seg.nrrd", ".seg.nrrd"),
                                     ("dicom-seg", ".dcm")])
def test_labels_reopen_on_the_same_world_voxels(
    shared_data: Path, tmp_path: Path, series: str, fmt: str, ext: str
) -> None:
    src = shared_data / "dicom" / series
    vol = load_volume(src)
    labels = np.zeros(vol.data.shape, np.uint8)
    labels[10:30, 5:40, 1] = 1
    labels[20:25, 30:50, 2:] = 2
    how = LabelOutput(fmt, SEGMENTS, VolumeRef(src))
    out = write_labels(tmp_path / f"x_seg{ext}", labels, vol.affine, how)
    back = load_volume(out)
    a, b = _world(labels, vol.affine), _world(back.data, back.affine)
    np.testing.assert_array_equal(b[0], a[0])
    np.testing.assert_allclose(b[1], a[1], atol=1e-3)


def test_slicer_segments_and_dicom_seg_descriptions(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "dicom/siemens/anatomical/001"
    vol = load_volume(src)
    labels = np.zeros(vol.data.shape, np.uint8)
    labels[3:5, 7:9, 1:3] = 2
    write_labels(tmp_path / "a.seg.nrrd", labels, vol.affine, LabelOutput("seg.nrrd", SEGMENTS))
    assert read_seg_nrrd_segments(tmp_path / "a.seg.nrrd") == list(SEGMENTS)
    import nrrd

    header = nrrd.read_header(str(tmp_path / "a.seg.nrrd"))
    assert header["Segment1_Extent"] == "3 4 7 8 1 2" and header["Segment0_Extent"] == "0 -1 0 -1 0 -1"
    write_labels(tmp_path / "a.dcm", labels, vol.affine, LabelOutput("dicom-seg", SEGMENTS, VolumeRef(src)))
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    assert ds.Modality == "SEG" and len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 4
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(
        sorted(src.iterdir())[0]).SeriesInstanceUID
    la, aorta = ds.SegmentSequence
    assert (la.SegmentLabel, la.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("left_atrium", "82471001")
    assert aorta.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Aorta"
    algo = la.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "segkit" and la.SegmentAlgorithmType == "AUTOMATIC"
