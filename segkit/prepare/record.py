"""The records of a prepared dataset, typed: what ``dataset.json`` says about each case and about its recipe.

- ``Geometry``: everything ``prepare`` records about how one case became slices (original shape, spacing,
  affine, orientation and reorientation transform, slicing axis, slice shape, prepared size and resize
  factors, intensity recipe, the slice indices written), i.e. what ``reassemble_volume`` needs to put
  predicted slices back into the original volume and what ``volume_to_slices`` needs to repeat the case
  exactly. Built by the slicers (``segkit.prepare.slicing.volume_geometry`` for volumes,
  ``segkit.prepare.slices2d`` for 2D slice cases);
- ``CaseRecord``: one entry of ``dataset.json``'s ``cases``: split, source files, their sha256 and the
  case's ``Geometry``;
- ``Preprocessing``: the recipe of a whole dataset (the config's ``prepare`` section and ``modality``), as
  ``dataset.json`` and a run's ``preprocessing.json`` hold it.

This module alone knows their JSON. ``to_json`` writes the keys, order and values ``dataset.json`` has always
had (so a dataset prepared again is byte-identical); ``from_json`` reads every record segkit has written and
raises a one-line ``DataError`` naming the file and the missing or bad key. Readers convert where the JSON is
read (``case_records``, ``Preprocessing.from_json``) and then use attributes only.

Example:
    >>> cases = case_records(load_manifest(data_dir), data_dir / "dataset.json")
    >>> geometry = cases["case_000"].geometry
    >>> labels = reassemble_volume(pred_slices, geometry)   # shape geometry.shape, affine geometry.affine
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from segkit.config import Config, PrepareConfig
from segkit.errors import DataError
from segkit.io.volumes import CaseKind, Slab, VolumeRef, picked_ref
from segkit.prepare.normalize import Recipe

VOLUME = CaseKind.VOLUME  # a 3D volume case (its records carry no "kind" key)
SLICES2D = CaseKind.SLICES2D  # one patient's 2D slice files (chest-CT); "spacing" is pixels, no reassembly
KINDS = (VOLUME, SLICES2D)
REWRITE_HINT = "run segkit prepare again to rewrite dataset.json"

T = TypeVar("T")


# === Reading JSON values, one error line per bad key ===


class _Reader:
    """Typed access to one JSON object; every problem is a ``DataError`` naming ``path`` and the key."""

    def __init__(self, obj: Any, what: str, path: Path | str | None, hint: str) -> None:
        self.what, self.path, self.hint = what, path, hint
        if not isinstance(obj, Mapping):
            raise DataError(f"{what} is not a JSON object (got {type(obj).__name__})", path=path, hint=hint)
        self.obj = obj

    def __contains__(self, key: str) -> bool:
        return key in self.obj

    def get(self, key: str, conv: Callable[[Any], T]) -> T:
        if key not in self.obj:
            raise DataError(f"{self.what} lacks key '{key}'", path=self.path, hint=self.hint)
        try:
            return conv(self.obj[key])
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise DataError(
                f"{self.what} has a bad '{key}': {_short(e)}", path=self.path, hint=self.hint
            ) from e


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


def _seq(conv: Callable[[Any], T], n: int | None = None) -> Callable[[Any], tuple[T, ...]]:
    """Converter of a JSON list (of ``n`` items when given) with ``conv`` applied to each item."""

    def run(value: Any) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        if n is not None and len(value) != n:
            raise ValueError(f"expected {n} values, got {len(value)}")
        return tuple(conv(v) for v in value)

    return run


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise TypeError(f"expected a whole number, got {value!r}")
    return int(value)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return dict(value)


def _slab(value: Any) -> Slab:
    obj = _object(value)
    slab = Slab.from_json(obj)  # KeyError / ValueError / TypeError: the reader names the key
    if slab.axis not in (0, 1, 2) or not 1 <= slab.index <= slab.count or slab.gap_mm < 0:
        raise ValueError(f"expected a block of a volume's slices, got {obj!r}")
    return slab


def _kind(value: Any) -> str:
    if value not in KINDS:
        raise ValueError(f"expected one of {', '.join(KINDS)}, got {value!r}")
    return str(value)


# fixed-length lists; ``_seq`` checks the length, so the casts only name the tuple types
_int2 = cast(Callable[[Any], tuple[int, int]], _seq(_int, 2))
_int3 = cast(Callable[[Any], tuple[int, int, int]], _seq(_int, 3))
_int4 = cast(Callable[[Any], tuple[int, int, int, int]], _seq(_int, 4))
_float2 = cast(Callable[[Any], tuple[float, float]], _seq(_float, 2))
_float3 = cast(Callable[[Any], tuple[float, float, float]], _seq(_float, 3))
_float4 = cast(Callable[[Any], tuple[float, float, float, float]], _seq(_float, 4))


def _axis(value: Any) -> int:
    axis = _int(value)
    if axis not in (0, 1, 2):
        raise ValueError(f"expected 0, 1 or 2, got {axis}")
    return axis


def _source_slice(value: Any) -> tuple[int, str, str | None]:
    k, image, mask = _seq(lambda v: v, 3)(value)
    return _int(k), _str(image), _opt_str(mask)


def _who(case_id: str | None) -> str:
    return f"case '{case_id}'" if case_id is not None else "case record"


# === Geometry ===


@dataclass(frozen=True)
class Geometry:
    """How one case became slices, and everything needed to put slices back (``dataset.json`` per case).

    Attributes:
        kind: ``VOLUME`` or ``SLICES2D`` (2D slice files: identity geometry, "spacing" in pixels).
        shape: (X, Y, Z) array shape of the original volume (2D: (H, W, number of slice files)).
        spacing: mm per array axis, rounded to 6 decimals.
        slice_spacing: mm of a display slice's (rows, columns), rounded to 6 decimals; None for 2D cases (and
            volume records written before ``prepare.spacing`` existed).
        affine: (4, 4) voxel -> RAS affine of the original volume, row by row.
        orientation: axis codes of ``affine``, e.g. ``"LPS"``.
        ornt_transform: nibabel ornt transform ((new_axis, flip) per array axis) to RAS canonical.
        canonical_shape: shape after reorientation to RAS.
        axis: slicing axis in canonical space.
        slice_shape: (rows, columns) of a display slice before the resize.
        size: (rows, columns) of the written slices (``prepare.size`` or resampled to ``prepare.spacing``).
        resize: ``size / slice_shape`` per dimension.
        n_slices: slices along ``axis`` in the volume.
        intensity: the intensity recipe applied (``segkit.prepare.normalize``); ``{"kind": "none"}`` for 2D.
        slices: indices of the slices written (all of them at inference), sorted.
        source_slices: 2D cases only: ``(slice_index, image file name, mask file name or None)`` per file.
        crop: a cascade's fine dataset (``cascade.enabled``): ``(r0, r1, c0, c1)``, the half-open rows and
            columns of the display slices (at ``slice_shape``) that were cut out and resized to ``size``
            (``segkit.prepare.roi``); None: whole slices.
    """

    kind: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    slice_spacing: tuple[float, float] | None
    affine: tuple[tuple[float, float, float, float], ...]
    orientation: str
    ornt_transform: tuple[tuple[int, int], ...]
    canonical_shape: tuple[int, int, int]
    axis: int
    slice_shape: tuple[int, int]
    size: tuple[int, int]
    resize: tuple[float, float]
    n_slices: int
    intensity: Recipe = field(hash=False)
    slices: tuple[int, ...]
    source_slices: tuple[tuple[int, str, str | None], ...] | None = None
    crop: tuple[int, int, int, int] | None = None

    @property
    def affine_array(self) -> npt.NDArray[np.float64]:
        """``affine`` as a (4, 4) float64 array (save predictions with it)."""
        return np.asarray(self.affine, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``dataset.json`` holds for this case's geometry (keys in the order always written:
        2D records start with ``kind`` and end with ``n_slices`` and ``source_slices``)."""
        out: dict[str, Any] = {}
        if self.kind != VOLUME:
            out["kind"] = self.kind
        out["shape"] = list(self.shape)
        out["spacing"] = list(self.spacing)
        if self.slice_spacing is not None:
            out["slice_spacing"] = list(self.slice_spacing)
        out["affine"] = [list(row) for row in self.affine]
        out["orientation"] = self.orientation
        out["ornt_transform"] = [list(row) for row in self.ornt_transform]
        out["canonical_shape"] = list(self.canonical_shape)
        out["axis"] = self.axis
        out["slice_shape"] = list(self.slice_shape)
        out["size"] = list(self.size)
        out["resize"] = list(self.resize)
        if self.kind == VOLUME:
            out["n_slices"] = self.n_slices
        out["intensity"] = dict(self.intensity)
        out["slices"] = list(self.slices)
        if self.kind != VOLUME:
            out["n_slices"] = self.n_slices
        if self.source_slices is not None:
            out["source_slices"] = [list(s) for s in self.source_slices]
        if self.crop is not None:
            out["crop"] = list(self.crop)
        return out

    @classmethod
    def from_json(cls, obj: Any, path: Path | str | None = None, case_id: str | None = None) -> Geometry:
        """Read a case's geometry from ``dataset.json`` (``cases[id]``; other keys of the entry are ignored).

        Every record written by segkit loads: ``kind`` absent means a volume; ``slice_spacing`` may be absent;
        ``size`` absent is ``slice_shape * resize`` rounded (the oldest records).

        Args:
            obj: the JSON object.
            path: the file it came from, named in errors.
            case_id: the case, named in errors.

        Raises:
            DataError: one line naming ``path`` and the missing or bad key (hint: prepare again).
        """
        r = _Reader(obj, _who(case_id), path, REWRITE_HINT)
        kind = r.get("kind", _kind) if "kind" in r else VOLUME
        shape = r.get("shape", _int3)  # read in the order written: the first missing key is named
        spacing = r.get("spacing", _float3)
        slice_spacing = r.get("slice_spacing", _float2) if "slice_spacing" in r else None
        affine = r.get("affine", _seq(_float4, 4))
        orientation = r.get("orientation", _str)
        ornt_transform = r.get("ornt_transform", _seq(_int2, 3))
        canonical_shape = r.get("canonical_shape", _int3)
        axis = r.get("axis", _axis)
        slice_shape = r.get("slice_shape", _int2)
        size = r.get("size", _int2) if "size" in r else None
        resize = r.get("resize", _float2)
        if size is None:
            size = (int(round(slice_shape[0] * resize[0])), int(round(slice_shape[1] * resize[1])))
        return cls(
            kind=kind,
            shape=shape,
            spacing=spacing,
            slice_spacing=slice_spacing,
            affine=affine,
            orientation=orientation,
            ornt_transform=ornt_transform,
            canonical_shape=canonical_shape,
            axis=axis,
            slice_shape=slice_shape,
            size=size,
            resize=resize,
            n_slices=r.get("n_slices", _int),
            intensity=r.get("intensity", _object),
            slices=r.get("slices", _seq(_int)),
            source_slices=r.get("source_slices", _seq(_source_slice)) if "source_slices" in r else None,
            crop=r.get("crop", _int4) if "crop" in r else None,
        )


