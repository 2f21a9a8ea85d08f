"""The one owner of volumes: which paths are volumes, in which format, read into one record, written back.

Formats (``FORMATS``; the README's formats table lists them with their libraries):

==========  ===========================================  =======================================
name        what                                          geometry
==========  ===========================================  =======================================
nifti       ``.nii``, ``.nii.gz`` (nibabel)               the header's qform/sform
nrrd        ``.nrrd``, ``.nhdr``, ``.seg.nrrd`` (pynrrd)  'space', 'space directions', 'space origin'
metaimage   ``.mha``, ``.mhd`` + raw (SimpleITK)          Offset, ElementSpacing, TransformMatrix (LPS)
numpy       ``.npy``, ``.npz`` (numpy)                    sidecar JSON (``segkit.io.arrays``)
hdf5        ``.h5``, ``.hdf5`` (h5py)                     sidecar JSON (``segkit.io.arrays``)
dicom       a series folder, or one multi-frame file,     Image Position/Orientation (Patient),
            recognised by content (``segkit.io.dicom``)   Pixel Spacing (LPS)
dicom-seg   a DICOM Segmentation file (highdicom)         its plane positions (LPS)
==========  ===========================================  =======================================

Every loaded volume carries a (4, 4) float64 affine mapping voxel indices to RAS+ world coordinates in mm
(nibabel's convention), whatever the file's own world space (``segkit.io.world`` converts LPS). Every stage
asks here whether a path is a volume (``volume_format``, ``is_volume``), never by its suffix itself.
Saving is atomic; label maps are stored as uint8/uint16.

Example:
    >>> vol = load_volume(Path("case_000_image.nii.gz"))
    >>> vol.data.shape, vol.affine.shape, vol.format
    ((64, 64, 40), (4, 4), 'nifti')
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import nrrd
import numpy as np
import numpy.typing as npt
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError, SpatialImage

from segkit.errors import DataError
from segkit.io import arrays, dicom, metaimage
from segkit.io.atomic import atomic_path
from segkit.io.world import ras_to_lps

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr", ".seg.nrrd")


class CaseKind(str, Enum):
    """What one case of a dataset is: a 3D volume (any format above, DICOM series included) or a patient's
    folder of 2D slice images (chest-CT's JPG/PNG). Compares equal to its value (``"volume"``)."""

    VOLUME = "volume"
    SLICES2D = "slices2d"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

# NRRD 'space' -> sign flips that turn that world into RAS+ (per world axis x, y, z).
_SPACE_TO_RAS: dict[str, tuple[float, float, float]] = {
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
    "scanner-xyz": (1.0, 1.0, 1.0),
    "3d-right-handed": (1.0, 1.0, 1.0),
}

_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, ImageFileError, HeaderDataError,
                nrrd.NRRDError, KeyError, TypeError, IndexError, RuntimeError)  # RuntimeError: SimpleITK


@dataclass(frozen=True)
class Volume:
    """A 3D array with its geometry.

    Attributes:
        data: (X, Y, Z) array as stored (no reorientation; DICOM: X along a row, Y down the columns, Z along
            the slice normal); dtype as stored (labels stay integer; DICOM CT in HU as float32).
        affine: (4, 4) float64 voxel -> RAS+ world (mm) affine.
        path: the file (or DICOM series folder) it came from (``None`` for volumes built in memory).
        format: the ``FORMATS`` name it was read from (``""`` in memory).
    """

    data: npt.NDArray
    affine: npt.NDArray[np.float64]
    path: Path | None = None
    format: str = ""

    @property
    def name(self) -> str:
        """File name for messages (``<memory>`` when there is no file)."""
        return self.path.name if self.path is not None else "<memory>"


class TooFewSlicesError(DataError):
    """A volume has too few slices for the blocks of its ``Slab`` (``prepare.slabs``)."""


