"""NumPy (.npy, .npz) and HDF5 (.h5, .hdf5) volumes: bare arrays whose geometry comes from a sidecar JSON.

The arrays carry no world geometry. A sidecar ``<name>.json`` (``la_003.npy.json``) or ``<stem>.json``
(``la_003.json``) beside the file gives it::

    {"affine": [[...4 rows...]], "axes": "xyz"}
    {"origin": [x, y, z], "spacing": [sx, sy, sz], "direction": [[...3x3...]], "space": "LPS", "axes": "zyx"}

``affine`` is voxel -> RAS+ mm. ``origin``/``spacing``/``direction`` (column i = world direction of array
axis i, identity if left out) are in ``space`` (``RAS`` by default, or ``LPS``). ``axes`` is the order of
the array's axes, ``xyz`` (default) or ``zyx`` (as ``SimpleITK.GetArrayFromImage`` returns). Without a
sidecar a one-line warning names the assumed geometry: 1 mm voxels, identity direction, origin 0.

In an ``.npz`` or HDF5 file the array is the dataset ``image`` if present, else ``label``, else the file's
only array (the LA 2018 ``.h5`` files hold ``image`` and ``label``).
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.world import affine_from_geometry, lps_to_ras

log = logging.getLogger(__name__)

NUMPY_SUFFIXES = (".npy", ".npz")
HDF5_SUFFIXES = (".h5", ".hdf5")
KEYS = ("image", "label")


def sidecar_path(path: Path) -> Path | None:
    """The sidecar JSON of an array file (``<name>.json`` or ``<stem>.json``), ``None`` if there is none."""
    path = Path(path)
    for cand in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if cand.is_file():
            return cand
    return None


def _sidecar(path: Path) -> tuple[npt.NDArray[np.float64], str]:
    """(voxel -> RAS affine, axis order) from the sidecar of ``path``; identity and ``xyz`` without one."""
    side = sidecar_path(path)
    if side is None:
        log.warning("%s: no sidecar %s.json; assuming 1 mm voxels, identity direction, origin 0 (RAS)",
                    path.name, path.name)
        return np.eye(4), "xyz"
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        axes = str(meta.get("axes", "xyz")).lower()
        if axes not in ("xyz", "zyx"):
            raise ValueError(f"'axes' must be 'xyz' or 'zyx', not {axes!r}")
        if "affine" in meta:
            aff = np.asarray(meta["affine"], dtype=np.float64)
            if aff.shape != (4, 4):
                raise ValueError(f"'affine' must be 4 x 4, got {aff.shape}")
            return aff, axes
        aff = affine_from_geometry(meta.get("origin", [0, 0, 0]), meta.get("spacing", [1, 1, 1]),
                                   meta.get("direction", np.eye(3)))
        space = str(meta.get("space", "RAS")).upper()
        if space not in ("RAS", "LPS"):
            raise ValueError(f"'space' must be 'RAS' or 'LPS', not {space!r}")
        return (lps_to_ras(aff) if space == "LPS" else aff), axes
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"cannot use the sidecar {side.name}: {e}", path=path,
                        hint="see the sidecar format in the README's formats table") from e


def _pick(keys: list[str], path: Path) -> str:
    for k in KEYS:
        if k in keys:
            return k
    if len(keys) == 1:
        return keys[0]
    raise DataError(f"no dataset 'image' or 'label' among {', '.join(sorted(keys)) or 'none'}", path=path,
                    hint="store the volume under the key 'image' (or 'label')")


def read_array(path: Path) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    """(array (X, Y, Z), voxel -> RAS affine) of a ``.npy``/``.npz``/``.h5``/``.hdf5`` file + sidecar."""
    path = Path(path)
    sfx = path.suffix.lower()
    if sfx == ".npy":
        data = np.load(path, allow_pickle=False)
    elif sfx == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                data = z[_pick(list(z.files), path)]
        except zipfile.BadZipFile as e:
            raise OSError(f"not an npz archive: {e}") from e
    else:
        import h5py

        with h5py.File(path, "r") as f:
            keys = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
            data = np.asarray(f[_pick(keys, path)][()])
    affine, axes = _sidecar(path)
    data = np.asarray(data)
    if axes == "zyx" and data.ndim >= 3:
        data = np.ascontiguousarray(np.moveaxis(data, (0, 1, 2), (2, 1, 0)))
    return data, affine


def read_array_header(path: Path) -> tuple[tuple[int, ...], npt.NDArray[np.float64]]:
    """(shape in (X, Y, Z) order, voxel -> RAS affine) of an array file without reading its data: the
    ``.npy`` header (of the picked member of an ``.npz``), the HDF5 dataset's shape; the sidecar's
    geometry."""
    path = Path(path)
    sfx = path.suffix.lower()
    if sfx == ".npy":
        with path.open("rb") as f:
            shape = _npy_shape(f)
    elif sfx == ".npz":
        try:
            with zipfile.ZipFile(path) as z:
                key = _pick([n[:-4] for n in z.namelist() if n.endswith(".npy")], path)
                with z.open(key + ".npy") as f:
                    shape = _npy_shape(f)
        except zipfile.BadZipFile as e:
            raise OSError(f"not an npz archive: {e}") from e
    else:
        import h5py

        with h5py.File(path, "r") as h:
            keys = [k for k in h.keys() if isinstance(h[k], h5py.Dataset)]
            shape = tuple(h[_pick(keys, path)].shape)
    affine, axes = _sidecar(path)
    if axes == "zyx" and len(shape) >= 3:
        shape = (shape[2], shape[1], shape[0], *shape[3:])
    return tuple(int(s) for s in shape), affine


def _npy_shape(f: IO[bytes]) -> tuple[int, ...]:
    """The array shape in the header of an open ``.npy`` stream (numpy's format functions; ValueError for a
    file that is not ``.npy``)."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return tuple(int(s) for s in read(f)[0])


def sidecar_text(affine: npt.ArrayLike) -> str:
    """The sidecar JSON that ``write_array``'s file needs: ``affine`` (voxel -> RAS) and ``axes`` ``xyz``."""
    return json.dumps({"affine": np.asarray(affine, dtype=float).tolist(), "axes": "xyz"}, indent=1)


def write_array(path: Path, data: npt.NDArray) -> None:
    """Write ``data`` (X, Y, Z) as ``.npy``, ``.npz`` (key ``image``) or HDF5 (dataset ``image``), by the
    suffix of ``path``; the geometry goes to the sidecar (``sidecar_text``), written by the caller."""
    path = Path(path)
    sfx = path.suffix.lower()
    if sfx == ".npy":
        with path.open("wb") as f:
            np.save(f, data)
    elif sfx == ".npz":
        with path.open("wb") as f:
            np.savez_compressed(f, image=data)
    else:
        import h5py

        with h5py.File(path, "w") as f:
            f.create_dataset("image", data=data, compression="gzip")
