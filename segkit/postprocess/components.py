"""The component filter: keep the largest connected component (26-connectivity in 3D, 8 in 2D) of the whole
foreground and/or of each class, in nnU-Net's order (foreground first, then per class).

``infer.largest_component`` names what is filtered: ``true`` (every class), a list of class ids, and the token
``"foreground"`` in that list for the union of all classes (``[foreground, 1, 3]``). The foreground filter
removes whole structures predicted apart from the main one (a second "organ", whatever its classes), which a
per-class filter cannot tell from the right piece.

Example:
    >>> labels = keep_largest(volume_labels, cfg.infer.largest_component, cfg)   # per the config's setting
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from segkit.config import Config

#: the token of ``infer.largest_component`` that filters the union of all classes (applied before classes)
FOREGROUND = "foreground"

#: ``infer.largest_component``: every class (True), none (False / None), or these targets (class ids and
#: ``FOREGROUND``)
LargestComponent = bool | Sequence[int | Literal["foreground"]] | None


def _label(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int32], int]:
    """``(component ids, count)`` of ``mask`` with full connectivity (26 in 3D, 8 in 2D)."""
    from scipy import ndimage

    comp, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    return comp, int(n)


def _outside_largest(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_] | None:
    """The voxels of ``mask`` outside its largest connected component (``None`` when it has at most one)."""
    comp, n = _label(mask)
    if n <= 1:
        return None
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return (comp != 0) & (comp != int(sizes.argmax()))


def largest_component(
    labels: npt.NDArray[np.integer], class_ids: Sequence[int] | None = None
) -> npt.NDArray[np.uint8]:
    """Keep only the largest connected component (26/8-connectivity) of each class; the rest becomes
    background.

    Args:
        labels: (X, Y, Z) or (H, W) integer ids.
        class_ids: classes to clean (default: every non-zero id present).

    Returns:
        uint8 labels of the same shape.
    """
    out = np.asarray(labels).astype(np.uint8, copy=True)
    ids = class_ids if class_ids is not None else [int(c) for c in np.unique(out) if c != 0]
    for c in ids:
        drop = _outside_largest(out == c)
        if drop is not None:
            out[drop] = 0
    return out


def largest_foreground(labels: npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
    """Keep only the largest connected component of the foreground (every non-zero id together), with its
    class ids; every other foreground piece becomes background (nnU-Net's first post-processing step).

    Args:
        labels: (X, Y, Z) or (H, W) integer ids.

    Returns:
        uint8 labels of the same shape.
    """
    out = np.asarray(labels).astype(np.uint8, copy=True)
    drop = _outside_largest(out != 0)
    if drop is not None:
        out[drop] = 0
    return out


def count_components(mask: npt.NDArray[np.bool_]) -> int:
    """Connected components of a boolean mask, with the connectivity of ``largest_component`` (26 in 3D)."""
    return _label(mask)[1]


def lcc_classes(setting: LargestComponent, cfg: Config) -> list[int]:
    """Class ids to clean with the largest-component filter: all for True, none for False/None, else the
    ids in the list (without the ``FOREGROUND`` token)."""
    if setting is None:
        return []
    if isinstance(setting, bool):
        return [c.id for c in cfg.effective_classes] if setting else []
    return [int(c) for c in setting if c != FOREGROUND]


def lcc_foreground(setting: LargestComponent) -> bool:
    """Whether ``setting`` filters the whole foreground first (the ``FOREGROUND`` token in its list)."""
    return not isinstance(setting, bool) and setting is not None and FOREGROUND in setting


def keep_largest(
    labels: npt.NDArray[np.uint8], setting: LargestComponent, cfg: Config
) -> npt.NDArray[np.uint8]:
    """``labels`` with the component filter of ``setting`` applied: the foreground's (``lcc_foreground``)
    first, then each class's (``lcc_classes``); unchanged when it names nothing."""
    if lcc_foreground(setting):
        labels = largest_foreground(labels)
    ids = lcc_classes(setting, cfg)
    return largest_component(labels, ids) if ids else labels
