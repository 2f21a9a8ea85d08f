"""The component filter: keep each class's largest connected component (26-connectivity in 3D, 8 in 2D).

Example:
    >>> labels = keep_largest(volume_labels, cfg.infer.largest_component, cfg)   # per the config's setting
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from segkit.config import Config

LargestComponent = bool | Sequence[int] | None  # ``infer.largest_component``: all, none, or these class ids


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
    from scipy import ndimage

    out = np.asarray(labels).astype(np.uint8, copy=True)
    ids = class_ids if class_ids is not None else [int(c) for c in np.unique(out) if c != 0]
    structure = ndimage.generate_binary_structure(out.ndim, out.ndim)
    for c in ids:
        comp, n = ndimage.label(out == c, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        out[(comp != 0) & (comp != int(sizes.argmax()))] = 0
    return out


def count_components(mask: npt.NDArray[np.bool_]) -> int:
    """Connected components of a boolean mask, with the connectivity of ``largest_component`` (26 in 3D)."""
    from scipy import ndimage

    return int(ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))[1])


def lcc_classes(setting: LargestComponent, cfg: Config) -> list[int]:
    """Class ids to clean with the largest-component filter: all for True, none for False/None, else the
    list."""
    if setting is None:
        return []
    if isinstance(setting, bool):
        return [c.id for c in cfg.effective_classes] if setting else []
    return [int(c) for c in setting]


def keep_largest(
    labels: npt.NDArray[np.uint8], setting: LargestComponent, cfg: Config
) -> npt.NDArray[np.uint8]:
    """``labels`` with the component filter of ``setting`` (``lcc_classes``) applied; unchanged when it names
    no class."""
    ids = lcc_classes(setting, cfg)
    return largest_component(labels, ids) if ids else labels
