"""Per-volume intensity normalisation to uint8, with a recipe that inference repeats exactly.

- CT: clip to a fixed HU window ``(low, high)`` and scale linearly to 0..255 (MONAI ``ScaleIntensityRange``
  with clipping).
- MR: robust percentile scaling: ``low``/``high`` are the given percentiles of the WHOLE volume (never per
  slice), then the same clip-and-scale.

Both return a recipe ``{"kind": "ct_window"|"mr_percentile", "low": v, "high": v}`` in intensity units
(HU for CT, the MR values at the percentiles), so ``apply_intensity(data, recipe)`` gives identical output.

Example:
    >>> recipe = intensity_recipe(hu, "ct", ct_window=(-1000, 1000))
    >>> recipe
    {'kind': 'ct_window', 'low': -1000.0, 'high': 1000.0}
    >>> img8 = apply_intensity(hu, recipe)   # uint8; slice by slice gives the same
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError

Recipe = dict[str, Any]


def scale_to_uint8(data: npt.ArrayLike, low: float, high: float) -> npt.NDArray[np.uint8]:
    """Clip ``data`` to ``[low, high]`` and map it linearly to 0..255 (rounded), any shape.

    Args:
        data: array of intensities.
        low: value mapped to 0.
        high: value mapped to 255 (must be above ``low``).

    Returns:
        uint8 array of the same shape.
    """
    if not high > low:
        raise DataError(f"intensity window is empty: low {low} >= high {high}")
    x = np.asarray(data, dtype=np.float32)
    scale = np.float32(255.0 / (high - low))
    out = (np.clip(x, np.float32(low), np.float32(high)) - np.float32(low)) * scale
    return np.rint(out).astype(np.uint8)


def mr_recipe(data: npt.ArrayLike, percentiles: tuple[float, float]) -> Recipe:
    """``{"kind": "mr_percentile", "low": v_lo, "high": v_hi}``: the values at two percentiles of the WHOLE
    volume. A constant volume gets ``high = low + 1`` (all zeros out)."""
    lo, hi = np.percentile(np.asarray(data), [float(percentiles[0]), float(percentiles[1])])
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + 1.0
    return {"kind": "mr_percentile", "low": lo, "high": hi}


def intensity_recipe(
    data: npt.ArrayLike,
    modality: Literal["ct", "mr"] | str,
    ct_window: tuple[float, float] = (-1000.0, 1000.0),
    mr_percentiles: tuple[float, float] = (0.5, 99.5),
) -> Recipe:
    """The recipe of ``modality`` (CT: the fixed HU window; MR: ``mr_recipe``), without normalising (apply it
    slice by slice with ``apply_intensity``: the parameters come from the whole volume, so the result is
    identical)."""
    if modality == "ct":
        return {"kind": "ct_window", "low": float(ct_window[0]), "high": float(ct_window[1])}
    if modality == "mr":
        return mr_recipe(data, mr_percentiles)
    raise DataError(f"unknown modality '{modality}'", hint="use 'ct' or 'mr'")


def apply_intensity(data: npt.ArrayLike, recipe: Recipe) -> npt.NDArray[np.uint8]:
    """Repeat a recorded normalisation exactly (both kinds are clip-and-scale between ``low`` and ``high``).

    Args:
        data: intensities, any shape.
        recipe: ``{"kind": "ct_window"|"mr_percentile", "low": float, "high": float}``.

    Returns:
        uint8 array of the same shape.

    Raises:
        DataError: unknown recipe kind or missing ``low``/``high``.
    """
    kind = recipe.get("kind")
    if kind not in ("ct_window", "mr_percentile"):
        raise DataError(
            f"unknown intensity recipe kind {kind!r}", hint="expected 'ct_window' or 'mr_percentile'"
        )
    try:
        low, high = float(recipe["low"]), float(recipe["high"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"intensity recipe needs numeric 'low' and 'high', got {recipe!r}") from e
    return scale_to_uint8(data, low, high)