@dataclass(frozen=True)
class Slab:
    """One of ``count`` contiguous blocks of slices along canonical (RAS) axis ``axis`` of a volume, with at
    least ``gap_mm`` of slices left out between neighbouring blocks (``prepare.slabs``: one labelled volume
    cut into cases that can sit in different splits; the slices of a gap belong to no block).

    Attributes:
        axis: the canonical axis cut (``prepare.axis``: 0 sagittal, 1 coronal, 2 axial), whichever array axis
            of the file it is stored along.
        index: 1-based block number, in the file's order along that axis.
        count: the number of blocks.
        gap_mm: the thickness left out between two blocks, rounded up to whole slices.
    """

    axis: int
    index: int
    count: int
    gap_mm: float

    @staticmethod
    def gap_slices(gap_mm: float, step: float) -> int:
        """Whole slices of thickness ``step`` (mm) that leave at least ``gap_mm`` between two blocks."""
        return math.ceil(gap_mm / step - 1e-6) if gap_mm > 0 else 0

    def bounds(self, shape: tuple[int, ...], affine: npt.NDArray[np.float64], path: Path | None = None
               ) -> tuple[int, int, int]:
        """``(array axis, start, stop)`` of the block in a volume of ``shape`` and ``affine``: the slices left
        after ``count - 1`` gaps are shared out as evenly as possible, the first blocks taking one more.

        Raises:
            TooFewSlicesError: fewer slices than the blocks and gaps need (one line naming ``path``).
        """
        affine = np.asarray(affine, dtype=np.float64)
        raw = int(np.flatnonzero(nib.orientations.io_orientation(affine)[:, 0] == self.axis)[0])
        n = int(shape[raw])
        step = float(np.linalg.norm(affine[:3, raw])) or 1.0
        gap = self.gap_slices(self.gap_mm, step)
        usable = n - (self.count - 1) * gap
        if usable < self.count:
            raise TooFewSlicesError(
                f"{n} slices along axis {self.axis} cannot hold {self.count} slabs with gaps of {gap} slices "
                f"({self.gap_mm:g} mm)", path=path, hint="lower prepare.slabs or prepare.slab_gap_mm")
        size, extra = divmod(usable, self.count)
        start = sum(size + (j < extra) + gap for j in range(self.index - 1))
        return raw, start, start + size + (self.index - 1 < extra)

    def geometry(self, shape: tuple[int, ...], affine: npt.NDArray[np.float64], path: Path | None = None
                 ) -> tuple[tuple[int, ...], npt.NDArray[np.float64], tuple[slice, ...]]:
        """The block's shape, its affine (every voxel keeps its world position) and the index that takes it
        out of the whole array."""
        raw, start, stop = self.bounds(shape, affine, path)
        index = tuple(slice(start, stop) if i == raw else slice(None) for i in range(len(shape)))
        shift = np.eye(4)
        shift[raw, 3] = start
        block = tuple(stop - start if i == raw else int(s) for i, s in enumerate(shape))
        return block, np.asarray(affine, dtype=np.float64) @ shift, index

    def cut(self, vol: Volume) -> Volume:
        """The block of ``vol``."""
        _, affine, index = self.geometry(vol.data.shape, vol.affine, vol.path)
        return Volume(np.ascontiguousarray(vol.data[index]), affine, vol.path, vol.format)

    def describe(self) -> str:
        """``block k of n`` (for messages)."""
        return f"block {self.index} of {self.count}"

    def to_json(self) -> dict[str, Any]:
        return {"axis": self.axis, "index": self.index, "count": self.count, "gap_mm": self.gap_mm}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Slab:
        return cls(int(obj["axis"]), int(obj["index"]), int(obj["count"]), float(obj["gap_mm"]))


