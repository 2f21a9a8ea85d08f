"""World coordinates: the one place where LPS (DICOM, ITK/MetaImage) meets segkit's RAS+.

segkit's volumes carry a (4, 4) voxel -> RAS+ affine in mm (nibabel's convention). DICOM and ITK describe
the same geometry in LPS+ (x to the patient's left, y to posterior); the two differ by a sign on x and y.

Example:
    >>> lps_to_ras(affine_from_geometry((0, 0, 0), (1, 1, 2), np.eye(3)))[:3, 3]
    array([-0., -0.,  0.])
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Multiplying an LPS affine by this from the left gives the RAS affine (and back: it is its own inverse).
LPS_RAS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras(affine_lps: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Voxel -> LPS affine to voxel -> RAS affine (flip x and y)."""
    return LPS_RAS_FLIP @ np.asarray(affine_lps, dtype=np.float64)


def ras_to_lps(affine_ras: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Voxel -> RAS affine to voxel -> LPS affine (flip x and y)."""
    return LPS_RAS_FLIP @ np.asarray(affine_ras, dtype=np.float64)


def affine_from_geometry(
    origin: npt.ArrayLike, spacing: npt.ArrayLike, direction: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """(4, 4) affine from an origin (world position of voxel 0), per-axis spacing and a 3 x 3 direction
    matrix whose column i is the unit world direction of array axis i (ITK's convention). The world space is
    the one the three are given in."""
    aff = np.eye(4)
    aff[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(
        np.asarray(spacing, dtype=np.float64)
    )
    aff[:3, 3] = np.asarray(origin, dtype=np.float64)
    return aff


def geometry_from_affine(
    affine: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(origin, spacing, direction) of an affine: the inverse of ``affine_from_geometry``."""
    aff = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    return aff[:3, 3].copy(), spacing, aff[:3, :3] / spacing
