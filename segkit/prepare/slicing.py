"""One volume case -> 2D slices, and back.

Pipeline of ``slice_case`` (per case, in this order):

1. check that image and label have the same shape and affine (``GeometryError`` naming both files);
2. reject NaN/inf intensities and unexpected label values (``DataError``); map raw label values to class ids;
3. reorient both arrays to RAS canonical (exact permutes/flips, ``segkit.geometry.to_canonical``);
4. normalise intensity with parameters from the whole volume (``segkit.prepare.normalize``);
5. take slice ``k`` along ``prepare.axis`` (``np.take(vol_ras, k, axis)``) and turn it to the display
   convention with ``to_display`` (``display_slices`` does 4-5 for ``SLICE_CHUNK`` slices at a time, with one
   copy into display order per chunk);
   a cascade's fine dataset (``cascade.enabled``) then cuts every slice to one box per case: the
   reference foreground's box + ``cascade.margin_mm``, jittered, square in mm (``segkit.prepare.roi``;
   ``Geometry.crop``);
6. resize to ``prepare.size`` (``segkit.io.slices.resize_image`` / ``resize_label``, the resize that training
   and inference use too): images with INTER_AREA (downscale) / INTER_LINEAR (upscale), labels with
   nearest neighbour only (``cv2.INTER_NEAREST_EXACT``: pixel-centre aligned like AREA/LINEAR, so masks stay
   registered with their images, and resizing an upscaled mask back restores it exactly; plain
   ``INTER_NEAREST`` is shifted by half a pixel);
7. choose which slices to keep (label-free slices: keep / a seeded fraction / drop).

Display convention (``to_display``), one function for every axis. A canonical slice is indexed by the two
remaining RAS axes in order, e.g. axial ``[x, y]``; the display image is ``slice.T`` flipped in both
directions:

- axial (axis 2): anterior at the top, patient right on the image's left (radiological convention);
- coronal (axis 1): superior at the top, patient right on the image's left;
- sagittal (axis 0): superior at the top, anterior on the image's left.

So every dataset, whatever its file orientation (LPS, RAS, permuted), comes out the same way up.
``reassemble_volume`` inverts all of it for predictions: inverse resize (nearest), ``from_display``,
un-slicing into the canonical volume, inverse reorientation; the result has the ORIGINAL array shape and goes
with the original affine.

Example:
    >>> sliced = slice_case(load_volume(img_path), load_volume(lbl_path), cfg, "case_000", rng)
    >>> paths = write_slices(sliced, out / "train", palette_array([c.color for c in cfg.effective_classes]))
    >>> labels = reassemble_volume({i: lbl for i, _, lbl in sliced.slices}, sliced.geometry)

The per-case record (``sliced.geometry``, a ``segkit.prepare.record.Geometry``) is built here for volumes
(``volume_geometry``); its JSON in ``dataset.json`` is ``segkit.prepare.record``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

from segkit.config import Config, PrepareConfig
from segkit.errors import DataError, GeometryError
from segkit.geometry import axis_codes, canonical_ornt, from_canonical, spacing_from_affine, to_canonical
from segkit.io.atomic import write_bytes
from segkit.io.png import PNG_COMPRESSION, encode_mask_png, write_png
from segkit.io.slices import resize_image as resize_image  # re-exported (one slice resize)
from segkit.io.slices import resize_label as resize_label  # re-exported (one slice resize)
from segkit.io.volumes import Volume
from segkit.prepare.normalize import apply_intensity, intensity_recipe
from segkit.prepare.outdir import slice_stem
from segkit.prepare.record import VOLUME, Geometry, Preprocessing
from segkit.prepare.roi import Box, paste, roi_box
from segkit.prepare.roi import crop as crop_box

log = logging.getLogger(__name__)

AFFINE_ATOL = 1e-3
SLICE_CHUNK = 4  # slices read, normalised and turned to display order together (bounds the temporaries)

SliceItem = tuple[int, npt.NDArray[np.uint8], "npt.NDArray[np.uint8] | None"]


class SlicedCase(NamedTuple):
    """The output of ``slice_case`` / ``volume_to_slices``.

    Attributes:
        case_id: the case (patient/volume) id used in file stems.
        geometry: the case's geometry, intensity recipe and slices written (``dataset.json``'s per-case entry
            without split and source files: ``geometry.to_json()``).
        slices: ``[(slice_index, image (H, W) uint8, label (H, W) uint8 class ids or None), ...]`` sorted by
            ``slice_index``, already in display orientation and resized to ``prepare.size``.
    """

    case_id: str
    geometry: Geometry
    slices: list[SliceItem]


# === Display convention ===


def to_display(slice2d: npt.NDArray) -> npt.NDArray:
    """Canonical (RAS) slice -> display image: transpose, then flip rows and columns.

    Args:
        slice2d: ``np.take(vol_ras, k, axis)``, shape (A, B) for the two remaining RAS axes in order.

    Returns:
        (B, A) array: rows run from the high end of the second axis (anterior/superior) down, columns from
        the high end of the first axis (patient right; anterior for sagittal) to the low end.
    """
    return np.ascontiguousarray(display_view(slice2d))


def display_view(arr: npt.NDArray) -> npt.NDArray:
    """``to_display`` as a view on the LAST two axes (any leading axes, e.g. a (n, A, B) stack of slices).

    The single definition of the display convention: ``to_display`` and ``display_slices`` both use it.
    """
    return np.swapaxes(arr, -1, -2)[..., ::-1, ::-1]


def from_display(img: npt.NDArray) -> npt.NDArray:
    """Inverse of ``to_display``: (B, A) display image -> (A, B) canonical slice."""
    return np.ascontiguousarray(img[::-1, ::-1].T)


# === Label values ===


def build_label_lut(
    present: Sequence[int],
    num_classes: int,
    label_map: Mapping[int, int] | None,
    binary: bool,
    unknown_labels: str,
    path: Path | None = None,
) -> dict[int, int]:
    """Map every raw label value present to a class id.

    Args:
        present: raw label values found in the volume.
        num_classes: number of foreground classes N in the config (ids 1..N).
        label_map: raw value -> class id (0 = background); ``None`` = identity for 0..N.
        binary: merge every foreground class into 1.
        unknown_labels: ``"error"`` or ``"background"`` for values outside the map.
        path: label file, named in errors.

    Returns:
        ``{raw_value: class_id}`` for every value in ``present``.

    Raises:
        DataError: unexpected label values (listed) with ``unknown_labels == "error"``, or a map to a class id
            outside 0..N.
    """
    if label_map is None:
        mapping = {v: v for v in range(num_classes + 1)}
        if binary:
            mapping = {v: (1 if v != 0 else 0) for v in present}
    else:
        mapping = {int(k): int(v) for k, v in label_map.items()}
        mapping.setdefault(0, 0)
        bad_ids = sorted({v for v in mapping.values() if v < 0 or v > num_classes})
        if bad_ids:
            raise DataError(
                f"prepare.label_map maps to class ids {bad_ids} outside 0..{num_classes}",
                path=path,
                hint="class ids must be listed in 'classes'",
            )
    unknown = sorted(v for v in present if v not in mapping)
    if unknown and unknown_labels == "error":
        shown = ", ".join(str(v) for v in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
        raise DataError(
            f"unexpected label values {shown} (expected {sorted(mapping)})",
            path=path,
            hint="add them to prepare.label_map, or set prepare.unknown_labels: background",
        )
    lut = {v: mapping.get(v, 0) for v in present}
    if binary:
        lut = {v: (1 if c != 0 else 0) for v, c in lut.items()}
    return lut


def present_values(arr: npt.NDArray[np.integer], hi: int | None = None) -> list[int]:
    """Sorted distinct values of a non-negative integer array, without int64 copies of the whole volume."""
    if arr.size == 0:
        return []
    if arr.dtype == np.uint8 and arr.size < 2**31:
        # ravel(order="K") is a view of C- or F-ordered volumes (NIfTI data is F-ordered):
        # no 3D transpose copy
        col = arr.ravel(order="K").reshape(-1, 1)
        hist = cv2.calcHist([col], [0], None, [256], [0, 256]).ravel()
        return [int(v) for v in np.flatnonzero(hist)]
    hi = int(arr.max()) if hi is None else hi
    if hi >= 1 << 20:
        return [int(v) for v in np.unique(arr)]
    counts = np.zeros(hi + 1, dtype=np.int64)
    flat = arr.reshape(-1)
    step = 1 << 22
    for start in range(0, flat.size, step):
        counts += np.bincount(flat[start : start + step].astype(np.intp), minlength=hi + 1)
    return [int(v) for v in np.flatnonzero(counts)]


def map_labels(label: npt.NDArray, cfg: Config, path: Path | None = None) -> npt.NDArray[np.uint8]:
    """Raw label volume -> uint8 class ids per ``cfg.prepare`` (label_map, binary, unknown_labels).

    Raises:
        DataError: non-integer or negative label values, or unexpected values (see ``build_label_lut``).
    """
    arr = np.asarray(label)
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        else:
            if not np.all(np.isfinite(arr)):
                raise DataError(
                    "label volume contains NaN or inf", path=path, hint="labels must be whole class ids"
                )
            rounded = np.rint(arr)
            if not np.array_equal(rounded, arr):
                raise DataError(
                    "label volume has non-integer values", path=path, hint="labels must be class ids"
                )
            arr = rounded.astype(np.int64)
    if arr.size and int(arr.min()) < 0:
        raise DataError(f"label volume has negative values (min {int(arr.min())})", path=path,
                        hint="labels are class ids 0..N; map them with prepare.label_map")
    hi = int(arr.max()) if arr.size else 0
    if _maps_every_value(cfg.prepare, len(cfg.classes), hi):
        present = list(range(hi + 1))  # same mapping as the exact set, without a pass over the volume
    else:
        present = present_values(arr, hi)
    lut = build_label_lut(
        present,
        len(cfg.classes),
        cfg.prepare.label_map,
        cfg.prepare.binary,
        cfg.prepare.unknown_labels,
        path,
    )
    if all(k == v for k, v in lut.items()) and hi <= 255:
        return arr.astype(np.uint8, copy=False)
    if hi < 65536:
        table = np.zeros(hi + 1, dtype=np.uint8)
        for k, v in lut.items():
            table[k] = v
        return table[arr]
    out = np.zeros(arr.shape, dtype=np.uint8)
    for k, v in lut.items():
        if v:
            out[arr == k] = v
    return out


def _maps_every_value(prep: PrepareConfig, num_classes: int, hi: int) -> bool:
    """True when every value 0..``hi`` (``hi`` <= 255) has a class under ``prep``: then which of them actually
    occur cannot change the mapping, and ``map_labels`` skips the histogram of the whole volume."""
    if hi > 255:
        return False
    if prep.label_map is None:
        return prep.binary or hi <= num_classes
    keys = {int(k) for k in prep.label_map} | {0}
    return all(v in keys for v in range(hi + 1))


# === Checks ===


def check_pair(image: Volume, label: Volume) -> None:
    """Image and label must have the same array shape and affine (``np.allclose``, atol 1e-3).

    Raises:
        GeometryError: naming both files, both shapes or both affines.
    """
    if tuple(image.data.shape) != tuple(label.data.shape):
        raise GeometryError(
            f"image and label shapes differ: {image.name} {tuple(image.data.shape)} vs "
            f"{label.name} {tuple(label.data.shape)}",
            path=label.path,
            hint="pair each image with its own label file",
        )
    if not np.allclose(image.affine, label.affine, atol=AFFINE_ATOL):
        raise GeometryError(
            f"image and label affines differ: {image.name} {_fmt_affine(image.affine)} vs "
            f"{label.name} {_fmt_affine(label.affine)}",
            path=label.path,
            hint="resample the label onto the image grid, or fix its header",
        )


def _fmt_affine(a: npt.NDArray) -> str:
    return "[" + "; ".join(" ".join(f"{v:.4g}" for v in row) for row in np.asarray(a)[:3]) + "]"


def check_finite(image: Volume) -> None:
    """Raises DataError when a floating image holds NaN or inf (naming the file and the count)."""
    data = image.data
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            raise DataError(
                f"image has {int(bad.sum())} NaN/inf voxels",
                path=image.path if image.path is not None else image.name,
                hint="fix or mask the invalid voxels before preparing",
            )


# === Slicing ===


def _to_display(per_axis: Sequence[Any], ornt: npt.ArrayLike, axis: int) -> tuple[list[Any], tuple[Any, Any]]:
    """Values given per array axis (shape, spacing) -> (canonical order, display (rows, columns) of a
    slice)."""
    can: list[Any] = [0, 0, 0]
    for i, (new_axis, _) in enumerate(np.asarray(ornt)):
        can[int(new_axis)] = per_axis[i]
    inplane = [can[a] for a in range(3) if a != axis]  # (A, B) canonical slice; display is (B, A)
    return can, (inplane[1], inplane[0])


def display_spacing(affine: npt.ArrayLike, axis: int) -> tuple[float, float]:
    """In-plane spacing (mm) of a display slice (rows, columns) along canonical ``axis``."""
    return _to_display(spacing_from_affine(affine), canonical_ornt(affine), axis)[1]


def resampled_size(
    slice_shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]
) -> tuple[int, int]:
    """Slice size (H, W) after resampling from ``spacing`` to ``target`` mm (rounded, at least 1 pixel).

    Example:
        >>> resampled_size((232, 256), (1.5, 1.5), (1.25, 1.25))
        (278, 307)
    """
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(slice_shape, spacing, target, strict=True))  # type: ignore[return-value]


def target_size(
    data_shape: Sequence[int], affine: npt.ArrayLike, axis: int, prep: PrepareConfig
) -> tuple[int, int]:
    """The prepared slice size of a volume: ``prep.size``, or its slice shape resampled to ``prep.spacing``.

    Raises:
        DataError: ``prep.spacing`` is still ``'median'`` (only ``prepare`` can resolve it from the dataset).
    """
    if prep.spacing is None:
        return (int(prep.size[0]), int(prep.size[1]))
    if isinstance(prep.spacing, str):
        raise DataError(
            "prepare.spacing 'median' is resolved only by 'segkit prepare'",
            path="prepare.spacing",
            hint="set data.dir to the prepared dataset (its dataset.json records the spacing in mm) "
            "or give prepare.spacing as [mm, mm]",
        )
    _, slice_shape = _to_display([int(n) for n in data_shape], canonical_ornt(affine), axis)
    return resampled_size(slice_shape, display_spacing(affine, axis), prep.spacing)


def volume_geometry(
    data_shape: Sequence[int],
    affine: npt.ArrayLike,
    axis: int,
    size: Sequence[int],
    intensity: Mapping[str, Any],
    slices: Sequence[int],
    crop: Box | None = None,
) -> Geometry:
    """The ``Geometry`` of a volume sliced along canonical ``axis`` to ``size`` with ``intensity``, of which
    the slices ``slices`` are written (everything ``reassemble_volume`` and ``volume_to_slices`` need); with
    ``crop``, the box of every display slice that was resized to ``size`` (``segkit.prepare.roi``)."""
    ornt = canonical_ornt(affine)
    shape = tuple(int(s) for s in data_shape)
    can, (h0, w0) = _to_display(shape, ornt, axis)
    rows, cols = (int(size[0]), int(size[1]))
    ch, cw = (crop[1] - crop[0], crop[3] - crop[2]) if crop is not None else (h0, w0)
    sx, sy, sz = (round(s, 6) for s in spacing_from_affine(affine))
    dy, dx = (round(s, 6) for s in display_spacing(affine, axis))
    a = np.asarray(affine, dtype=np.float64).tolist()
    return Geometry(
        kind=VOLUME,
        shape=(shape[0], shape[1], shape[2]),
        spacing=(sx, sy, sz),
        slice_spacing=(dy, dx),
        affine=tuple((r[0], r[1], r[2], r[3]) for r in a),
        orientation=axis_codes(affine),
        ornt_transform=tuple((int(n), int(f)) for n, f in ornt),
        canonical_shape=(can[0], can[1], can[2]),
        axis=int(axis),
        slice_shape=(h0, w0),
        size=(rows, cols),
        resize=(rows / ch, cols / cw),
        n_slices=int(can[axis]),
        intensity=dict(intensity),
        slices=tuple(int(k) for k in slices),
        crop=None if crop is None else (int(crop[0]), int(crop[1]), int(crop[2]), int(crop[3])),
    )


def take_slice(vol: npt.NDArray, k: int, axis: int) -> npt.NDArray:
    """``np.take(vol, k, axis)`` as a view (basic indexing; ``np.take`` copies slowly from flipped views)."""
    index: list[Any] = [slice(None)] * vol.ndim
    index[axis] = int(k)
    return vol[tuple(index)]


def display_slices(
    vol_ras: npt.NDArray,
    axis: int,
    indices: Sequence[int],
    fn: Callable[[npt.NDArray], npt.NDArray] | None = None,
) -> Iterator[tuple[int, npt.NDArray]]:
    """Yield ``(k, to_display(fn(take_slice(vol_ras, k, axis))))`` for each ``k`` of ``indices``, in order.

    The slicing axis is moved to the front (a view) and ``SLICE_CHUNK`` slices at a time are read, passed to
    ``fn`` (an element-wise map such as ``apply_intensity``) and copied ONCE into display order (before, two
    strided copies per slice and per array cost ~5 ms per 512^2 image+mask pair); the temporaries stay
    bounded by one chunk whatever the volume size.

    Args:
        vol_ras: (X, Y, Z) canonical volume (usually a flipped/permuted view of the file's array).
        axis: slicing axis in canonical space.
        indices: sorted slice indices to produce.
        fn: element-wise function applied to each chunk before the display copy (None: identity).

    Yields:
        ``(k, (B, A) C-contiguous array)``; the arrays of one chunk share one buffer (do not write to them).
    """
    idx = np.asarray(list(indices), dtype=np.intp)
    if idx.size and np.any(np.diff(idx) <= 0):
        raise DataError("slice indices must be sorted and distinct")
    front = np.moveaxis(vol_ras, axis, 0)  # (n, A, B) view
    for start in range(0, idx.size, SLICE_CHUNK):
        ks = idx[start : start + SLICE_CHUNK]
        lo, hi = int(ks[0]), int(ks[-1]) + 1
        block = front[lo:hi]
        if hi - lo != ks.size:
            block = block[ks - lo]  # only the wanted slices
        if fn is not None:
            block = fn(block)
        disp = np.ascontiguousarray(display_view(block))  # to_display on every slice, one copy
        for j, k in enumerate(ks):
            yield int(k), disp[j]


def choose_slices(
    has_fg: npt.NDArray[np.bool_], prep: PrepareConfig, rng: np.random.Generator
) -> list[int]:
    """Indices to keep: all with foreground, plus label-free ones per ``prep.empty_slices``."""
    fg = np.flatnonzero(has_fg)
    empty = np.flatnonzero(~has_fg)
    if prep.empty_slices == "keep":
        keep_empty = empty
    elif prep.empty_slices == "drop":
        keep_empty = empty[:0]
    else:
        n = int(round(prep.empty_fraction * len(empty)))
        keep_empty = rng.choice(empty, size=n, replace=False) if n else empty[:0]
    return sorted(int(i) for i in np.concatenate([fg, keep_empty]))


def slice_case(
    image: Volume,
    label: Volume | None,
    cfg: Config,
    case_id: str,
    rng: np.random.Generator,
) -> SlicedCase:
    """Prepare one volume case: checks, label mapping, reorientation, normalisation, slicing, resizing.

    Args:
        image: the image volume (intensities in HU for CT).
        label: its label volume (raw values, mapped by ``cfg.prepare``), or ``None`` (all slices kept).
        cfg: the config (``modality``, ``classes``, ``prepare``).
        case_id: id used in file stems and ``dataset.json``.
        rng: generator for the ``empty_slices: fraction`` draw (derive it from ``cfg.seed`` and the case).

    Returns:
        ``SlicedCase(case_id, geometry, slices)`` (``volume_geometry``: shape, spacing, affine, orientation,
        ornt_transform, canonical_shape, axis, slice_shape, size, resize, n_slices, intensity, slices).

    Raises:
        GeometryError: image and label differ in shape or affine.
        DataError: NaN/inf intensities, unexpected or non-integer label values.
    """
    prep = cfg.prepare
    check_finite(image)
    classes = None
    if label is not None:
        check_pair(image, label)
        classes = map_labels(label.data, cfg, label.path)
    axis = int(prep.axis)
    size = target_size(image.data.shape, image.affine, axis, prep)
    img_ras = to_canonical(np.asarray(image.data), image.affine, copy=False)[0]  # a view: no volume copy
    n_slices = int(img_ras.shape[axis])
    # Parameters from the whole volume, applied chunk by chunk (same result, bounded temporaries).
    recipe = intensity_recipe(img_ras, cfg.modality, prep.ct_window, prep.mr_percentiles)
    lbl_ras = to_canonical(classes, image.affine, copy=False)[0] if classes is not None else None
    if lbl_ras is not None:
        other = tuple(a for a in range(3) if a != axis)
        has_fg = np.asarray(lbl_ras.any(axis=other))
        keep = choose_slices(has_fg, prep, rng)
    else:
        keep = list(range(n_slices))
    box = _training_crop(lbl_ras, image, cfg, rng, case_id) if cfg.cascade.enabled else None
    slices: list[SliceItem]
    images = display_slices(img_ras, axis, keep, lambda block: apply_intensity(block, recipe))
    if lbl_ras is None:
        slices = [(k, resize_image(_cut(img2d, box), size), None) for k, img2d in images]
    else:  # both walk the same indices in the same order
        labels = display_slices(lbl_ras, axis, keep)
        slices = [
            (k, resize_image(_cut(img2d, box), size), resize_label(_cut(lbl2d, box), size))
            for (k, img2d), (_, lbl2d) in zip(images, labels, strict=True)
        ]
    log.debug("%s: %d of %d slices kept", case_id, len(keep), n_slices)
    return SlicedCase(
        case_id, volume_geometry(image.data.shape, image.affine, axis, size, recipe, keep, box), slices
    )


def _cut(img: npt.NDArray, box: Box | None) -> npt.NDArray:
    return img if box is None else np.ascontiguousarray(crop_box(img, box))


def _training_crop(
    lbl_ras: npt.NDArray | None, image: Volume, cfg: Config, rng: np.random.Generator, case_id: str
) -> Box:
    """A cascade's training crop (``cascade.enabled``): the reference foreground's box over the whole volume,
    ``cascade.margin_mm`` around it, jittered by up to ``cascade.jitter_mm`` (``rng``), square in mm.

    Raises:
        DataError: no labels (a cascade learns its crops from them), or a label volume without foreground.
    """
    hint = "label every case, leave this one out of the dataset, or set cascade.enabled: false"
    if lbl_ras is None:
        raise DataError(f"case {case_id}: cascade.enabled needs a label volume for every case (its crops "
                        "come from the reference labels)", path=image.path, hint=hint)
    axis = int(cfg.prepare.axis)
    fg = display_view(np.moveaxis(lbl_ras, axis, 0) != 0)  # (n, rows, cols) display stack, a view
    box = roi_box(fg, display_spacing(image.affine, axis), cfg.cascade.margin_mm, rng=rng,
                  jitter_mm=cfg.cascade.jitter_mm)
    if box is None:
        raise DataError(f"case {case_id}: no foreground to crop around (cascade.enabled)", path=image.path,
                        hint=hint)
    return box


def write_slices(
    sliced: SlicedCase, split_dir: Path, palette: npt.NDArray[np.uint8], compression: int = PNG_COMPRESSION,
    view: int | None = None,
) -> list[Path]:
    """Write ``images/<case_id>_<slice_index:04d>.png`` (8-bit gray) and the matching RGB colour mask
    (``view``: slices along an extra axis, ``<case_id>_ax<view>_<slice_index:04d>.png``).

    Args:
        sliced: output of ``slice_case``.
        split_dir: e.g. ``DIR/train``; ``images/`` and ``masks/`` are created inside.
        palette: (N+1, 3) uint8 from ``segkit.io.palette.palette_array`` (row 0 black background).
        compression: zlib level of the gray image PNGs (``prepare.png_compression``; masks always use level
            1).

    Returns:
        Every path written (image then mask, per slice), each atomically.

    Raises:
        DataError: a label value has no colour in ``palette`` (checked before anything is written).
    """
    split_dir = Path(split_dir)
    for k, _, lbl2d in sliced.slices:  # check every slice first so that a bad palette writes nothing
        if lbl2d is not None and lbl2d.size and int(lbl2d.max()) >= len(palette):
            raise DataError(
                f"label value {int(lbl2d.max())} has no colour (classes 0..{len(palette) - 1})",
                path=split_dir / "masks" / f"{slice_stem(sliced.case_id, k, view)}.png",
                hint="the palette must have one colour per class of the config",
            )
    written: list[Path] = []
    for k, img2d, lbl2d in sliced.slices:
        stem = f"{slice_stem(sliced.case_id, k, view)}.png"
        written.append(write_png(split_dir / "images" / stem, img2d, compression))
        if lbl2d is not None:
            mask_path = split_dir / "masks" / stem
            write_bytes(mask_path, encode_mask_png(lbl2d, palette, mask_path))
            written.append(mask_path)
    return written


# === Back to volumes ===


def reassemble_volume(slices: Mapping[int, npt.NDArray], geometry: Geometry) -> npt.NDArray[np.uint8]:
    """Put 2D label slices back into a volume of the ORIGINAL array shape and orientation.

    Args:
        slices: ``{slice_index: (H, W) uint8 class ids}`` in display orientation at any size (resized back
            to ``geometry.slice_shape`` with nearest neighbour; with ``geometry.crop``, to the crop's size
            and put at the crop, background elsewhere).
        geometry: the case's geometry from ``slice_case`` / ``volume_to_slices``, or read from
            ``dataset.json`` (``segkit.prepare.record.case_records``).

    Returns:
        (X, Y, Z) uint8 label volume, shape ``geometry.shape``, to be saved with ``geometry.affine``.
        Slices not given are 0.

    Raises:
        DataError: a slice index outside 0..n_slices-1, or a slice that is not 2D.
    """
    axis = geometry.axis
    can = geometry.canonical_shape
    h0, w0 = geometry.slice_shape
    vol = np.zeros(can, dtype=np.uint8)
    n = can[axis]
    index: list[Any] = [slice(None)] * 3
    for k, img in slices.items():
        k = int(k)
        if not 0 <= k < n:
            raise DataError(f"slice index {k} is outside 0..{n - 1}")
        arr = np.asarray(img)
        if arr.ndim != 2:
            raise DataError(f"slice {k} must be (H, W) class ids, got shape {arr.shape}")
        if geometry.crop is None:
            arr = resize_label(arr.astype(np.uint8, copy=False), (h0, w0))
        else:
            r0, r1, c0, c1 = geometry.crop
            arr = paste(resize_label(arr.astype(np.uint8, copy=False), (r1 - r0, c1 - c0)), geometry.crop,
                        (h0, w0))
        index[axis] = k
        vol[tuple(index)] = from_display(arr)
    out = from_canonical(vol, geometry.ornt_transform)
    expected = geometry.shape
    if out.shape != expected:
        raise DataError(f"reassembled shape {out.shape} differs from the recorded shape {expected}")
    return out


def reassemble_probabilities(probs: npt.NDArray[np.floating], geometry: Geometry) -> npt.NDArray[np.floating]:
    """Put (N, h, w, K) per-slice class probabilities back into an (X, Y, Z, K) volume of the ORIGINAL
    geometry.

    Args:
        probs: one (h, w, K) map per slice of the volume, in display orientation, at ``geometry.slice_shape``.
        geometry: the volume's geometry (``volume_to_slices``).

    Raises:
        DataError: the stack does not have one map per slice at the recorded slice size.
    """
    axis = geometry.axis
    can = geometry.canonical_shape
    h0, w0 = geometry.slice_shape
    arr = np.asarray(probs)
    if arr.ndim != 4 or arr.shape[0] != can[axis] or arr.shape[1:3] != (h0, w0):
        raise DataError(f"probabilities {arr.shape} do not match {can[axis]} slices of {h0}x{w0}")
    vol = np.zeros((*can, arr.shape[-1]), dtype=arr.dtype)
    index: list[Any] = [slice(None)] * 3
    for k in range(arr.shape[0]):
        index[axis] = k
        vol[tuple(index)] = np.swapaxes(arr[k][::-1, ::-1], 0, 1)  # from_display, channels kept last
    out = from_canonical(vol, geometry.ornt_transform)
    expected = geometry.shape
    if out.shape[:3] != expected:
        raise DataError(f"reassembled shape {out.shape[:3]} differs from the recorded shape {expected}")
    return out


def volume_to_slices(
    data: npt.NDArray,
    affine: npt.ArrayLike,
    spec: Preprocessing | Geometry,
    case_id: str = "volume",
    path: Path | None = None,
    crop: Box | None = None,
) -> SlicedCase:
    """Repeat the preprocessing of ``prepare`` on a new image volume (for inference); every slice is kept.

    Args:
        data: (X, Y, Z) image volume (HU for CT).
        affine: its (4, 4) voxel -> RAS affine.
        spec: what to repeat:
            - a ``Preprocessing`` (a dataset's recipe, ``Preprocessing.from_config(cfg)`` or read from
              ``dataset.json`` / ``preprocessing.json``): axis and size from its ``prepare`` section, the CT
              window as recorded; MR percentiles computed on ``data``;
            - a ``Geometry`` of a prepared case (``dataset.json`` ``cases[id]``): its axis, size and its
              recorded intensity recipe are applied exactly.
        case_id: name for the result.
        path: the file ``data`` came from, named in errors.
        crop: ``(r0, r1, c0, c1)`` of every display slice to resize to the size instead of the whole slice
            (a cascade's fine stage, ``segkit.predict.cascade``); recorded in the geometry. A ``Geometry``
            spec's own crop (from the reference labels at ``prepare``) is never reused.

    Returns:
        ``SlicedCase(case_id, geometry, [(k, image (H, W) uint8, None), ...])`` for every slice ``k``;
        ``geometry`` describes ``data``'s own geometry, so ``reassemble_volume(pred, geometry)`` fits
        ``data``.

    Raises:
        DataError: NaN/inf intensities, or a recipe that cannot be applied.
        TypeError: ``spec`` is neither a ``Preprocessing`` nor a ``Geometry``.
    """
    arr = np.asarray(data)
    aff = np.asarray(affine, dtype=np.float64)
    check_finite(Volume(arr, aff, None if path is None else Path(path)))
    if isinstance(spec, Geometry):  # repeat one prepared case exactly
        axis, size = spec.axis, spec.size
    elif isinstance(spec, Preprocessing):
        axis = int(spec.prepare.axis)
        size = target_size(arr.shape, aff, axis, spec.prepare)
    else:
        raise TypeError(f"volume_to_slices needs a Preprocessing or a Geometry, got {type(spec).__name__}")
    ras = to_canonical(arr, aff, copy=False)[0]  # a view: no volume copy
    if isinstance(spec, Geometry):
        recipe = dict(spec.intensity)
    else:
        prep = spec.prepare
        recipe = intensity_recipe(ras, spec.modality, prep.ct_window, prep.mr_percentiles)
    keep = list(range(int(ras.shape[axis])))
    images = display_slices(ras, axis, keep, lambda block: apply_intensity(block, recipe))
    slices: list[SliceItem] = [(k, resize_image(_cut(img2d, crop), size), None) for k, img2d in images]
    return SlicedCase(case_id, volume_geometry(arr.shape, aff, axis, size, recipe, keep, crop), slices)