@dataclass(frozen=True)
class VolumeRef:
    """One volume to read: a file or DICOM folder, and for a folder holding several DICOM series the one to
    take.

    Attributes:
        path: the volume file, or the folder of a DICOM series.
        series_key: the ``DicomSeries.key`` of one series (or one phase of a cine series) in ``path``
            (``None``: the path's only volume).
        name: the case id of the outputs (``""``: the file name without its volume suffix).
        phase: of a 4D NIfTI file (a cine or multi-phase series): the 1-based index along its 4th axis
            (``None``: a 3D volume).
        resample_tilt: a DICOM series with gantry tilt is resampled onto an untilted grid
            (``segkit.io.dicom.read_series``) instead of refused.
        slab: read only this block of the volume's slices (``Slab``); ``None``: the whole volume.
    """

    path: Path
    series_key: str | None = None
    name: str = ""
    phase: int | None = None
    resample_tilt: bool = False
    slab: Slab | None = None

    @property
    def case_id(self) -> str:
        """``name``, else the file name without its volume suffix (``ct.nii.gz`` -> ``ct``)."""
        if self.name:
            return self.name
        sfx = volume_suffix(self.path)
        return self.path.name[: -len(sfx)] if sfx else self.path.name


@dataclass(frozen=True)
class VolumeFormat:
    """One registered volume format.

    Attributes:
        name: ``nifti``, ``nrrd``, ``metaimage``, ``numpy``, ``hdf5`` or ``dicom``.
        suffixes: file name endings, lower case (DICOM files are also recognised by content).
        library: the package that reads it (for messages and the README).
        read: ``path -> (data, voxel -> RAS affine)``.
        write: ``(path, data, affine) -> None`` for formats segkit writes as a single file, else ``None``.
        header: ``path -> (shape, voxel -> RAS affine)`` from the header alone (no voxel data read);
            ``None``: ``read_header`` reads the volume.
    """

    name: str
    suffixes: tuple[str, ...]
    library: str
    read: Callable[[Path], tuple[npt.NDArray, npt.NDArray[np.float64]]]
    write: Callable[[Path, npt.NDArray, npt.NDArray[np.float64]], None] | None = None
    header: Callable[[Path], tuple[tuple[int, ...], npt.NDArray[np.float64]]] | None = None


def volume_suffix(path: Path) -> str:
    """The volume extension of ``path`` (``.nii.gz``, ``.seg.nrrd``, ``.mha``, ``.npy``, ``.dcm`` ...), lower
    case, or ``''``."""
    name = Path(path).name.lower()
    for sfx in _ALL_SUFFIXES:
        if name.endswith(sfx) and len(name) > len(sfx):
            return sfx
    return ""


def volume_format(path: Path) -> VolumeFormat | None:
    """The format of ``path``, or ``None`` when it is not a volume: by suffix; a folder holding DICOM files
    (at any depth) or a file with the DICOM preamble is ``dicom``."""
    path = Path(path)
    if path.is_dir():
        return FORMATS["dicom"] if dicom.holds_dicom(path) else None
    sfx = volume_suffix(path)
    if sfx and sfx != ".dcm":
        return next(f for f in FORMATS.values() if sfx in f.suffixes)
    if not path.is_file() or not dicom.is_dicom_file(path):
        return None
    return FORMATS["dicom-seg"] if dicom.is_seg_file(path) else FORMATS["dicom"]


def is_volume(path: Path) -> bool:
    """Whether ``path`` is a volume file or a DICOM folder that segkit reads (``volume_format``)."""
    return volume_format(path) is not None


def supported_text() -> str:
    """The accepted inputs, for hints: ``.nii, .nii.gz, ..., DICOM series folders``."""
    sfx = [s for f in FORMATS.values() if f.name != "dicom" for s in f.suffixes if s != ".seg.nrrd"]
    return ", ".join(sfx) + ", DICOM series folders or files"


def volume_inputs(folder: Path) -> list[VolumeRef]:
    """The volumes of a folder: its volume files (top level; a 4D NIfTI file one volume per phase,
    ``volume_refs``), then every DICOM series found at any depth, each named by series number and description
    (``s004_T1w``; a counter is appended to repeated names). A DICOM series folder of its own is one
    ``VolumeRef`` named after the folder."""
    folder = Path(folder)
    files = [r for p in sorted(folder.iterdir())
             if p.is_file() and not p.name.startswith(".") and volume_suffix(p) not in ("", ".dcm")
             for r in volume_refs(p)]
    if not dicom.holds_dicom(folder):
        return files
    refs = dicom_series_refs(folder)
    if len(refs) == 1 and not files:
        return [VolumeRef(folder)]
    return files + refs


