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


def test_dicom_seg_codes_come_from_the_class_concept_before_the_name_lookup(
    shared_data: Path, tmp_path: Path
) -> None:
    from segkit.config import load_config

    classes = load_config("whole-heart").classes  # LV, RV, LA, ...: the preset's SNOMED CT concepts
    segments = tuple(Segment(c.id, c.name, c.color, c.concept) for c in classes[:2])
    own = classes[0].concept
    assert own is not None
    custom = own.model_copy(update={"type": own.type.model_copy(update={"code": "XYZ1", "scheme": "99LAB",
                                                                       "meaning": "Blood pool"})})
    segments += (Segment(3, "LA", (9, 9, 9), custom),)  # a config's own code beats the name lookup
    src = shared_data / "dicom/siemens/anatomical/001"
    vol = load_volume(src)
    labels = np.zeros(vol.data.shape, np.uint8)
    labels[3:5, 7:9, 1:3] = 3
    write_labels(tmp_path / "a.dcm", labels, vol.affine, LabelOutput("dicom-seg", segments, VolumeRef(src)))
    seq = pydicom.dcmread(tmp_path / "a.dcm").SegmentSequence
    got = [(s.SegmentLabel, s.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
            *(getattr(s.SegmentedPropertyTypeCodeSequence[0], k)
              for k in ("CodingSchemeDesignator", "CodeValue", "CodeMeaning"))) for s in seq]
    assert got == [("LV", "91723000", "SCT", "87878005", "Left ventricle"),
                   ("RV", "91723000", "SCT", "53085002", "Right ventricle"),
                   ("LA", "91723000", "99LAB", "XYZ1", "Blood pool")]
    # 3D Slicer's segmentation carries the same concepts as TerminologyEntry tags, and reads them back
    write_labels(tmp_path / "a.seg.nrrd", labels, vol.affine, LabelOutput("seg.nrrd", segments))
    assert read_seg_nrrd_segments(tmp_path / "a.seg.nrrd") == list(segments)
    import nrrd

    assert nrrd.read_header(str(tmp_path / "a.seg.nrrd"))["Segment0_Tags"] == (
        "TerminologyEntry:Segmentation category and type - 3D Slicer General Anatomy list"
        "~SCT^91723000^Anatomical Structure~SCT^87878005^Left ventricle~^^~Anatomic codes - DICOM master list"
        "~^^~^^|")
