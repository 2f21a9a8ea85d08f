"""DICOM as it comes off a CD or a PACS export: a DICOMDIR media folder (read through the folder it indexes),
and non-image objects beside a series (structured reports, presentation states) skipped with one warning,
or refused in one line when nothing else is there.

The image source is the real Siemens MR series of ``../shared/data/dicom`` (4 slices of 256 x 256); the
DICOMDIR is written by pydicom's ``FileSet``, the SR and PR objects are its first file with the modality and
SOP class rewritten and the pixel data removed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from segkit.errors import DataError
from segkit.io.volumes import load_volume, volume_format, volume_inputs

pytestmark = pytest.mark.data
SIEMENS = "dicom/siemens/anatomical/001"
SOP_CLASS = {"SR": "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
             "PR": "1.2.840.10008.5.1.4.1.1.11.1"}  # Grayscale Softcopy Presentation State


def _non_image(src: Path, dst: Path, modality: str) -> None:
    ds = pydicom.dcmread(src)
    for tag in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        if tag in ds:
            delattr(ds, tag)
    ds.Modality, ds.SOPClassUID = modality, SOP_CLASS[modality]
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(dst)


def test_a_dicomdir_media_folder_reads_as_its_series(shared_data: Path, tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    fs = FileSet()
    for f in sorted((shared_data / SIEMENS).iterdir()):
        fs.add(pydicom.dcmread(f))
    fs.write(tmp_path / "cd")
    dicomdir = tmp_path / "cd" / "DICOMDIR"
    assert dicomdir.is_file() and not any(p.suffix for p in (tmp_path / "cd").rglob("*") if p.is_file())
    reference = load_volume(shared_data / SIEMENS)
    for given in (dicomdir, tmp_path / "cd"):  # the DICOMDIR file, or the folder holding it
        fmt = volume_format(given)
        assert fmt is not None and fmt.name == "dicom"
        vol = load_volume(given)
        np.testing.assert_array_equal(vol.data, reference.data)
        np.testing.assert_array_equal(vol.affine, reference.affine)
    assert [r.path for r in volume_inputs(tmp_path / "cd")] == [tmp_path / "cd"]


def test_structured_reports_and_presentation_states_are_skipped_or_refused(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = sorted((shared_data / SIEMENS).iterdir())[0]
    for modality, reason in (("SR", "a structured report (SR)"), ("PR", "a presentation state (PR)")):
        alone = tmp_path / modality
        alone.mkdir()
        _non_image(first, alone / "OBJ1", modality)
        with pytest.raises(DataError) as err:
            load_volume(alone)
        assert err.value.message == f"no image series: OBJ1: {reason}" and err.value.path == alone
        assert err.value.hint == "give the folder of an image series (CT, MR, ...)"
        assert "\n" not in err.value.one_line()
    beside = tmp_path / "beside"
    shutil.copytree(shared_data / SIEMENS, beside)
    _non_image(first, beside / "SR1", "SR")
    _non_image(first, beside / "PR1", "PR")
    with caplog.at_level(logging.WARNING, logger="segkit.io.dicom"):
        vol = load_volume(beside)
    np.testing.assert_array_equal(vol.data, load_volume(shared_data / SIEMENS).data)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["beside: 2 non-image object(s) skipped (PR1: a presentation state (PR))"]