def dicom_series_refs(folder: Path) -> list[VolumeRef]:
    """Every DICOM series (every phase of a cine series) under ``folder``, named ``s<number>_<description>``
    (``DicomSeries.name``; a counter is appended to repeated names).

    Raises:
        DataError: as ``segkit.io.dicom.list_series``.
    """
    seen: dict[str, int] = {}
    refs = []
    for s in dicom.list_series(Path(folder)):
        seen[s.name] = seen.get(s.name, 0) + 1
        name = s.name if seen[s.name] == 1 else f"{s.name}_{seen[s.name]}"
        refs.append(VolumeRef(Path(folder), s.key, name))
    return refs


def picked_volume(ref: VolumeRef) -> dict[str, Any] | None:
    """What ``ref`` picks out of a path holding several volumes, for records: ``{"name", "number",
    "description", "phase"}`` (a DICOM series: its number and description, never its UIDs or patient data;
    a phase of a 4D file: ``phase`` only); ``None`` for a path's only volume.

    Raises:
        DataError: as ``segkit.io.dicom.list_series``.
    """
    if ref.series_key is None and ref.phase is None:
        return None
    if ref.series_key is not None:
        for s in dicom.list_series(ref.path):
            if s.key == ref.series_key:
                return {"name": ref.case_id, "number": s.number, "description": s.description,
                        "phase": s.phase}
    return {"name": ref.case_id, "number": None, "description": "", "phase": ref.phase}


def picked_ref(path: Path, picked: dict[str, Any] | None) -> VolumeRef:
    """The ``VolumeRef`` a ``picked_volume`` record names in ``path`` (``None``: the path itself): a phase of
    a 4D file by its index, a DICOM series (or phase) by its name in the folder's listing.

    Raises:
        DataError: the folder no longer holds a series of that name.
    """
    path = Path(path)
    if not picked:
        return VolumeRef(path)
    if not path.is_dir():
        return VolumeRef(path, name=str(picked["name"]), phase=picked.get("phase"))
    for ref in dicom_series_refs(path):
        if ref.case_id == picked["name"]:
            return ref
    raise DataError(f"no series '{picked['name']}' in the folder any more", path=path,
                    hint="the folder changed since prepare; prepare again")


def volume_phases(path: Path) -> int:
    """The number of phases of a NIfTI file, from its header: the length of a 4th axis longer than 1, else 1
    (a 3D volume; other formats are not looked into here, ``load_volume`` refuses their 4D data).

    Raises:
        DataError: an unreadable header.
    """
    fmt = volume_format(path)
    if fmt is None or fmt.name != "nifti":
        return 1
    shape, _ = read_header(path)
    return shape[3] if len(shape) == 4 and shape[3] > 1 else 1


def volume_refs(path: Path) -> list[VolumeRef]:
    """The volumes of one volume file: itself, or for a 4D NIfTI (a cine or multi-phase series) one
    ``VolumeRef`` per phase named ``<case>_phaseNN``, as a cine DICOM series gives one per phase."""
    path = Path(path)
    n = volume_phases(path)
    if n == 1:
        return [VolumeRef(path)]
    case = VolumeRef(path).case_id
    return [VolumeRef(path, name=f"{case}_phase{k:02d}", phase=k) for k in range(1, n + 1)]