# === Case records ===


@dataclass(frozen=True)
class CaseRecord:
    """One case of ``dataset.json`` (``cases[id]``, also ``records/cases/<id>.json``'s ``record``).

    Attributes:
        split: ``train``, ``valid`` or ``test``.
        image: absolute path of the source image volume (2D cases: the folder of the image files).
        label: the same for the label volume (2D: the mask folder), or None without labels.
        sha256: ``{"image": hex, "label": hex or None}`` of the source files.
        geometry: the case's ``Geometry``.
        series: of an image or label holding several volumes (DICOM series, cine phases, a 4D file): the one
            ``--series`` picked, ``{"image": {"name", "number", "description", "phase"} or None, "label":
            ...}`` (``segkit.io.volumes.picked_volume``: series number and description, no patient data);
            ``None`` (not written) when neither holds several.
        slab: the block of the source volume's slices this case is (``prepare.slabs``; ``geometry`` is the
            block's); ``None`` (not written): the whole volume.
    """

    split: str
    image: str
    label: str | None
    sha256: dict[str, str | None] = field(hash=False)
    geometry: Geometry
    series: dict[str, Any] | None = field(default=None, hash=False)
    slab: Slab | None = None

    @property
    def kind(self) -> str:
        return self.geometry.kind

    def volume_files(self) -> tuple[Path, Path] | None:
        """(image, label) source files of a volume case with both recorded; None otherwise (2D, no label)."""
        if self.kind != VOLUME or not self.image or not self.label:
            return None
        return Path(self.image), Path(self.label)

    def volume_refs(self) -> tuple[VolumeRef, VolumeRef] | None:
        """``volume_files`` as the volumes to read: the series or phase ``series`` records, else the files.

        Raises:
            DataError: a recorded series no longer in its folder.
        """
        files = self.volume_files()
        if files is None:
            return None
        picked = self.series or {}
        image, label = picked_ref(files[0], picked.get("image")), picked_ref(files[1], picked.get("label"))
        return replace(image, slab=self.slab), replace(label, slab=self.slab)

    def to_json(self) -> dict[str, Any]:
        """The ``dataset.json`` entry: split, image, label, sha256, (series, slab,) then the geometry's
        keys."""
        out = {"split": self.split, "image": self.image, "label": self.label, "sha256": dict(self.sha256)}
        if self.series is not None:
            out["series"] = self.series
        if self.slab is not None:
            out["slab"] = self.slab.to_json()
        return {**out, **self.geometry.to_json()}

    @classmethod
    def from_json(cls, obj: Any, path: Path | str | None = None, case_id: str | None = None) -> CaseRecord:
        """Read one case entry of ``dataset.json``.

        Raises:
            DataError: one line naming ``path`` and the missing or bad key (hint: prepare again).
        """
        r = _Reader(obj, _who(case_id), path, REWRITE_HINT)
        return cls(
            split=r.get("split", _str),
            image=r.get("image", _str),
            label=r.get("label", _opt_str),
            sha256=r.get("sha256", lambda v: {str(k): _opt_str(h) for k, h in _object(v).items()}),
            geometry=Geometry.from_json(obj, path, case_id),
            series=r.get("series", _object) if "series" in obj else None,
            slab=r.get("slab", _slab) if "slab" in obj else None,
        )


