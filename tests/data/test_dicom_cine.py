"""Cine DICOM as scanners store it, one volume per phase: a cine acquired as one series per slice position
(Siemens: each series holds every phase of one position) and an enhanced multi-frame cine (one file, frames
told apart by TemporalPositionIndex or the nominal trigger delay of their functional groups).

Both are built from real series of ``../shared/data/dicom`` by rewriting tags with pydicom: the Siemens MR
series (4 slices of 256 x 256) and the Philips enhanced MR file (8 frames of 256 x 256); phase 2 is
phase 1 + 7.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from segkit.errors import DataError
from segkit.io.volumes import load_volume, volume_inputs

pytestmark = pytest.mark.data


def _per_position_series(shared_data: Path, folder: Path, drop_last: bool = False,
                         description: str = "cine_sax_{i}") -> None:
    """Every slice of the Siemens series as its own series (numbers 20..23, descriptions ``cine_sax_<i>``)
    holding two phases; TriggerTime differs between positions, as with one breath-hold per slice."""
    folder.mkdir()
    files = sorted((shared_data / "dicom/siemens/anatomical/001").iterdir())
    for i, f in enumerate(files):
        _position_series(f, folder / f"IM_{i}", 20 + i, description.format(i=i), 10.0 + 3 * i,
                         drop_phase2=drop_last and i == len(files) - 1)


def _position_series(src: Path, stem: Path, number: int, description: str, trigger: float, add: int = 0,
                     drop_phase2: bool = False) -> None:
    """One series of the slice ``src``: phase 1 (its pixels + ``add``) and phase 2 (+ 7 more), files
    ``<stem>_0`` and ``<stem>_1``."""
    uid = pydicom.uid.generate_uid()
    for phase in (0, 1) if not drop_phase2 else (0,):
        ds = pydicom.dcmread(src)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uid, number, description
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.TriggerTime = trigger + 400.0 * phase
        if phase or add:
            ds.PixelData = (ds.pixel_array + add + 7 * phase).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(f"{stem}_{phase}")


def test_one_series_per_slice_position_is_one_volume_per_phase(shared_data: Path, tmp_path: Path) -> None:
    _per_position_series(shared_data, tmp_path / "cine")
    refs = volume_inputs(tmp_path / "cine")
    assert [r.case_id for r in refs] == ["s020_cine_sax_phase01", "s020_cine_sax_phase02"]
    reference = load_volume(shared_data / "dicom/siemens/anatomical/001")
    one, two = (load_volume(r) for r in refs)
    np.testing.assert_array_equal(one.data, reference.data)
    np.testing.assert_array_equal(two.data, reference.data + 7)
    np.testing.assert_allclose(two.affine, reference.affine, atol=1e-6)
    with pytest.raises(DataError, match=r"2 series in one input \(a cine or multi-phase series.*"
                                        r"s020_cine_sax_phase01, s020_cine_sax_phase02\)"):
        load_volume(tmp_path / "cine")


def test_a_slice_acquired_again_keeps_the_highest_series_number(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Slice 2 acquired again as series 30 (same protocol and geometry, its pixels + 3): series 22 is dropped
    with one warning line naming it, the volume holds series 30's slice; and descriptions ``SA_10`` ..
    ``SA_13`` name the cine ``SA`` (their common beginning cut at the separator, not ``SA_1``)."""
    _per_position_series(shared_data, tmp_path / "cine", description="SA_1{i}")
    src = sorted((shared_data / "dicom/siemens/anatomical/001").iterdir())[2]
    _position_series(src, tmp_path / "cine" / "IM_again", 30, "SA_12", 50.0, add=3)
    with caplog.at_level("WARNING", logger="segkit.io.dicom"):
        refs = volume_inputs(tmp_path / "cine")
    assert [r.case_id for r in refs] == ["s020_SA_phase01", "s020_SA_phase02"]
    warnings = [r.getMessage() for r in caplog.records if "acquired again" in r.getMessage()]
    assert warnings == ["slice position(s) acquired again in a later series: dropped series 22 (SA_12) for "
                        "series 30 (SA_12)"]
    reference = load_volume(shared_data / "dicom/siemens/anatomical/001")
    one, two = (load_volume(r) for r in refs)
    diff = one.data.astype(np.int64) - reference.data.astype(np.int64)
    changed = [z for z in range(diff.shape[2]) if diff[..., z].any()]
    assert len(changed) == 1 and np.all(diff[..., changed[0]] == 3)  # series 30's slice, nothing else
    np.testing.assert_array_equal(two.data.astype(np.int64) - one.data, 7)
    np.testing.assert_allclose(one.affine, reference.affine, atol=1e-6)


