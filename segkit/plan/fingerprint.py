"""The dataset fingerprint of ``segkit plan`` (nnU-Net's "dataset fingerprint"): per case and summarised,
what the planning rules (``segkit.plan.rules``) decide from.

Every case is read through ``segkit.io.volumes`` and reoriented to RAS canonical (``segkit.geometry``), so
shapes, spacings and bounding boxes are given per canonical axis ``(x: R, y: A, z: S)`` whatever the file's
orientation; its own orientation is kept as axis codes (``"LPS"``). Per case:

- ``image``, ``label``: the files' paths relative to the dataset folder (POSIX ``/``; never absolute: DICOM
  folders above the dataset are often named after the patient);
- ``shape``, ``spacing`` (mm): canonical;
- ``orientation``: the file's axis codes; ``format``: the ``segkit.io.volumes`` format name;
- ``intensity``: of the whole image ``min``, ``max``; inside the foreground (label > 0) ``mean``, ``std``,
  ``p00_5``, ``p99_5`` (numpy's linear percentiles);
- ``foreground``: ``voxels``, ``fraction`` of the volume, bounding box ``bbox_vox`` (extent per canonical axis
  in voxels) and ``bbox_mm``;
- ``classes``: voxels per raw label value (background 0 included);
- ``dicom_modality``: the DICOM Modality of a DICOM series (``""`` otherwise).

The summary (``summarize``): number of cases, the modality guess and its reason (CT when the DICOM Modality
says so, or when the intensities are HU-like: some image's minimum at or below ``HU_AIR``), the median /
minimum / maximum spacing and shape, foreground bounding boxes in mm (median, maximum), foreground intensity
percentiles 0.5 / 99.5 over the foreground voxels of every case pooled (at most ``SAMPLE`` voxels a case,
drawn with a fixed seed, as nnU-Net samples them) with mean and std, and the class frequencies (share of all
voxels, share of foreground voxels, number of cases holding each label value).

Example:
    >>> data = Path("la2018_lge_mri")
    >>> fp = fingerprint_cases(find_cases(data, detect_layout(data)).cases, root=data)  # segkit.plan.layout
    >>> fp["summary"]["spacing"]["median"], fp["summary"]["modality"]
    ([0.625, 0.625, 0.625], 'mr')
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError, SegkitError
from segkit.geometry import axis_codes, canonical_affine, spacing_from_affine, to_canonical
from segkit.io.volumes import load_volume
from segkit.prepare.sources import CaseSpec
from segkit.progress import NULL_PROGRESS, Progress

HU_AIR = -500.0
"""An image minimum at or below this (air is about -1000 HU, CT background -1024) reads as CT in HU; MR
intensities are non-negative or z-scores a few units below zero."""
SAMPLE = 10_000
"""Foreground voxels a case contributes at most to the pooled intensity percentiles."""
PERCENTILES = (0.5, 99.5)


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def _bbox_extent(mask: npt.NDArray[np.bool_]) -> list[int]:
    """Extent in voxels per axis of the ``True`` voxels of a 3D mask (zeros when empty)."""
    extent = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        extent.append(int(hit[-1] - hit[0] + 1) if hit.size else 0)
    return extent


def _dicom_modality(spec: CaseSpec) -> str:
    """The DICOM Modality of a DICOM image's series (``""`` for other formats). Lists the folder's series
    again after ``load_volume`` read it (headers only): ``Volume`` does not carry the modality."""
    from segkit.io import dicom
    from segkit.io.volumes import volume_format

    fmt = volume_format(spec.image)
    if fmt is None or fmt.name != "dicom":
        return ""
    try:
        series = dicom.list_series(spec.image)
    except SegkitError:
        return ""
    key = spec.image_ref.series_key  # the series the case reads, when the folder holds several
    picked = [s for s in series if key is None or s.key == key]
    return picked[0].modality if picked else ""


def relative_path(path: Path, root: Path | None) -> str:
    """``path`` relative to the dataset folder ``root`` (POSIX); its name alone when it lies outside
    ``root`` or no ``root`` is given: never an absolute path."""
    path = Path(path)
    if root is not None:
        for p, r in ((path, Path(root)), (path.resolve(), Path(root).resolve())):
            if p.is_relative_to(r):
                return p.relative_to(r).as_posix() or "."
    return path.name


def case_fingerprint(spec: CaseSpec,
                     root: Path | None = None) -> tuple[dict[str, Any], npt.NDArray[np.float64]]:
    """The fingerprint of one labelled case, and its foreground intensities (at most ``SAMPLE`` of them,
    drawn with a seed fixed per case id) for the pooled percentiles; ``root``: the dataset folder the
    recorded file paths are relative to (``relative_path``).

    Raises:
        DataError: image and label differ in shape, or the image is not finite.
    """
    assert spec.label is not None
    image, label = load_volume(spec.image_ref), load_volume(spec.label)
    if image.data.shape != label.data.shape:
        raise DataError(f"image {image.data.shape} and label {label.data.shape} differ in shape",
                        path=spec.label, hint="give the label volume of this image")
    img = to_canonical(np.asarray(image.data, dtype=np.float64), image.affine)[0]
    lbl = to_canonical(np.asarray(label.data), image.affine)[0]
    if not np.isfinite(img).all():
        raise DataError("image holds NaN or infinite values", path=spec.image)
    spacing = list(spacing_from_affine(canonical_affine(image.affine, image.data.shape)))  # RAS axis order
    fg = lbl > 0
    values = img[fg]
    values_raw, counts = np.unique(lbl, return_counts=True)
    extent = _bbox_extent(fg)
    stats = {"min": _r(img.min()), "max": _r(img.max())}
    if values.size:
        lo, hi = np.percentile(values, PERCENTILES)
        stats |= {"mean": _r(values.mean()), "std": _r(values.std()), "p00_5": _r(lo), "p99_5": _r(hi)}
    record = {
        "case_id": spec.case_id,
        "image": relative_path(spec.image, root),
        "label": relative_path(spec.label, root),
        "format": image.format,
        "dicom_modality": _dicom_modality(spec),
        "orientation": axis_codes(image.affine),
        "shape": [int(n) for n in img.shape],
        "spacing": [_r(s) for s in spacing],
        "intensity": stats,
        "foreground": {
            "voxels": int(fg.sum()),
            "fraction": _r(fg.mean(), 6),
            "bbox_vox": extent,
            "bbox_mm": [_r(e * s, 2) for e, s in zip(extent, spacing, strict=True)],
        },
        "classes": {str(int(v)): int(n) for v, n in zip(values_raw, counts, strict=True)},
    }
    rng = np.random.default_rng(zlib.crc32(spec.case_id.encode()))
    sample = values if values.size <= SAMPLE else rng.choice(values, SAMPLE, replace=False)
    return record, sample


def _stats(rows: list[list[float]]) -> dict[str, list[float]]:
    a = np.asarray(rows, dtype=np.float64)
    return {"median": [_r(v) for v in np.median(a, axis=0)], "min": [_r(v) for v in a.min(axis=0)],
            "max": [_r(v) for v in a.max(axis=0)]}


def guess_modality(cases: list[dict[str, Any]]) -> tuple[str, str]:
    """``("ct" | "mr", reason)``: the DICOM Modality when the cases carry one, else CT when some image's
    minimum is HU-like (at or below ``HU_AIR``)."""
    tags = {c["dicom_modality"] for c in cases if c["dicom_modality"]}
    if tags:
        kind = "ct" if "CT" in tags else "mr"
        return kind, f"DICOM Modality {', '.join(sorted(tags))}"
    low = min(c["intensity"]["min"] for c in cases)
    if low <= HU_AIR:
        return "ct", f"HU-like intensities: the lowest image minimum is {low:g} (air: about -1000 HU)"
    return "mr", f"no HU-like intensities: the lowest image minimum is {low:g} (> {HU_AIR:g})"


def _class_table(cases: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    totals: dict[str, int] = {}
    holders: dict[str, int] = {}
    for c in cases:
        for v, n in c["classes"].items():
            totals[v] = totals.get(v, 0) + n
            holders[v] = holders.get(v, 0) + 1
    every = sum(totals.values())
    fg = sum(n for v, n in totals.items() if v != "0")
    return {
        v: {"voxels": totals[v], "fraction": _r(totals[v] / every, 6),
            "of_foreground": _r(totals[v] / fg, 6) if v != "0" and fg else 0.0, "cases": holders[v]}
        for v in sorted(totals, key=int)
    }


def summarize(cases: list[dict[str, Any]], samples: list[npt.NDArray[np.float64]]) -> dict[str, Any]:
    """The dataset summary of the per-case fingerprints (see the module docstring)."""
    modality, reason = guess_modality(cases)
    pooled = np.concatenate(samples) if samples else np.zeros(0)
    fg_int: dict[str, float] = {}
    if pooled.size:
        lo, hi = np.percentile(pooled, PERCENTILES)
        fg_int = {"mean": _r(pooled.mean()), "std": _r(pooled.std()), "p00_5": _r(lo), "p99_5": _r(hi)}
    return {
        "cases": len(cases),
        "modality": modality,
        "modality_reason": reason,
        "orientations": sorted({c["orientation"] for c in cases}),
        "spacing": _stats([c["spacing"] for c in cases]),
        "shape": _stats([c["shape"] for c in cases]),
        "size_mm": _stats([[n * s for n, s in zip(c["shape"], c["spacing"], strict=True)] for c in cases]),
        "foreground_bbox_mm": _stats([c["foreground"]["bbox_mm"] for c in cases]),
        "foreground_fraction": _stats([[c["foreground"]["fraction"]] for c in cases]),
        "foreground_intensity": fg_int,
        "classes": _class_table(cases),
    }


def fingerprint_cases(cases: list[CaseSpec], progress: Progress = NULL_PROGRESS,
                      root: Path | None = None) -> dict[str, Any]:
    """``{"summary": ..., "cases": [...]}`` of labelled volume cases (``case_fingerprint``, ``summarize``),
    one progress unit per case; file paths recorded relative to the dataset folder ``root``.

    Raises:
        DataError: no case, or a case that cannot be read (named by its file).
    """
    if not cases:
        raise DataError("no labelled cases to fingerprint")
    progress.start(len(cases), "fingerprint")
    records, samples = [], []
    for spec in cases:
        record, sample = case_fingerprint(spec, root)
        records.append(record)
        samples.append(sample)
        progress.advance()
    return {"summary": summarize(records, samples), "cases": records}
