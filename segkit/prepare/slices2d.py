"""2D-slice sources (``chest-ct``): one patient's JPG/PNG slices -> a ``SlicedCase`` (``slice_2d_case``), and
the decoding of the Kaggle chest-CT RGB masks into class ids (``chest_mask_to_labels``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from segkit.config import Config
from segkit.errors import DataError
from segkit.prepare.record import SLICES2D, Geometry
from segkit.prepare.sources import CaseSpec

_CHEST_CHANNELS = {"lung": 0, "heart": 1, "trachea": 2}  # R, G, B of the Kaggle masks
_CHEST_PRECEDENCE = ("lung", "heart", "trachea")  # later wins on overlap


def chest_mask_to_labels(
    rgb: npt.NDArray[np.uint8], cfg: Config, path: Path | None = None
) -> npt.NDArray[np.uint8]:
    """Kaggle chest-CT RGB mask (R lung, G heart, B trachea) -> (H, W) uint8 class ids of ``cfg``.

    Each channel is thresholded (> 127) rather than matched as a colour, so JPEG noise does not matter.
    Overlaps resolve trachea > heart > lung. With ``prepare.binary`` every structure becomes class 1.

    Raises:
        DataError: the config lacks a class named lung, heart or trachea.
    """
    ids = {c.name.lower(): c.id for c in cfg.classes}
    missing = [n for n in _CHEST_PRECEDENCE if n not in ids]
    if missing:
        raise DataError(
            "chest-ct masks need classes named lung, heart and trachea; "
            f"the config lacks {', '.join(missing)}",
            hint="use configs/chest-ct.yaml or name the classes accordingly",
        )
    out = np.zeros(rgb.shape[:2], dtype=np.uint8)
    for name in _CHEST_PRECEDENCE:
        out[rgb[..., _CHEST_CHANNELS[name]] > 127] = 1 if cfg.prepare.binary else ids[name]
    return out


def slice_2d_case(spec: CaseSpec, cfg: Config, rng: np.random.Generator):  # noqa: ANN201 - SlicedCase
    """A ``slices2d`` case (one patient's 2D slices) -> ``SlicedCase`` like ``slice_case`` makes for volumes.

    Images are read as 8-bit grayscale as published (already windowed), resized like volume slices
    (images area/linear, labels nearest); label-free slices follow ``prepare.empty_slices``.
    """
    from segkit.io.png import read_gray, read_rgb
    from segkit.io.slices import resize_image, resize_label
    from segkit.prepare.slicing import SlicedCase, choose_slices

    prep = cfg.prepare
    items = []
    shape0: tuple[int, ...] | None = None
    for k, img_path, mask_path in spec.slices:
        img = read_gray(img_path)
        lbl = None
        if mask_path is not None:
            rgb = read_rgb(mask_path)
            if rgb.shape[:2] != img.shape:
                raise DataError(
                    f"image and mask shapes differ: {img_path.name} {img.shape} "
                    f"vs {mask_path.name} {rgb.shape[:2]}",
                    path=mask_path,
                    hint="image and mask of a slice must have the same size; re-export the pair",
                )
            lbl = chest_mask_to_labels(rgb, cfg, mask_path)
        shape0 = shape0 or img.shape
        items.append((k, img, lbl))
    has_fg = np.array([lbl is not None and bool(lbl.any()) for _, _, lbl in items])
    if all(lbl is None for _, _, lbl in items):  # no masks at all: keep every slice
        keep = list(range(len(items)))
    else:
        keep = choose_slices(has_fg, prep, rng)
    slices = [
        (k, resize_image(img, prep.size), resize_label(lbl, prep.size) if lbl is not None else None)
        for k, img, lbl in (items[i] for i in keep)
    ]
    h0, w0 = shape0 if shape0 is not None else tuple(prep.size)
    rows, cols = int(prep.size[0]), int(prep.size[1])
    n = len(items)
    geometry = Geometry(  # 2D files: identity geometry, no display transform, "spacing" in pixels
        kind=SLICES2D,
        shape=(h0, w0, n),
        spacing=(1.0, 1.0, 1.0),
        slice_spacing=None,
        affine=((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0)),
        orientation="RAS",
        ornt_transform=((0, 1), (1, 1), (2, 1)),
        canonical_shape=(h0, w0, n),
        axis=2,
        slice_shape=(h0, w0),
        size=(rows, cols),
        resize=(rows / h0, cols / w0),
        n_slices=n,
        intensity={"kind": "none"},
        slices=tuple(items[i][0] for i in keep),
        source_slices=tuple((k, img.name, m.name if m is not None else None) for k, img, m in spec.slices),
    )
    return SlicedCase(spec.case_id, geometry, slices)
