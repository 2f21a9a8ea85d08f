"""DICOM series in, through pydicom (pixel decoders: pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg,
pyjpegls; RLE is pydicom's own), with the checks that make a set of slices one volume.

A DICOM input is a folder (files found at any depth, recognised by the ``DICM`` preamble whatever their name)
or one file; an enhanced multi-frame file holds a whole series. Files are grouped by SeriesInstanceUID.
Slices are sorted by their position along the slice normal (row x column cosines); the affine is built in
LPS from Image Position/Orientation (Patient) and Pixel Spacing and converted to RAS by
``segkit.io.world``. Rescale slope/intercept are applied per slice (CT in HU); the data is float32 unless
every slice has slope 1 and intercept 0.

Refused with one line (``DataError``) naming the folder and the reason: fewer than 3 slices; spacing
between consecutive positions varying by more than 1 % (missing or duplicated slices); orientation cosines
differing by more than 1e-4 or slice sizes differing; gantry tilt (positions not along the normal; resampled
instead with ``resample_tilt``, ``read_series``); colour
pixel data; non-image objects (SR, RTSTRUCT, presentation states); unreadable files; a transfer syntax
with no decoder installed; several series where one is expected; several images at one position that no
temporal key separates. A cine or multi-phase series (several images per position, told apart by
TemporalPositionIdentifier or TriggerTime) becomes one series per phase (``s004_cine_phase01``, ...); so
does an enhanced multi-frame cine (frames told apart by the TemporalPositionIndex of their Frame Content or
the NominalCardiacTriggerDelayTime of their Cardiac Synchronization group) and a cine stored as one series
per slice position (Siemens; joined first, named after the first series' number and the descriptions'
common beginning cut at a word boundary; a position acquired again in a later series keeps the highest series
number, with a warning naming the series dropped). A cine whose positions hold unequal numbers of images is
refused as shared positions.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.world import lps_to_ras

log = logging.getLogger(__name__)

MIN_SLICES = 3
SPACING_TOLERANCE = 0.01  # relative variation of consecutive slice distances
ORIENTATION_TOLERANCE = 1e-4  # max difference of direction cosines between slices
TILT_TOLERANCE = 1e-3  # max in-plane drift of slice positions, as a fraction of the slice step

_SKIP_SUFFIXES = (".nii", ".gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".raw", ".npy", ".npz", ".h5", ".hdf5",
                  ".png", ".jpg", ".jpeg", ".json", ".md", ".txt", ".csv", ".yaml")
_NON_IMAGE = {
    "SR": "a structured report (SR)",
    "RTSTRUCT": "an RT structure set (RTSTRUCT); convert its contours to a label volume first",
    "PR": "a presentation state (PR)",
    "KO": "a key object selection (KO)",
    "SEG": "a segmentation (SEG); read it as a label with evaluate",
}


def is_seg_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM Segmentation object (Modality ``SEG``)."""
    import pydicom

    try:
        return str(pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality"])
                   .get("Modality", "")) == "SEG"
    except Exception:  # noqa: BLE001 - anything unreadable is not a SEG; the image reader reports it
        return False


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` starts with the DICOM preamble (128 bytes, then ``DICM``)."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _candidates(folder: Path) -> Iterator[Path]:
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR" \
                and not p.name.lower().endswith(_SKIP_SUFFIXES):
            yield p


def dicom_files(folder: Path) -> list[Path]:
    """Every DICOM file under ``folder`` (any depth, any name; DICOMDIR itself excluded)."""
    return [p for p in _candidates(folder) if is_dicom_file(p)]


def holds_dicom(folder: Path) -> bool:
    """Whether ``folder`` holds at least one DICOM file (at any depth)."""
    return any(is_dicom_file(p) for p in _candidates(folder))


@dataclass(frozen=True)
class DicomSeries:
    """One series found in a folder.

    Attributes:
        uid: SeriesInstanceUID (of a cine acquired as one series per slice position: the first of them).
        number: SeriesNumber (``None`` if absent).
        description: SeriesDescription (may be empty; of one series per slice position: their common
            beginning).
        modality: Modality (``MR``, ``CT``, ...).
        files: its files, sorted by name.
        phase: of a cine / multi-phase series (several images per position): the 1-based phase, in the order
            of TemporalPositionIdentifier, else TriggerTime (frames of an enhanced file:
            TemporalPositionIndex, else NominalCardiacTriggerDelayTime); ``None`` for a series of one phase.
        frames: of one phase of a cine held in enhanced multi-frame files: the ``(file, frame index)`` of
            its images; ``()``: every frame of ``files``.
        joined: how many series (SeriesInstanceUIDs) it was joined from: more than 1 for a cine stored as
            one series per slice position.
    """

    uid: str
    number: int | None
    description: str
    modality: str
    files: tuple[Path, ...]
    phase: int | None = None
    frames: tuple[tuple[Path, int], ...] = ()
    joined: int = 1

    @property
    def key(self) -> str:
        """The SeriesInstanceUID, with ``/<phase>`` for one phase of a cine series."""
        return self.uid if self.phase is None else f"{self.uid}/{self.phase}"

    @property
    def name(self) -> str:
        """``s<number>_<description>[_phaseNN]`` with the description reduced to letters, digits, ``-`` and
        ``_`` (no patient data: series number and description only)."""
        desc = re.sub(r"[^A-Za-z0-9_-]+", "_", self.description).strip("_")[:40]
        num = f"s{self.number:03d}" if self.number is not None else "s"
        base = f"{num}_{desc}" if desc else num
        return base if self.phase is None else f"{base}_phase{self.phase:02d}"


def _read(path: Path, pixels: bool = False) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"unreadable DICOM file ({type(e).__name__}: {e})", path=path,
                        hint="the file is truncated or corrupt; export the series again") from e


def list_series(path: Path) -> list[DicomSeries]:
    """The image series in ``path`` (a folder or one file), sorted by series number and description.

    Localizer/scout images are dropped with a one-line warning. A cine or multi-phase series gives one
    ``DicomSeries`` per phase (``_phases``); a cine stored as one series per slice position (Siemens: each
    series holds every phase of one position) is first joined into one series (``_join_positions``).

    Raises:
        DataError: no DICOM file; an unreadable file; only non-image objects (named, with a hint).
    """
    path = Path(path)
    if path.is_file() and path.name.upper() == "DICOMDIR":  # the index of a media folder: read the folder
        path = path.parent
    files = [path] if path.is_file() else dicom_files(path)
    if not files:
        raise DataError("no DICOM file found", path=path, hint="give a folder holding a DICOM series")
    groups: dict[str, list[tuple[Path, Any]]] = {}
    skipped: list[str] = []
    localizers = 0
    for f in files:
        ds = _read(f)
        modality = str(ds.get("Modality", ""))
        if modality in _NON_IMAGE or "Rows" not in ds:
            skipped.append(f"{f.name}: {_NON_IMAGE.get(modality, f'a non-image object ({modality})')}")
            continue
        if any(str(t).upper() == "LOCALIZER" for t in ds.get("ImageType", [])):
            localizers += 1
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    if localizers:
        log.warning("%s: %d localizer/scout image(s) dropped", path.name, localizers)
    if not groups:
        reason = skipped[0] if skipped else "only localizer images"
        raise DataError(f"no image series: {reason}", path=path,
                        hint="give the folder of an image series (CT, MR, ...)")
    if skipped:
        log.warning("%s: %d non-image object(s) skipped (%s)", path.name, len(skipped), skipped[0])
    out = []
    for items, description in _join_positions(list(groups.values())):
        ds = items[0][1]
        num = ds.get("SeriesNumber")
        series = DicomSeries(str(ds.get("SeriesInstanceUID", "")),
                             int(num) if num not in (None, "") else None, description,
                             str(ds.get("Modality", "")), tuple(sorted(f for f, _ in items)),
                             joined=len({str(d.get("SeriesInstanceUID", "")) for _, d in items}))
        out += _phases(series, items)
    return sorted(out, key=lambda s: (s.number if s.number is not None else -1, s.description, s.uid,
                                      s.phase or 0))


# Temporal keys of a single-frame image, and of one frame of an enhanced multi-frame file (functional group,
# attribute), in the order they are tried.
_TEMPORAL_KEYS = ("TemporalPositionIdentifier", "TriggerTime")
_FRAME_TEMPORAL_KEYS = (("FrameContentSequence", "TemporalPositionIndex"),
                        ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))


@dataclass(frozen=True)
class _Image:
    """One 2D image of a series as listed (no pixels): a single-frame file, or one frame of a multi-frame
    file, with its position (rounded to 1 um; ``()`` when absent) and its temporal keys (``None`` when
    absent)."""

    file: Path
    frame: int
    position: tuple[float, ...]
    times: tuple[float | None, ...]


def _number(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _images(items: list[tuple[Path, Any]]) -> list[_Image]:
    """The 2D images of a series' datasets (header only), frame by frame for a multi-frame file."""
    out: list[_Image] = []
    for f, ds in items:
        if "PerFrameFunctionalGroupsSequence" not in ds:
            pos = tuple(round(float(v), 3) for v in ds.get("ImagePositionPatient", []))
            out.append(_Image(f, 0, pos, tuple(_number(ds.get(k)) for k in _TEMPORAL_KEYS)))
            continue
        for i in range(len(ds.PerFrameFunctionalGroupsSequence)):
            plane = _group(ds, i, "PlanePositionSequence", required=False)
            pos = tuple(round(float(v), 3) for v in plane.get("ImagePositionPatient", [])) \
                if plane is not None else ()
            times = []
            for group, attr in _FRAME_TEMPORAL_KEYS:
                item = _group(ds, i, group, required=False)
                times.append(_number(item.get(attr)) if item is not None else None)
            out.append(_Image(f, i, pos, tuple(times)))
    return out


def _phase_split(images: list[_Image]) -> list[list[_Image]] | None:
    """The images of each phase, or ``None`` (one phase, or phases no temporal key tells apart).

    Several images per position make a cine: every position must hold the same number of images, and one
    temporal key (the first present on every image) must order the images of each position without ties;
    phase k is then the k-th image of every position in that order (TriggerTime may differ between
    positions, as it does when each position is acquired in its own breath-hold)."""
    by_pos: dict[tuple[float, ...], list[_Image]] = {}
    for im in images:
        by_pos.setdefault(im.position, []).append(im)
    counts = {len(v) for v in by_pos.values()}
    if len(by_pos) == len(images) or len(counts) != 1 or () in by_pos:
        return None
    for k in range(len(images[0].times)):
        if any(im.times[k] is None for im in images):
            continue
        ordered = [sorted(v, key=lambda im: float(im.times[k] or 0.0)) for v in by_pos.values()]
        if all(len({im.times[k] for im in v}) == len(v) for v in ordered):
            return [[v[p] for v in ordered] for p in range(counts.pop())]
    return None


def _phases(series: DicomSeries, items: list[tuple[Path, Any]]) -> list[DicomSeries]:
    """A series with several images per position (single-frame files, or the frames of an enhanced
    multi-frame file), split into one series per phase (``_phase_split``); else the series unchanged (the
    reader then refuses the shared positions)."""
    split = _phase_split(_images(items))
    if split is None:
        return [series]
    multiframe = any(im.frame for ims in split for im in ims)
    return [DicomSeries(series.uid, series.number, series.description, series.modality,
                        tuple(sorted({im.file for im in ims})), k + 1,
                        tuple(sorted((im.file, im.frame) for im in ims)) if multiframe else (), series.joined)
            for k, ims in enumerate(split)]


def _join_positions(groups: list[list[tuple[Path, Any]]]) -> list[tuple[list[tuple[Path, Any]], str]]:
    """The series' datasets with their description. Series whose images all lie at one single position (a
    cine acquired as one series per slice position) are joined into one when they share orientation, image
    size, pixel spacing, frame of reference, modality and protocol name and one of them holds several
    images; a position acquired again in another series keeps the series of the highest number
    (``_latest_per_position``); the description is their common beginning, cut at a word boundary
    (``_common_description``). A position with fewer phases than the others is joined too, so that the
    reader refuses the set instead of dropping that position."""
    out: list[tuple[list[tuple[Path, Any]], str]] = []
    stacks: dict[tuple, list[list[tuple[Path, Any]]]] = {}
    for items in groups:
        images = _images(items)
        if len({im.position for im in images}) != 1 or images[0].position == ():
            out.append((items, str(items[0][1].get("SeriesDescription", ""))))
            continue
        ds = items[0][1]
        key = (tuple(round(float(v), 4) for v in ds.get("ImageOrientationPatient", [])), ds.get("Rows"),
               ds.get("Columns"), tuple(round(float(v), 4) for v in ds.get("PixelSpacing", [])),
               str(ds.get("FrameOfReferenceUID", "")), str(ds.get("Modality", "")),
               str(ds.get("ProtocolName", "")))
        stacks.setdefault(key, []).append(items)
    for members in stacks.values():
        members.sort(key=_series_order)
        if len(members) == 1 or all(len(_images(items)) == 1 for items in members):
            out += [(items, str(items[0][1].get("SeriesDescription", ""))) for items in members]
            continue
        members = _latest_per_position(members)
        descriptions = [str(items[0][1].get("SeriesDescription", "")) for items in members]
        out.append(([it for items in members for it in items], _common_description(descriptions)))
    return out


def _series_order(items: list[tuple[Path, Any]]) -> tuple[float, str]:
    """Sort key of a series' datasets: SeriesNumber (absent: 0), then SeriesInstanceUID."""
    return (_number(items[0][1].get("SeriesNumber")) or 0.0, str(items[0][1].get("SeriesInstanceUID", "")))


def _latest_per_position(members: list[list[tuple[Path, Any]]]) -> list[list[tuple[Path, Any]]]:
    """Of one-position series sorted by ``_series_order``, the last (highest SeriesNumber) at each position: a
    slice acquired again (same protocol and geometry, another series) replaces the earlier one; the series
    dropped are named in one warning line."""
    latest: dict[tuple[float, ...], list[tuple[Path, Any]]] = {}
    dropped: list[str] = []
    for items in members:
        position = _images(items)[0].position
        if position in latest:
            dropped.append(f"{_series_label(latest[position][0][1])} for {_series_label(items[0][1])}")
        latest[position] = items
    if dropped:
        log.warning("slice position(s) acquired again in a later series: dropped %s", "; ".join(dropped))
        return [items for items in members if any(items is v for v in latest.values())]
    return members


def _series_label(ds: Any) -> str:
    """``series <number> (<description>)`` of a dataset, for messages."""
    desc = str(ds.get("SeriesDescription", ""))
    return f"series {ds.get('SeriesNumber', '?')}" + (f" ({desc})" if desc else "")


def _common_description(descriptions: list[str]) -> str:
    """The descriptions' common beginning, cut back to the last separator when it ends inside a word
    (``SA_10``, ``SA_11``, ``SA_12`` -> ``SA``, not ``SA_1``), without trailing separators; the first
    description when nothing is left."""
    common = os.path.commonprefix(descriptions)
    if common and common[-1].isalnum() and any(len(d) > len(common) and d[len(common)].isalnum()
                                               for d in descriptions):
        common = re.sub(r"[A-Za-z0-9]+$", "", common)
    return common.rstrip(" _-") or descriptions[0]


def read_dicom(path: Path, series_key: str | None = None,
               resample_tilt: bool = False) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    """(data (X, Y, Z), voxel -> RAS affine) of the one series in ``path`` (folder or file), or of the
    series ``series_key`` among several; ``resample_tilt``: a gantry-tilted series resampled onto an
    untilted grid (``read_series``) instead of refused.

    Raises:
        DataError: several series (named) and no ``series_key``, or any refusal of ``read_series``.
    """
    series = list_series(path)
    if series_key is not None:
        series = [s for s in series if s.key == series_key]
        if not series:
            raise DataError("the series is no longer in the folder", path=path, hint="list the folder again")
    if len(series) > 1:
        names = ", ".join(s.name for s in series[:6])
        cine = " (a cine or multi-phase series: one volume per phase)" if series[0].phase else ""
        first = series[0]
        pick = f"--series {first.number}" if first.number is not None and not first.phase \
            else f"--series '{first.name}'"
        raise DataError(f"{len(series)} series in one input{cine} ({names})", path=path,
                        hint=f"prepare: pick one per case with --series, e.g. {pick}; infer: a folder input "
                        f"segments each series (or phase) on its own, --glob '{first.name}' picks one")
    return read_series(series[0], Path(path), resample_tilt)


@dataclass
class _Slice:
    file: Path
    frame: int  # index in a multi-frame file, else 0
    position: npt.NDArray[np.float64]
    orientation: npt.NDArray[np.float64]
    spacing: tuple[float, float]
    shape: tuple[int, int]
    slope: float
    intercept: float
    pixels: npt.NDArray | None  # None when listed from the header alone


def read_dicom_header(path: Path, series_key: str | None = None,
                      resample_tilt: bool = False) -> tuple[tuple[int, int, int], npt.NDArray[np.float64]]:
    """(shape (X, Y, Z), voxel -> RAS affine) of the series ``read_dicom`` reads, from the headers alone
    (``stop_before_pixels``): the same checks and refusals, no pixel data decoded.

    Raises:
        DataError: as ``read_dicom``.
    """
    series = [s for s in list_series(path) if series_key is None or s.key == series_key]
    if len(series) != 1:
        data, aff = read_dicom(path, series_key)  # raises read_dicom's one-line refusal
        return (int(data.shape[0]), int(data.shape[1]), int(data.shape[2])), aff
    slices, aff = _sorted_slices(series[0], Path(path), pixels=False, resample_tilt=resample_tilt)
    rows, cols = slices[0].shape
    return (cols, rows, len(slices)), lps_to_ras(aff)


def read_series(series: DicomSeries, where: Path,
                resample_tilt: bool = False) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    """Read one series into (data (X, Y, Z), voxel -> RAS affine), refusing what is not one volume.

    Args:
        series: from ``list_series``.
        where: the folder or file the user gave (named in errors).
        resample_tilt: a gantry-tilted series (slice positions drifting in plane) is resampled instead of
            refused: each slice is shifted in plane by its drift (linear interpolation, the volume's minimum
            outside), onto a grid whose third axis runs along the slice normal; the data is then float32.
    """
    slices, aff = _sorted_slices(series, where, resample_tilt=resample_tilt)
    identity = all(s.slope == 1.0 and s.intercept == 0.0 for s in slices)
    planes = [s.pixels.T if identity else (s.pixels.T.astype(np.float64) * s.slope + s.intercept)
              for s in slices if s.pixels is not None]
    data = np.stack(planes, axis=-1)
    if resample_tilt:
        shifted = _untilt(data, [s.position for s in slices], aff)
        if shifted is not None:
            return shifted, lps_to_ras(aff)
    return (data if identity else data.astype(np.float32)), lps_to_ras(aff)


def _untilt(data: npt.NDArray, positions: list[npt.NDArray[np.float64]],
            aff: npt.NDArray[np.float64]) -> npt.NDArray[np.float32] | None:
    """``data`` (X, Y, Z) with slice k shifted in plane onto the grid of ``aff`` (voxel -> LPS, third axis
    along the normal), from its position ``positions[k]``; ``None`` when no slice drifts."""
    from scipy.ndimage import shift

    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    row, col, normal = (aff[:3, i] / spacing[i] for i in range(3))
    offsets = []
    for pos in positions:
        d = pos - positions[0]
        d = d - (d @ normal) * normal  # in-plane drift of this slice, mm
        offsets.append((float(d @ row) / spacing[0], float(d @ col) / spacing[1]))
    if max(abs(v) for o in offsets for v in o) < 1e-3:
        return None
    fill = float(data.min())
    out = np.empty(data.shape, dtype=np.float32)
    for k, (dx, dy) in enumerate(offsets):
        out[:, :, k] = shift(data[:, :, k].astype(np.float32), (dx, dy), order=1, mode="constant", cval=fill)
    return out


def series_layout(
    path: Path, series_key: str | None = None
) -> tuple[list[tuple[Path, int]], npt.NDArray[np.float64]]:
    """``(file, frame)`` of each slice of the series in ``path`` in the volume's Z order (the order of
    ``read_dicom``'s third axis; frame: the index in a multi-frame file, else 0), and the voxel -> LPS
    affine."""
    series = [s for s in list_series(path) if series_key is None or s.key == series_key]
    if len(series) != 1:
        raise DataError(f"{len(series)} series match", path=path, hint="give one series")
    slices, aff = _sorted_slices(series[0], Path(path))
    return [(s.file, s.frame) for s in slices], aff


def _sorted_slices(series: DicomSeries, where: Path, pixels: bool = True,
                   resample_tilt: bool = False) -> tuple[list[_Slice], npt.NDArray[np.float64]]:
    """The checked slices sorted along the normal (``pixels``: decoded, else headers only), and the voxel
    -> LPS affine (``resample_tilt``: of the untilted grid, third axis along the normal)."""
    slices: list[_Slice] = []
    for f in series.files:
        ds = _read(f, pixels=pixels)
        _check_pixels(ds, where)
        slices += [s for s in _slices_of(ds, f, pixels)
                   if not series.frames or (s.file, s.frame) in series.frames]
    if len(slices) < MIN_SLICES:
        raise DataError(f"{len(slices)} slice(s); a volume needs at least {MIN_SLICES}", path=where,
                        hint="give the whole series (a single slice or two are not a volume)")
    ref = slices[0]
    for s in slices[1:]:
        if np.max(np.abs(s.orientation - ref.orientation)) > ORIENTATION_TOLERANCE:
            raise DataError("slices with different orientations", path=where,
                            hint="the folder mixes series or stacks; give one series per folder")
        if s.shape != ref.shape or not np.allclose(s.spacing, ref.spacing, rtol=1e-4):
            raise DataError("slices of different sizes or pixel spacings", path=where,
                            hint="the folder mixes series; give one series per folder")
    row, col = ref.orientation[:3], ref.orientation[3:]
    normal = np.cross(row, col)
    slices.sort(key=lambda s: float(s.position @ normal))
    step = _check_positions([s.position for s in slices], normal, where, resample_tilt)
    aff = np.eye(4)
    aff[:3, 0] = row * ref.spacing[1]  # array axis 0 runs along a row (column index), PixelSpacing[1]
    aff[:3, 1] = col * ref.spacing[0]  # array axis 1 runs down a column (row index), PixelSpacing[0]
    aff[:3, 2] = step
    aff[:3, 3] = slices[0].position
    return slices, aff


def _check_positions(positions: list[npt.NDArray[np.float64]], normal: npt.NDArray[np.float64],
                     where: Path, resample_tilt: bool = False) -> npt.NDArray[np.float64]:
    """The mean step between consecutive sorted slice positions, after the spacing and tilt checks (a tilt
    refused, or with ``resample_tilt`` logged and the step's part along the normal returned)."""
    pos = np.stack(positions)
    dist = pos @ normal
    gaps = np.diff(dist)
    if np.any(np.abs(gaps) < 1e-3):
        distinct = int(np.sum(np.abs(gaps) >= 1e-3)) + 1
        raise DataError(f"{len(pos)} images at {distinct} slice position(s) (cine, multi-phase or duplicated "
                        "slices with no TemporalPositionIdentifier/TriggerTime to tell phases apart)",
                        path=where, hint="give one phase per folder (segkit reads one 3D volume per series)")
    med = float(np.median(gaps))
    if np.max(np.abs(gaps - med)) > SPACING_TOLERANCE * med:
        raise DataError(f"uneven spacing between slices ({gaps.min():.3f} to {gaps.max():.3f} mm; "
                        "missing or duplicated slices)", path=where,
                        hint="export the complete series again")
    step = (pos[-1] - pos[0]) / (len(pos) - 1)
    drift = np.linalg.norm(step - (step @ normal) * normal)
    if drift > TILT_TOLERANCE * abs(float(step @ normal)) and resample_tilt:
        log.warning("%s: gantry tilt (%.3f mm in plane per slice) resampled onto an untilted grid",
                    where.name, drift)
        return float(step @ normal) * normal
    if drift > TILT_TOLERANCE * abs(float(step @ normal)):
        raise DataError(f"gantry tilt: slice positions move {drift:.3f} mm in plane per slice", path=where,
                        hint="segkit infer/prepare --resample-tilt resamples it onto an untilted grid "
                        "(or resample it first, e.g. with dcm2niix)")
    return step


def _check_pixels(ds: Any, path: Path) -> None:
    """Refuse colour pixel data and a transfer syntax no installed decoder reads, before decoding."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("SamplesPerPixel", 1)) != 1 or not photometric.startswith("MONOCHROME"):
        raise DataError(f"colour pixel data ({photometric}); segkit reads greyscale images", path=path,
                        hint="give the greyscale series the colour one was derived from")
    from pydicom.pixels.decoders.base import get_decoder

    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None and ts.is_compressed:
        try:
            available = get_decoder(ts).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise DataError(f"no decoder installed for the transfer syntax {ts.name} ({ts})", path=path,
                            hint="install pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg and pyjpegls")


def _slices_of(ds: Any, path: Path, decode: bool = True) -> list[_Slice]:
    """The 2D slices of one dataset: itself, or each frame of an enhanced multi-frame file (``decode``:
    with their pixels, else from the header alone)."""
    frames: list[npt.NDArray | None] | npt.NDArray = [None] * int(ds.get("NumberOfFrames", 1) or 1)
    if decode:
        try:
            pixels = np.asarray(ds.pixel_array)
        except Exception as e:  # noqa: BLE001 - pydicom's decoders raise many types for broken pixel data
            raise DataError(f"cannot decode the pixel data ({type(e).__name__}: {e})", path=path,
                            hint="the file is truncated or corrupt; export the series again") from e
        frames = pixels[None] if pixels.ndim == 2 else pixels
    try:
        if "PerFrameFunctionalGroupsSequence" not in ds:
            slope, inter = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
            return [_Slice(path, i, _vec(ds.ImagePositionPatient, 3), _vec(ds.ImageOrientationPatient, 6),
                           _pair(ds.PixelSpacing), (int(ds.Rows), int(ds.Columns)), slope, inter, fr)
                    for i, fr in enumerate(frames)]
        out = []
        for i, fr in enumerate(frames):
            pos = _group(ds, i, "PlanePositionSequence")
            ori = _group(ds, i, "PlaneOrientationSequence")
            meas = _group(ds, i, "PixelMeasuresSequence")
            pvt = _group(ds, i, "PixelValueTransformationSequence", required=False)
            slope = float(pvt.get("RescaleSlope", 1) or 1) if pvt is not None else 1.0
            inter = float(pvt.get("RescaleIntercept", 0) or 0) if pvt is not None else 0.0
            out.append(_Slice(path, i, _vec(pos.ImagePositionPatient, 3),
                              _vec(ori.ImageOrientationPatient, 6),
                              _pair(meas.PixelSpacing), (int(ds.Rows), int(ds.Columns)), slope, inter, fr))
        return out
    except (AttributeError, KeyError, ValueError, TypeError, IndexError) as e:
        raise DataError(f"missing or invalid image geometry ({type(e).__name__}: {e})", path=path,
                        hint="the file lacks Image Position/Orientation (Patient) or Pixel Spacing") from e


def _group(ds: Any, frame: int, name: str, required: bool = True) -> Any:
    """Functional group item ``name`` of ``frame``: per-frame first, then shared."""
    for seq in (ds.PerFrameFunctionalGroupsSequence[frame],
                *(ds.SharedFunctionalGroupsSequence if "SharedFunctionalGroupsSequence" in ds else [])):
        if name in seq and len(seq[name].value):
            return seq[name].value[0]
    if required:
        raise KeyError(f"{name} of frame {frame + 1}")
    return None


def _vec(value: Any, n: int) -> npt.NDArray[np.float64]:
    arr = np.asarray([float(v) for v in value], dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"expected {n} values, got {arr.size}")
    return arr


def _pair(value: Any) -> tuple[float, float]:
    a, b = (float(v) for v in value)
    return a, b
