"""Voxel geometry: affines, spacing, axis codes and exact reorientation to RAS canonical.

Conventions (nibabel's): an affine is a (4, 4) float64 matrix mapping voxel indices ``(i, j, k, 1)`` to RAS+
world coordinates in mm (RAS+: x grows toward the patient's Right, y toward Anterior, z toward Superior;
DICOM/ITK's LPS world is this with x and y negated). Axis codes such as ``("L", "P", "S")``
name, per array axis, the direction in which the index grows.

Reorientation here is exact: only axis permutations and flips (``nibabel.orientations``), never interpolation,
so label maps keep their values voxel for voxel and the inverse restores the original array exactly.

Example:
    >>> data_ras, ornt = to_canonical(data, affine)      # e.g. LPS -> RAS: flip axes 0 and 1
    >>> np.array_equal(from_canonical(data_ras, ornt), data)
    True
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from nibabel import orientations as nio

RAS_ORNT = nio.axcodes2ornt(("R", "A", "S"))


def spacing_from_affine(affine: npt.ArrayLike) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (lengths of the affine's first three columns).

    Args:
        affine: (4, 4) voxel -> world affine.

    Returns:
        ``(sx, sy, sz)`` in mm, in the array's own axis order.
    """
    a = np.asarray(affine, dtype=np.float64)
    s = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    return (float(s[0]), float(s[1]), float(s[2]))


def axis_codes(affine: npt.ArrayLike) -> str:
    """Closest axis codes of an affine as one string, e.g. ``"LPS"`` or ``"RAS"``."""
    return "".join(nio.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def canonical_ornt(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The nibabel ornt transform (3, 2) ``[[new_axis, flip], ...]`` mapping the array of ``affine`` to RAS.

    Row ``i`` says: input axis ``i`` becomes output axis ``new_axis``, reversed when ``flip`` is -1.
    """
    src = nio.io_orientation(np.asarray(affine, dtype=np.float64))
    return nio.ornt_transform(src, RAS_ORNT).astype(np.float64)


def invert_ornt(ornt: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Inverse of an ornt transform: applying ``ornt`` then ``invert_ornt(ornt)`` is the identity."""
    t = np.asarray(ornt, dtype=np.float64).reshape(-1, 2)
    inv = np.zeros_like(t)
    for i, (new_axis, flip) in enumerate(t):
        inv[int(new_axis)] = (i, flip)
    return inv


def to_canonical(
    data: npt.NDArray, affine: npt.ArrayLike, *, copy: bool = True
) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    """Reorient a 3D array to RAS canonical (exact permutes/flips only).

    Args:
        data: (X, Y, Z) array in the axis order of ``affine``; any dtype (labels stay exact).
        affine: (4, 4) voxel -> RAS world affine.
        copy: return a contiguous copy; ``False`` returns the flipped/transposed VIEW of ``data`` (same
            values, no copy of the volume: ``segkit.prepare.slicing`` reads it chunk by chunk).

    Returns:
        ``(data_ras, ornt_transform)``: an array whose axes grow toward R, A, S, and the (3, 2) ornt
        transform that produced it (store it to undo with ``from_canonical``).
    """
    ornt = canonical_ornt(affine)
    ras = nio.apply_orientation(data, ornt)
    return (np.ascontiguousarray(ras) if copy else ras), ornt


def from_canonical(data_ras: npt.NDArray, ornt_transform: npt.ArrayLike) -> npt.NDArray:
    """Undo ``to_canonical``: bring a RAS canonical array back to the original axis order and directions.

    Args:
        data_ras: array in RAS canonical orientation (as returned by ``to_canonical``).
        ornt_transform: the (3, 2) ornt transform returned by ``to_canonical`` (lists from JSON work too).

    Returns:
        The array in the original orientation, shape equal to the original.
    """
    return np.ascontiguousarray(nio.apply_orientation(data_ras, invert_ornt(ornt_transform)))


def canonical_affine(affine: npt.ArrayLike, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """Affine of the RAS canonical array made by ``to_canonical`` from an array of ``shape`` and
    ``affine``."""
    a = np.asarray(affine, dtype=np.float64)
    ornt = canonical_ornt(a)
    return a @ nio.inv_ornt_aff(ornt, tuple(shape[:3]))


def canonical_shape(shape: tuple[int, ...], ornt_transform: npt.ArrayLike) -> tuple[int, int, int]:
    """Shape of the array after applying ``ornt_transform`` to an array of ``shape``."""
    t = np.asarray(ornt_transform).reshape(-1, 2)
    out = [0, 0, 0]
    for i, (new_axis, _) in enumerate(t):
        out[int(new_axis)] = int(shape[i])
    return (out[0], out[1], out[2])