def load_volume(path: Path | VolumeRef) -> Volume:
    """Read any registered format as a 3D ``Volume`` with a RAS+ affine.

    A trailing singleton 4th (and higher) dimension is squeezed away.

    Args:
        path: a volume file (``FORMATS``), a folder holding one DICOM series, or a ``VolumeRef`` naming one
            series of a folder or one phase of a 4D file.

    Returns:
        ``Volume(data (X, Y, Z), affine (4, 4) float64 voxel -> RAS mm, path, format)``.

    Raises:
        DataError: missing file, unsupported type, corrupt or truncated file, data that is not 3D (a 4D
            volume without ``phase``: the hint names the phases), a DICOM series that is not one valid volume
            (``segkit.io.dicom``).
    """
    ref = path if isinstance(path, VolumeRef) else VolumeRef(Path(path))
    series_key, phase, path = ref.series_key, ref.phase, ref.path
    if not path.exists():
        raise DataError(
            "volume file not found", path=path, hint="check the path and the --image-glob/--label-glob"
        )
    fmt = FORMATS["dicom"] if series_key is not None else volume_format(path)
    if fmt is None:
        raise DataError(
            f"unsupported volume file type '{''.join(path.suffixes) or path.name}'",
            path=path,
            hint=f"use one of {supported_text()}",
        )
    try:
        data, affine = (dicom.read_dicom(path, series_key, ref.resample_tilt) if fmt.name == "dicom"
                        else fmt.read(path))
    except DataError:
        raise
    except _READ_ERRORS as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]  # SimpleITK: several lines
        raise DataError(
            f"cannot read volume ({type(e).__name__}: {(lines[-1] if lines else '')[:200]})",
            path=path,
            hint="the file is corrupt or truncated; download or convert it again",
        ) from e
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if phase is not None:
        data = _phase_of(data, phase, path)
    if data.ndim == 4 and fmt.name == "nifti":
        first = f"{VolumeRef(path).case_id}_phase01"
        raise DataError(
            f"a 4D volume of {data.shape[3]} phases (shape {tuple(int(s) for s in data.shape)})",
            path=path,
            hint=f"infer segments each phase ({first}, ...); prepare: pick one with --series '*_phase01'",
        )
    if data.ndim != 3:
        raise DataError(
            f"expected a 3D volume, got {data.ndim}D data of shape {tuple(int(s) for s in data.shape)}",
            path=path,
            hint="give one 3D image per file (split 4D series into 3D volumes first)",
        )
    vol = Volume(data=data, affine=affine, path=path, format=fmt.name)
    return ref.slab.cut(vol) if ref.slab is not None else vol


def _phase_of(data: npt.NDArray, phase: int, path: Path) -> npt.NDArray:
    """Phase ``phase`` (1-based) of 4D ``data`` along its 4th axis."""
    if data.ndim != 4 or not 1 <= phase <= data.shape[3]:
        raise DataError(f"no phase {phase} in data of shape {tuple(int(s) for s in data.shape)}", path=path,
                        hint="the file changed since it was listed; list it again")
    return np.ascontiguousarray(data[..., phase - 1])


def read_header(path: Path | VolumeRef) -> tuple[tuple[int, ...], npt.NDArray[np.float64]]:
    """(shape, voxel -> RAS affine) of a volume from its header alone, no voxel data read: the NIfTI and
    NRRD headers (a 4D file: its 4 axes; one phase of it: 3), the MetaImage header text, the ``.npy`` header
    or HDF5 dataset shape with the sidecar's geometry, the DICOM headers (``stop_before_pixels``; one series
    of a folder by its ``series_key``). A DICOM-SEG file is read whole. A ``VolumeRef`` with a ``slab``: the
    block's shape and affine.

    Raises:
        DataError: an unreadable header or unknown format, a MetaImage/NumPy/HDF5 volume that is not 3D, or
            a DICOM series that ``load_volume`` refuses (one line naming the file); too few slices for the
            slab.
    """
    ref = path if isinstance(path, VolumeRef) else VolumeRef(Path(path))
    shape, affine = _whole_header(ref)
    if ref.slab is None:
        return shape, affine
    block, affine, _ = ref.slab.geometry(shape, affine, ref.path)
    return block, affine