def test_one_series_per_position_with_a_phase_missing_is_refused(shared_data: Path, tmp_path: Path) -> None:
    _per_position_series(shared_data, tmp_path / "gap", drop_last=True)
    with pytest.raises(DataError, match=r"7 images at 4 slice position\(s\)") as err:
        load_volume(tmp_path / "gap")
    assert err.value.hint == "give one phase per folder (segkit reads one 3D volume per series)"


def _enhanced_cine(shared_data: Path, path: Path, trigger: bool) -> float:
    """The Philips enhanced file with its 8 frames twice: phase 2 (+7) in frames 9..16, told apart by
    TemporalPositionIndex, or (``trigger``) by NominalCardiacTriggerDelayTime (0 and 400 ms) only.
    Returns the file's rescale slope (Philips stores 3.26...: phase 2 reads 7 x slope higher)."""
    ds = pydicom.dcmread(next((shared_data / "dicom/philips_enhanced/anatomical/001").iterdir()))
    pixels = ds.pixel_array
    frames = list(ds.PerFrameFunctionalGroupsSequence)
    for k, item in enumerate(frames + [copy.deepcopy(f) for f in frames]):
        phase = k // len(frames)
        content = item.FrameContentSequence[0]
        if trigger:
            del content.TemporalPositionIndex
            sync = Dataset()
            sync.NominalCardiacTriggerDelayTime = 400.0 * phase
            item.CardiacSynchronizationSequence = Sequence([sync])
        else:
            content.TemporalPositionIndex = phase + 1
        if k >= len(frames):
            ds.PerFrameFunctionalGroupsSequence.append(item)
    ds.NumberOfFrames = 2 * len(frames)
    ds.PixelData = np.concatenate([pixels, pixels + 7]).astype(pixels.dtype).tobytes()
    path.parent.mkdir()
    ds.save_as(path)
    return float(frames[0].PixelValueTransformationSequence[0].RescaleSlope)


@pytest.mark.parametrize("trigger", [False, True], ids=["temporal-position-index", "trigger-delay"])
def test_an_enhanced_multiframe_cine_is_one_volume_per_phase(
    shared_data: Path, tmp_path: Path, trigger: bool
) -> None:
    path = tmp_path / "cine" / "ENH0001"
    slope = _enhanced_cine(shared_data, path, trigger)
    refs = volume_inputs(path.parent)
    assert [r.case_id for r in refs] == ["s301_phase01", "s301_phase02"]
    reference = load_volume(shared_data / "dicom/philips_enhanced/anatomical/001")
    one, two = (load_volume(r) for r in refs)
    np.testing.assert_array_equal(one.data, reference.data)
    np.testing.assert_allclose(two.data - one.data, 7 * slope, rtol=1e-4)
    assert slope > 3
    np.testing.assert_allclose(two.affine, reference.affine, atol=1e-6)
    with pytest.raises(DataError, match=r"2 series in one input \(a cine or multi-phase series"):
        load_volume(path)


def test_dicom_seg_of_one_phase_references_its_frames_and_reads_back(
    shared_data: Path, tmp_path: Path
) -> None:
    from segkit.io.dicomseg import write_dicom_seg
    from segkit.io.segmentations import Segment

    _enhanced_cine(shared_data, tmp_path / "cine" / "ENH0001", trigger=False)
    ref = volume_inputs(tmp_path / "cine")[1]
    vol = load_volume(ref)
    labels = (vol.data > np.percentile(vol.data, 80)).astype(np.uint8)
    seg = write_dicom_seg(tmp_path / "phase02.dcm", labels, ref, (Segment(1, "LA", (255, 0, 0)),))
    back = load_volume(seg)
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-3)
    _per_position_series(shared_data, tmp_path / "pp")
    ref = volume_inputs(tmp_path / "pp")[0]
    with pytest.raises(DataError, match="the source spans several series"):
        write_dicom_seg(tmp_path / "pp.dcm", labels[..., :4], ref, (Segment(1, "LA", (255, 0, 0)),))
    assert not (tmp_path / "pp.dcm").exists()


def test_infer_refuses_dicom_seg_for_a_cine_joined_from_several_series_before_writing(
    shared_data: Path, tmp_path: Path
) -> None:
    from segkit.config import validate_config
    from segkit.infer.options import InferOptions
    from segkit.infer.run import plan_inference

    _per_position_series(shared_data, tmp_path / "pp")
    cfg = validate_config({"classes": [{"id": 1, "name": "LA", "color": [255, 0, 0]}],
                           "train": {"run_dir": str(tmp_path / "run")}})
    with pytest.raises(DataError, match=r"s020_cine_sax_phase01 spans 4 series \(a cine stored as one series "
                                        r"per slice position\); a DICOM-SEG references one series"):
        plan_inference(cfg, tmp_path / "pp", tmp_path / "out",
                       options=InferOptions(output_format="dicom-seg"))
    assert not (tmp_path / "out").exists()