def case_records(manifest: Mapping[str, Any], path: Path | str | None = None) -> dict[str, CaseRecord]:
    """``CaseRecord`` of every case of a loaded ``dataset.json`` (``segkit.prepare.manifest.load_manifest``),
    in its order.

    Raises:
        DataError: ``cases`` is not an object, or a case record lacks a key or has a bad one (naming
            ``path``).
    """
    cases = manifest.get("cases")
    if not isinstance(cases, Mapping):
        raise DataError("dataset.json 'cases' is not an object", path=path, hint=REWRITE_HINT)
    return {str(cid): CaseRecord.from_json(rec, path, str(cid)) for cid, rec in cases.items()}


# === Preprocessing recipe of a dataset ===


@dataclass(frozen=True)
class Preprocessing:
    """The recipe ``prepare`` applies to every case of a dataset: the ``prepare`` section and the modality.

    What ``dataset.json`` and a run's ``preprocessing.json`` hold under ``prepare`` / ``modality``; inference
    repeats it on new volumes (``segkit.prepare.slicing.volume_to_slices``).
    """

    prepare: PrepareConfig = field(hash=False)
    modality: str

    @classmethod
    def from_config(cls, cfg: Config) -> Preprocessing:
        return cls(cfg.prepare, cfg.modality)

    def to_json(self) -> dict[str, Any]:
        return {"prepare": self.prepare.model_dump(mode="json"), "modality": self.modality}

    @classmethod
    def from_json(cls, obj: Any, path: Path | str | None = None, hint: str = REWRITE_HINT) -> Preprocessing:
        """Read ``prepare`` and ``modality`` of a ``dataset.json`` or ``preprocessing.json`` object (other
        keys are ignored).

        Raises:
            DataError: one line naming ``path`` and the missing key, or the first invalid setting of
                ``prepare``.
        """
        r = _Reader(obj, "the preprocessing recipe", path, hint)
        modality = r.get("modality", _str)
        section = r.get("prepare", _object)
        try:
            prepare = PrepareConfig.model_validate(section)
        except ValueError as e:  # pydantic.ValidationError is a ValueError
            raise DataError(
                f"the 'prepare' section is invalid: {_first_error(e)}", path=path, hint=hint
            ) from e
        return cls(prepare, modality)


def _first_error(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "prepare"
            return f"{where}: {first.get('msg', '')}"
        except (IndexError, TypeError, AttributeError):
            pass
    return _short(e)


__all__ = [
    "KINDS",
    "REWRITE_HINT",
    "SLICES2D",
    "VOLUME",
    "CaseRecord",
    "Geometry",
    "Preprocessing",
    "case_records",
]