def _whole_header(ref: VolumeRef) -> tuple[tuple[int, ...], npt.NDArray[np.float64]]:
    """``read_header`` of the whole volume (``ref.slab`` ignored)."""
    path = ref.path
    fmt = FORMATS["dicom"] if ref.series_key is not None else volume_format(path)
    if fmt is not None and fmt.name == "dicom":
        return dicom.read_dicom_header(path, ref.series_key, ref.resample_tilt)
    if fmt is not None and fmt.header is not None:
        try:
            shape, affine = fmt.header(path)
        except DataError:
            raise
        except _READ_ERRORS as e:
            raise DataError(f"cannot read the volume header: {type(e).__name__}: {e}", path=path,
                            hint="the file is corrupt or truncated; download or convert it again") from e
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != 3:
            raise DataError(f"expected a 3D volume, got {len(shape)}D data of shape {shape}", path=path,
                            hint="give one 3D image per file (split 4D series into 3D volumes first)")
        return shape, affine
    if fmt is not None and fmt.name not in ("nifti", "nrrd"):
        vol = load_volume(replace(ref, slab=None))
        return tuple(int(s) for s in vol.data.shape), vol.affine
    try:
        if fmt is not None and fmt.name == "nrrd":
            header = nrrd.read_header(str(path))
            shape = tuple(int(s) for s in header["sizes"])
            return shape, nrrd_affine(header, ndim=len(shape), path=path)
        img = cast(SpatialImage, nib.load(str(path)))  # nibabel types load() as the base FileBasedImage
        shape = tuple(int(s) for s in img.shape)
        return (shape[:3] if ref.phase is not None else shape), np.asarray(img.affine, dtype=np.float64)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - nibabel/pynrrd raise many types for broken headers
        raise DataError(f"cannot read the volume header: {type(e).__name__}: {e}", path=path,
                        hint="the file is corrupt or not NIfTI/NRRD; export it again") from e


# deflate cannot compress better than about 1032:1,
# so a gzip file of N bytes holds at most ~1032 N bytes of data
_GZIP_MAX_RATIO = 1100


def check_claimed_size(
    path: Path,
    shape: tuple[int, ...],
    itemsize: int,
    stored: int | None,
    compressed: bool,
    memory_itemsize: int,
) -> None:
    """Refuse a header whose voxel count cannot be in the file, or would not fit in memory, before allocating.

    Args:
        path: the volume file (for the message).
        shape: the shape the header claims.
        itemsize: bytes per stored voxel.
        stored: bytes of voxel data available in the file (file size minus header), ``None`` when unknown.
        compressed: whether ``stored`` bytes are gzip-compressed.
        memory_itemsize: bytes per voxel once read (8 when a scale factor turns integers into float64).

    Raises:
        DataError: the header claims more data than the file can hold (truncated file or corrupt header), or
            the volume needs more memory than this machine has available.
    """
    voxels = math.prod(int(s) for s in shape)
    claimed = voxels * itemsize
    dims = "x".join(str(int(s)) for s in shape)
    if stored is not None and claimed > stored * (_GZIP_MAX_RATIO if compressed else 1):
        raise DataError(
            f"the header claims {dims} voxels ({_gib(claimed)} of data) "
            f"but the file holds only {stored} bytes"
            + (" compressed" if compressed else ""),
            path=path,
            hint="the file is truncated or its header is corrupt; export or download it again",
        )
    need = voxels * memory_itemsize
    avail = _available_memory()
    if avail is not None and need > avail:
        raise DataError(
            f"a {dims} volume needs {_gib(need)} of memory; {_gib(avail)} is available",
            path=path,
            hint="crop or downsample the volume first, or use a machine with more memory",
        )


def _gib(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable, else total physical), ``None`` if
    unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _read_nifti(path: Path) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    img = cast(nib.Nifti1Image, nib.load(str(path)))  # a .nii/.nii.gz file: Nifti1Image (or its Nifti2Image)
    proxy = img.dataobj
    itemsize = img.get_data_dtype().itemsize
    scaled = getattr(proxy, "slope", 1.0) not in (1.0, None) or getattr(proxy, "inter", 0.0) not in (
        0.0,
        None,
    )
    gz = volume_suffix(path) == ".nii.gz"
    stored = path.stat().st_size - (0 if gz else int(getattr(proxy, "offset", 0)))
    check_claimed_size(path, img.shape, itemsize, stored, gz, max(itemsize, 8) if scaled else itemsize)
    data = np.asanyarray(proxy)
    return np.asarray(data), np.asarray(img.affine, dtype=np.float64)


