"""DICOM out: a volume as a single-frame image series (CT or MR), written atomically as one folder.

Used for round trips (a NIfTI CT written as a DICOM CT series with RescaleIntercept -1024 reads back the same
HU) and by users who need a series for a PACS. Geometry: the RAS affine becomes LPS (``segkit.io.world``);
each slice k gets ImagePositionPatient = affine @ (0, 0, k), the row/column cosines of the first two axes.
Identifiers are fresh UIDs; no patient data is written (PatientName ``anonymous``, PatientID ``segkit``).
"""

from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.world import geometry_from_affine, ras_to_lps

_STORAGE = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


@dataclass(frozen=True)
class SeriesSpec:
    """How to write a series.

    Attributes:
        modality: ``CT`` or ``MR``.
        rescale_intercept: stored value = round(value - intercept) (CT: -1024 stores HU from 0 up).
        description: SeriesDescription.
        series_number: SeriesNumber.
    """

    modality: str = "CT"
    rescale_intercept: float = -1024.0
    description: str = "segkit"
    series_number: int = 1


def write_dicom_series(folder: Path, data: npt.NDArray, affine: npt.ArrayLike,
                       spec: SeriesSpec | None = None) -> list[Path]:
    """Write ``data`` (X, Y, Z) as one file per slice ``IM0001.dcm`` ... into ``folder`` (created; refused if
    it exists and is not empty). Values are rounded to integers (slope 1).

    Returns:
        the files written, in slice order.

    Raises:
        DataError: not 3D, sheared axes, values that do not fit 16 bits after the intercept, a non-empty
            ``folder``, an unknown modality.
    """
    import pydicom

    spec = spec or SeriesSpec()
    folder = Path(folder)
    arr = np.asarray(data)
    if arr.ndim != 3 or spec.modality not in _STORAGE:
        raise DataError(f"cannot write a {arr.ndim}D {spec.modality} series", path=folder,
                        hint="give a 3D volume and modality CT or MR")
    if folder.exists() and any(folder.iterdir()):
        raise DataError("the output folder is not empty", path=folder, hint="give a new folder")
    origin, spacing, direction = geometry_from_affine(ras_to_lps(affine))
    if abs(float(direction[:, 0] @ direction[:, 1])) > 1e-6 or abs(
            float(np.cross(direction[:, 0], direction[:, 1]) @ direction[:, 2])) < 1 - 1e-6:
        raise DataError("the volume's axes are not orthogonal", path=folder,
                        hint="resample the volume to an orthogonal grid first")
    stored = np.rint(arr.astype(np.float64) - spec.rescale_intercept)
    if stored.min() < -32768 or stored.max() > 65535 or (stored.min() < 0 and stored.max() > 32767):
        raise DataError("values do not fit 16 bits", path=folder, hint="use another rescale intercept")
    signed = bool(stored.min() < 0)
    stored = stored.astype(np.int16 if signed else np.uint16)
    series_uid, study_uid, frame_uid = (pydicom.uid.generate_uid() for _ in range(3))
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = []
    for k in range(arr.shape[2]):
        ds = _slice_dataset(spec, stored[:, :, k].T, signed)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in origin + k * spacing[2] * direction[:, 2]]
        ds.ImageOrientationPatient = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # row spacing (axis 1), column spacing
        ds.SliceThickness = float(spacing[2])
        names.append(f"IM{k + 1:04d}.dcm")
        ds.save_as(tmp / names[-1], enforce_file_format=True)
    if folder.exists():
        folder.rmdir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(folder)
    return [folder / n for n in names]


def _slice_dataset(spec: SeriesSpec, pixels: npt.NDArray, signed: bool):  # noqa: ANN202 - pydicom Dataset
    import pydicom
    from pydicom.dataset import FileMetaDataset

    sop_uid = pydicom.uid.generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.UID(_STORAGE[spec.modality])
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = _STORAGE[spec.modality], sop_uid
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber = spec.modality, spec.description, spec.series_number
    ds.PatientName, ds.PatientID = "anonymous", "segkit"
    ds.StudyDate = ds.SeriesDate = datetime.date.today().strftime("%Y%m%d")
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = spec.rescale_intercept, 1.0, "HU"
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds
