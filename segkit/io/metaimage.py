"""MetaImage volumes (.mha, .mhd + .raw/.zraw) through SimpleITK; ITK's LPS geometry becomes RAS here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.world import affine_from_geometry, geometry_from_affine, lps_to_ras, ras_to_lps

METAIMAGE_SUFFIXES = (".mha", ".mhd")


def read_metaimage(path: Path) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    """(array (X, Y, Z) as stored, voxel -> RAS affine) of a MetaImage file.

    Raises:
        DataError: colour (vector) pixels; RuntimeError from SimpleITK for an unreadable file.
    """
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"colour or vector pixels ({img.GetNumberOfComponentsPerPixel()} components)",
                        path=path, hint="give a greyscale volume")
    dim = img.GetDimension()
    arr = sitk.GetArrayFromImage(img)  # axes reversed: (z, y, x)
    data = np.ascontiguousarray(np.transpose(arr, tuple(range(arr.ndim))[::-1]))
    if dim < 3:
        raise DataError(f"expected a 3D volume, got a {dim}D image", path=path,
                        hint="give one 3D image per file")
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    aff = affine_from_geometry(img.GetOrigin()[:3], img.GetSpacing()[:3], direction)
    return data, lps_to_ras(aff)


def read_metaimage_header(path: Path) -> tuple[tuple[int, ...], npt.NDArray[np.float64]]:
    """(shape (X, Y, Z[, ...]), voxel -> RAS affine) of a MetaImage file from its header text alone
    (SimpleITK's ``ReadImageInformation``: no voxel data is read).

    Raises:
        DataError: fewer than 3 dimensions; RuntimeError from SimpleITK for an unreadable header.
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    dim = reader.GetDimension()
    if dim < 3:
        raise DataError(f"expected a 3D volume, got a {dim}D image", path=path,
                        hint="give one 3D image per file")
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    aff = affine_from_geometry(reader.GetOrigin()[:3], reader.GetSpacing()[:3], direction)
    return tuple(int(s) for s in reader.GetSize()), lps_to_ras(aff)


def write_metaimage(path: Path, data: npt.NDArray, affine: npt.ArrayLike) -> None:
    """Write ``data`` (X, Y, Z), or (X, Y, Z, K) as a K-component vector image (probabilities), as a
    compressed ``.mha`` with the geometry of ``affine`` (voxel -> RAS)."""
    import SimpleITK as sitk

    arr = np.asarray(data)
    order = (2, 1, 0, 3) if arr.ndim == 4 else (2, 1, 0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(arr, order)), isVector=arr.ndim == 4)
    origin, spacing, direction = geometry_from_affine(ras_to_lps(affine))
    img.SetOrigin([float(v) for v in origin])
    img.SetSpacing([float(v) for v in spacing])
    img.SetDirection([float(v) for v in direction.ravel()])
    sitk.WriteImage(img, str(path), useCompression=True)
