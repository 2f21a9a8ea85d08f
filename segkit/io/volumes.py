"""3D volumes: NIfTI (.nii, .nii.gz) through nibabel and NRRD (.nrrd, .nhdr) through pynrrd.

Every loaded volume carries a (4, 4) float64 affine mapping voxel indices to RAS+ world coordinates in mm
(nibabel's convention), whatever the file's own world space (NRRD files usually say LPS). Saving writes NIfTI
atomically, label maps as uint8/uint16 with qform and sform both set from the affine.

Example:
    >>> vol = load_volume(Path("case_000_image.nii.gz"))
    >>> vol.data.shape, vol.affine.shape
    ((64, 64, 40), (4, 4))
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import nrrd
import numpy as np
import numpy.typing as npt
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError, SpatialImage

from segkit.errors import DataError
from segkit.io.atomic import atomic_path

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
SUPPORTED = NIFTI_SUFFIXES + NRRD_SUFFIXES

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
                nrrd.NRRDError, KeyError, TypeError, IndexError)


@dataclass(frozen=True)
class Volume:
    """A 3D array with its geometry.

    Attributes:
        data: (X, Y, Z) array as stored in the file (no reorientation); dtype as stored (labels stay integer).
        affine: (4, 4) float64 voxel -> RAS+ world (mm) affine.
        path: the file it came from (``None`` for volumes built in memory).
    """

    data: npt.NDArray
    affine: npt.NDArray[np.float64]
    path: Path | None = None

    @property
    def name(self) -> str:
        """File name for messages (``<memory>`` when there is no file)."""
        return self.path.name if self.path is not None else "<memory>"


def volume_suffix(path: Path) -> str:
    """The volume extension of ``path`` (``.nii.gz``, ``.nii``, ``.nrrd`` or ``.nhdr``), lower case, or
    ``''``."""
    name = Path(path).name.lower()
    for sfx in (".nii.gz", ".nii", ".nrrd", ".nhdr"):
        if name.endswith(sfx):
            return sfx
    return ""


def load_volume(path: Path) -> Volume:
    """Read a NIfTI or NRRD file as a 3D ``Volume`` with a RAS+ affine.

    A trailing singleton 4th (and higher) dimension is squeezed away.

    Args:
        path: ``.nii``, ``.nii.gz``, ``.nrrd`` or ``.nhdr`` file.

    Returns:
        ``Volume(data (X, Y, Z), affine (4, 4) float64 voxel -> RAS mm, path)``.

    Raises:
        DataError: missing file, unsupported extension, corrupt or truncated file, data that is not 3D.
    """
    path = Path(path)
    sfx = volume_suffix(path)
    if not sfx:
        raise DataError(
            f"unsupported volume file type '{''.join(path.suffixes) or path.name}'",
            path=path,
            hint=f"use one of {', '.join(SUPPORTED)}",
        )
    if not path.is_file():
        raise DataError(
            "volume file not found", path=path, hint="check the path and the --image-glob/--label-glob"
        )
    try:
        if sfx in NIFTI_SUFFIXES:
            data, affine = _read_nifti(path)
        else:
            data, affine = _read_nrrd(path)
    except DataError:
        raise
    except _READ_ERRORS as e:
        raise DataError(
            f"cannot read volume ({type(e).__name__}: {e})",
            path=path,
            hint="the file is corrupt or truncated; download or convert it again",
        ) from e
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(
            f"expected a 3D volume, got {data.ndim}D data of shape {tuple(int(s) for s in data.shape)}",
            path=path,
            hint="give one 3D image per file (split 4D series into 3D volumes first)",
        )
    return Volume(data=data, affine=affine, path=path)


def read_header(path: Path) -> tuple[tuple[int, ...], npt.NDArray[np.float64]]:
    """(shape, voxel -> RAS affine) from a NIfTI or NRRD header, without reading the voxels.

    Raises:
        DataError: an unreadable file or unknown format (one line naming the file).
    """
    path = Path(path)
    suffix = volume_suffix(path)
    try:
        if suffix in (".nrrd", ".nhdr"):
            header = nrrd.read_header(str(path))
            shape = tuple(int(s) for s in header["sizes"])
            return shape, nrrd_affine(header, ndim=len(shape), path=path)
        img = cast(SpatialImage, nib.load(str(path)))  # nibabel types load() as the base FileBasedImage
        return tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=np.float64)
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


def save_volume(path: Path, data: npt.NDArray, affine: npt.ArrayLike) -> Path:
    """Write a 3D array as NIfTI atomically (``.nii`` or ``.nii.gz`` by the name of ``path``).

    Integer data with values in 0..255 is stored as uint8, in 0..65535 as uint16, other integers as int32;
    floating data as float32. qform and sform are both set from ``affine`` (code 1, scanner).

    Args:
        path: destination ending in ``.nii`` or ``.nii.gz``.
        data: (X, Y, Z) array.
        affine: (4, 4) voxel -> RAS+ affine in mm.

    Returns:
        ``path``.

    Raises:
        DataError: ``path`` does not end in ``.nii``/``.nii.gz``.
    """
    path = Path(path)
    if volume_suffix(path) not in NIFTI_SUFFIXES:
        raise DataError("volumes are written as NIfTI", path=path, hint="name the file *.nii.gz or *.nii")
    arr = np.asarray(data)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 255:
            arr = arr.astype(np.uint8)
        elif lo >= 0 and hi <= 65535:
            arr = arr.astype(np.uint16)
        else:
            arr = arr.astype(np.int32)
    else:
        arr = arr.astype(np.float32)
    aff = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(arr, aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_data_dtype(arr.dtype)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