def _read_nrrd(path: Path) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    header = nrrd.read_header(str(path))
    shape = tuple(int(s) for s in header["sizes"])
    try:
        itemsize = np.dtype(nrrd.reader._determine_datatype(header)).itemsize  # pynrrd's own type table
    except Exception:  # noqa: BLE001 - a private helper: if it moves, a lower bound only weakens the check
        itemsize = 1
    encoding = str(header.get("encoding", "raw")).lower()
    stored: int | None = None
    if encoding in ("raw", "gzip", "gz") and "data file" not in header and "datafile" not in header:
        stored = path.stat().st_size  # header bytes included: an upper bound is enough here
    check_claimed_size(path, shape, itemsize, stored, encoding != "raw", itemsize)
    data, header = nrrd.read(str(path))
    return np.asarray(data), nrrd_affine(header, ndim=data.ndim, path=path)


def nrrd_affine(header: dict, ndim: int = 3, path: Path | None = None) -> npt.NDArray[np.float64]:
    """(4, 4) voxel -> RAS+ affine from a pynrrd header.

    Uses 'space directions' (one row per axis; rows of non-spatial axes are NaN/None and are skipped),
    'space origin' and 'space' (LPS/RAS/LAS ... are converted to RAS+). Without 'space directions' the
    'spacings' field (or 1 mm) gives a diagonal affine.

    Raises:
        DataError: an unknown 'space' or spatial directions that are not 3 x 3.
    """
    space = str(header.get("space", "right-anterior-superior")).lower()
    if space not in _SPACE_TO_RAS:
        raise DataError(
            f"unsupported NRRD space '{space}'",
            path=path,
            hint=f"supported: {', '.join(sorted(_SPACE_TO_RAS))}",
        )
    flips = np.diag([*_SPACE_TO_RAS[space], 1.0])
    affine = np.eye(4)
    dirs = header.get("space directions")
    if dirs is not None:
        rows = [np.asarray(r, dtype=np.float64) for r in dirs if r is not None]
        rows = [r for r in rows if r.size and np.all(np.isfinite(r))]
        if len(rows) != 3 or any(r.shape != (3,) for r in rows):
            raise DataError(f"NRRD 'space directions' is not 3 x 3: {dirs!r}", path=path,
                            hint="export the volume as 3D NIfTI or NRRD")
        affine[:3, :3] = np.stack(rows, axis=1)  # column i = world step of array axis i
    else:
        spacings = header.get("spacings")
        sp = (
            [float(s) for s in spacings if s is not None and np.isfinite(s)][:3]
            if spacings is not None
            else []
        )
        if len(sp) == 3:
            affine[:3, :3] = np.diag(sp)
        log.warning("%s: NRRD without 'space directions'; assuming axis-aligned RAS", path)
    origin = header.get("space origin")
    if origin is not None:
        affine[:3, 3] = np.asarray(origin, dtype=np.float64)[:3]
    return flips @ affine


def storage_array(data: npt.ArrayLike) -> npt.NDArray:
    """``data`` in the dtype segkit stores it as: integers with values in 0..255 as uint8, in 0..65535 as
    uint16, other integers as int32; booleans as uint8; floating data as float32."""
    arr = np.asarray(data)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 255:
            return arr.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return arr.astype(np.uint16)
        return arr.astype(np.int32)
    return arr.astype(np.float32)


def save_volume(path: Path, data: npt.NDArray, affine: npt.ArrayLike) -> Path:
    """Write a 3D array atomically in the format named by the suffix of ``path``.

    NIfTI (``.nii``, ``.nii.gz``: qform and sform both set from ``affine``, code 1, scanner), NRRD
    (``.nrrd``, gzip, LPS space as 3D Slicer writes it), MetaImage (``.mha``), NumPy (``.npy``, ``.npz``) or
    HDF5 (``.h5``, ``.hdf5``) with the sidecar ``<name>.json``. Values are stored as ``storage_array`` says.

    Args:
        path: destination.
        data: (X, Y, Z) array.
        affine: (4, 4) voxel -> RAS+ affine in mm.

    Returns:
        ``path``.

    Raises:
        DataError: a suffix segkit does not write (``.nhdr``, ``.mhd``, DICOM: see ``segkit.io.dicom``).
    """
    path = Path(path)
    fmt = FORMATS.get(_format_name_of_suffix(volume_suffix(path)) or "")
    if fmt is None or fmt.write is None or volume_suffix(path) in (".nhdr", ".mhd"):
        writable = [s for f in FORMATS.values() if f.write for s in f.suffixes if s not in (".nhdr", ".mhd")]
        raise DataError("segkit does not write this volume type", path=path,
                        hint=f"name the file *{', *'.join(writable)}")
    arr = storage_array(data)
    aff = np.asarray(affine, dtype=np.float64)
    with atomic_path(path) as tmp:
        fmt.write(tmp, arr, aff)
    if fmt.name in ("numpy", "hdf5"):
        with atomic_path(path.with_name(path.name + ".json")) as tmp:
            tmp.write_text(arrays.sidecar_text(aff), encoding="utf-8")
    return path


def _format_name_of_suffix(sfx: str) -> str | None:
    return next((f.name for f in FORMATS.values() if sfx and sfx in f.suffixes), None)


def _write_nifti(path: Path, arr: npt.NDArray, aff: npt.NDArray[np.float64]) -> None:
    img = nib.Nifti1Image(arr, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_data_dtype(arr.dtype)
    nib.save(img, str(path))


def nrrd_header(affine: npt.ArrayLike) -> dict:
    """The pynrrd header fields of a 3D volume with ``affine`` (voxel -> RAS): LPS space, gzip."""
    lps = ras_to_lps(affine)
    return {"space": "left-posterior-superior", "space directions": lps[:3, :3].T.tolist(),
            "space origin": lps[:3, 3].tolist(), "kinds": ["domain"] * 3, "encoding": "gzip"}


def _write_nrrd(path: Path, arr: npt.NDArray, aff: npt.NDArray[np.float64]) -> None:
    header = nrrd_header(aff)
    if arr.ndim == 4:  # (X, Y, Z, K) probabilities: a trailing vector axis without a world direction
        header["space directions"] = [*header["space directions"], [np.nan] * 3]
        header["kinds"] = [*header["kinds"], "vector"]
    nrrd.write(str(path), arr, header, index_order="F")


def _write_array(path: Path, arr: npt.NDArray, aff: npt.NDArray[np.float64]) -> None:
    arrays.write_array(path, arr)


def _read_dicom_seg(path: Path) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    from segkit.io.dicomseg import read_dicom_seg  # highdicom is imported only for SEG files

    return read_dicom_seg(path)


FORMATS: dict[str, VolumeFormat] = {
    f.name: f
    for f in (
        VolumeFormat("nifti", (".nii.gz", ".nii"), "nibabel", _read_nifti, _write_nifti),
        VolumeFormat("nrrd", (".seg.nrrd", ".nrrd", ".nhdr"), "pynrrd", _read_nrrd, _write_nrrd),
        VolumeFormat("metaimage", metaimage.METAIMAGE_SUFFIXES, "SimpleITK", metaimage.read_metaimage,
                     metaimage.write_metaimage, metaimage.read_metaimage_header),
        VolumeFormat("numpy", arrays.NUMPY_SUFFIXES, "numpy", arrays.read_array, _write_array,
                     arrays.read_array_header),
        VolumeFormat("hdf5", arrays.HDF5_SUFFIXES, "h5py", arrays.read_array, _write_array,
                     arrays.read_array_header),
        VolumeFormat("dicom", (".dcm",), "pydicom", dicom.read_dicom),
        VolumeFormat("dicom-seg", (), "highdicom", _read_dicom_seg),
    )
}
# longest first, so that ".seg.nrrd" wins over ".nrrd" and ".nii.gz" over ".gz"-less names
_ALL_SUFFIXES = sorted((s for f in FORMATS.values() for s in f.suffixes), key=len, reverse=True)
SUPPORTED = tuple(_ALL_SUFFIXES)
