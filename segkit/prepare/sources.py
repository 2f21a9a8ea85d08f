"""Source adapters: find the cases of a raw dataset in its layout as published.

Each adapter takes the raw folder and returns a ``Discovery``: the sorted ``CaseSpec`` list and one line per
problem (an image without label or a label without image, named by file). The registered ``discover`` of
every adapter then keeps one volume per case (``select_series``: ``--series`` picks one DICOM series, cine
phase or 4D NIfTI phase of an image that holds several). Adapters are registered in ``SOURCES`` by lower-case
name:

=============  =====================================================================================
``hvsmr``      HVSMR-2.0 ``cropped_norm/``: ``patN_cropped_norm.nii.gz`` + ``patN_cropped_seg.nii.gz``
               (``*_seg_endpoints*`` ignored). SRC may be ``cropped_norm/`` or its parent.
``hocm``       HOCMvalves: ``N_image.nii[.gz]`` + ``N_label.nii[.gz]`` in one folder.
``alcapa``     ImageALCAPA: in one folder ``<id>_image.nii[.gz]`` + ``<id>_label.nii[.gz]`` or
               ``<id>.img.nii[.gz]`` + ``<id>.label.nii[.gz]``; or ``images/`` + ``labels/`` subfolders
               holding files with equal names (``<id>.nii[.gz]``).
``left-atrial`` MSD Task02_Heart: ``imagesTr/la_NNN.nii[.gz]`` + ``labelsTr/la_NNN.nii[.gz]`` (macOS ``._*``
               files skipped). SRC is the ``Task02_Heart`` folder.
``chest-ct``   Kaggle chest-ct-segmentation: ``images/`` + ``masks/`` (or ``images/images`` +
               ``masks/masks``), JPG/PNG slices ``<patient>_<n>.jpg`` and masks ``<patient>_mask_<n>.jpg``
               (or the same name); ``train.csv`` (``ImageId``, ``MaskId``) pairs them when present. One
               case per patient.
``nifti``      any folder: ``--image-glob`` / ``--label-glob`` with one ``*`` each (any format of
               ``segkit.io.volumes``, DICOM series folders included); the case id is the text matched by
               ``*``.
``phantom``    no SRC: synthetic volumes generated into ``OUT/raw`` (``segkit.prepare.phantom``).
=============  =====================================================================================
"""

from __future__ import annotations

import csv
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from segkit.errors import ConfigError, DataError, SegkitError
from segkit.io.volumes import (
    CaseKind,
    Slab,
    VolumeRef,
    dicom_series_refs,
    is_volume,
    supported_text,
    volume_format,
    volume_refs,
)
from segkit.registry import Registry

_NII = (".nii.gz", ".nii")


@dataclass(frozen=True)
class CaseSpec:
    """One case of a raw dataset.

    Attributes:
        case_id: patient / volume id (used in slice file names ``<case_id>_<slice_index:04d>.png``).
        image: the image volume (for ``slices2d``: the first slice image).
        label: the label volume, or None (unlabelled).
        kind: ``"volume"`` (one 3D image + label) or ``"slices2d"`` (several 2D slices, see ``slices``).
        slices: for ``slices2d`` only: ``(slice_index, image_path, mask_path)`` sorted by slice index.
        pick: the one DICOM series (or cine phase) of an image folder holding several, or the one phase of a
            4D NIfTI image, chosen by ``--series`` (``select_series``); ``None``: the image's only volume.
        label_pick: the same for a label that holds several volumes; ``None``: the label's only volume.
        resample_tilt: a gantry-tilted DICOM series is resampled onto an untilted grid instead of refused
            (``--resample-tilt``; ``segkit.io.volumes.VolumeRef.resample_tilt``).
        slab: one block of the volume's slices (``prepare.slabs``, ``slab_cases``); ``None``: all of them.
    """

    case_id: str
    image: Path
    label: Path | None
    kind: CaseKind = CaseKind.VOLUME
    slices: tuple[tuple[int, Path, Path | None], ...] = ()
    pick: VolumeRef | None = None
    label_pick: VolumeRef | None = None
    resample_tilt: bool = False
    slab: Slab | None = None

    @property
    def image_ref(self) -> VolumeRef:
        """The image volume to read: ``pick``, else ``image`` itself (only ``slab``'s block, if any)."""
        ref = self.pick if self.pick is not None else VolumeRef(self.image)
        return replace(ref, resample_tilt=ref.resample_tilt or self.resample_tilt, slab=self.slab)

    @property
    def label_ref(self) -> VolumeRef | None:
        """The label volume to read: ``label_pick``, else ``label`` itself (``None`` without a label; only
        ``slab``'s block, if any)."""
        ref = self.label_pick if self.label_pick is not None else \
            (VolumeRef(self.label) if self.label is not None else None)
        if ref is None:
            return None
        return replace(ref, resample_tilt=ref.resample_tilt or self.resample_tilt, slab=self.slab)

    @property
    def files(self) -> list[Path]:
        """Every source file of the case (images, then labels)."""
        if self.kind == "slices2d":
            return [img for _, img, _ in self.slices] + [m for _, _, m in self.slices if m is not None]
        return [self.image] + ([self.label] if self.label is not None else [])


@dataclass
class Discovery:
    """What an adapter found: sorted cases and one line per problem (file name + reason)."""

    cases: list[CaseSpec]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceOptions:
    """Options of particular sources, handed to every adapter's ``discover``.

    Attributes:
        image_glob, label_glob: ``nifti``: image / label pattern with one ``*`` each (the case id).
        phantom_n: ``phantom``: number of cases to generate.
        phantom_seed: ``phantom``: generator seed (None: the config's ``seed``).
        series: an image that holds several volumes (a folder of several DICOM series, a cine series, a 4D
            NIfTI): the one to take, by series number (``4``), name as listed (``s004_T1w``,
            ``la_003_phase02``) or glob (``'s004*'``, ``'*_phase01'``); ``select_series``.
        resample_tilt: resample gantry-tilted DICOM series instead of refusing them (``--resample-tilt``).
    """

    image_glob: str | None = None
    label_glob: str | None = None
    phantom_n: int = 6
    phantom_seed: int | None = None
    series: str | None = None
    resample_tilt: bool = False


@dataclass(frozen=True)
class Source:
    """A registered source adapter.

    Attributes:
        name: registry name.
        preset: default config file name in ``configs/`` (None: ``--config`` is required).
        needs_src: whether the command takes a SRC folder.
        discover: ``(src, options) -> Discovery``.
        example: a command line shown in ``--help``.
    """

    name: str
    preset: str | None
    needs_src: bool
    discover: Callable[[Path, SourceOptions], Discovery]
    example: str

    def check_src(self, src: Path | None) -> None:
        """Refuse a missing SRC folder for a source that reads one (``needs_src``); the command line and
        ``run_prepare`` both ask here.

        Raises:
            SegkitError: ``needs_src`` and ``src`` is None.
        """
        if self.needs_src and src is None:
            raise SegkitError(f"source '{self.name}' needs a SRC folder", hint=f"e.g. {self.example}")


SOURCES: Registry[Source] = Registry("source")


def _register(name: str, preset: str | None, example: str, needs_src: bool = True):  # noqa: ANN202
    def deco(fn: Callable[[Path, SourceOptions], Discovery]) -> Callable[[Path, SourceOptions], Discovery]:
        def discover_one_volume_per_case(src: Path, options: SourceOptions) -> Discovery:
            found = select_series(fn(src, options), options.series)
            if options.resample_tilt:
                found.cases = [replace(c, resample_tilt=True) for c in found.cases]
            return found

        SOURCES.register(name)(Source(name, preset, needs_src, discover_one_volume_per_case, example))
        return fn

    return deco


# === helpers ===


def _require_dir(src: Path) -> Path:
    src = Path(src)
    if not src.exists():
        raise DataError("source folder not found", path=src, hint="give the folder of the raw dataset")
    if not src.is_dir():
        raise DataError("source is not a folder", path=src, hint="give the folder that holds the raw dataset")
    return src


def _visible(paths: list[Path]) -> list[Path]:
    """Regular files, without macOS resource forks (``._*``) and hidden files."""
    return sorted(p for p in paths if p.is_file() and not p.name.startswith("."))


def _strip(name: str, suffixes: tuple[str, ...]) -> str | None:
    for s in suffixes:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return None


def _pair(images: dict[str, Path], labels: dict[str, Path], what: str = "label") -> Discovery:
    """Pair by case id; unmatched files become problem lines."""
    cases = [CaseSpec(cid, images[cid], labels[cid]) for cid in sorted(images.keys() & labels.keys())]
    problems = [
        f"{images[c].name}: no {what} file for case '{c}'" for c in sorted(images.keys() - labels.keys())
    ]
    problems += [
        f"{labels[c].name}: no image file for case '{c}'" for c in sorted(labels.keys() - images.keys())
    ]
    return Discovery(cases, problems)


def _by_suffix(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """case id -> file for files ending with one of ``suffixes`` (the id is the name without it)."""
    found: dict[str, Path] = {}
    for p in _visible(list(folder.iterdir())):
        cid = _strip(p.name, suffixes)
        if cid:
            if cid in found:
                raise DataError(f"two files for case '{cid}': {found[cid].name} and {p.name}", path=folder,
                                hint="keep one of the two files")
            found[cid] = p
    return found


def _nonempty(d: Discovery, src: Path, expected: str) -> Discovery:
    if not d.cases and not d.problems:
        raise DataError("no cases found", path=src, hint=f"expected {expected}")
    return d


# === adapters ===


@_register("hvsmr", "whole-heart.yaml", "segkit prepare hvsmr HVSMR-2.0/cropped_norm --out data/whole-heart")
def discover_hvsmr(src: Path, options: SourceOptions) -> Discovery:
    """HVSMR-2.0 ``cropped_norm/``: ``patN_cropped_norm.nii.gz`` + ``patN_cropped_seg.nii.gz``."""
    src = _require_dir(src)
    if (src / "cropped_norm").is_dir():
        src = src / "cropped_norm"
    files = [p for p in _visible(list(src.iterdir())) if "_seg_endpoints" not in p.name]
    images = {c: p for p in files if (c := _strip(p.name, tuple(f"_cropped_norm{e}" for e in _NII)))}
    labels = {c: p for p in files if (c := _strip(p.name, tuple(f"_cropped_seg{e}" for e in _NII)))}
    return _nonempty(_pair(images, labels), src, "patN_cropped_norm.nii.gz + patN_cropped_seg.nii.gz")


@_register("hocm", "hocm.yaml", "segkit prepare hocm HOCMvalves/ --out data/hocm")
def discover_hocm(src: Path, options: SourceOptions) -> Discovery:
    """HOCMvalves: ``N_image.nii`` + ``N_label.nii`` in one folder."""
    src = _require_dir(src)
    images = _by_suffix(src, tuple(f"_image{e}" for e in _NII))
    labels = _by_suffix(src, tuple(f"_label{e}" for e in _NII))
    return _nonempty(_pair(images, labels), src, "N_image.nii + N_label.nii")


@_register("alcapa", "alcapa.yaml", "segkit prepare alcapa ImageALCAPA/ --out data/alcapa --binary")
def discover_alcapa(src: Path, options: SourceOptions) -> Discovery:
    """ImageALCAPA: ``<id>_image/_label.nii[.gz]``, ``<id>.img/.label.nii.gz``, or ``images/`` +
    ``labels/``."""
    src = _require_dir(src)
    if (src / "images").is_dir() and (src / "labels").is_dir():
        images = _by_suffix(src / "images", _NII)
        labels = _by_suffix(src / "labels", _NII)
    else:
        images = _by_suffix(src, tuple(f"{sep}{e}" for sep in ("_image", ".img", ".image") for e in _NII))
        labels = _by_suffix(src, tuple(f"{sep}{e}" for sep in ("_label", ".label") for e in _NII))
    return _nonempty(
        _pair(images, labels),
        src,
        "<id>_image.nii.gz + <id>_label.nii.gz, <id>.img.nii.gz + <id>.label.nii.gz, "
        "or images/ + labels/ with equal names",
    )


@_register(
    "left-atrial", "left-atrial.yaml", "segkit prepare left-atrial Task02_Heart/ --out data/left-atrial"
)
def discover_left_atrial(src: Path, options: SourceOptions) -> Discovery:
    """MSD Task02_Heart: ``imagesTr/la_NNN.nii.gz`` + ``labelsTr/la_NNN.nii.gz``."""
    src = _require_dir(src)
    img_dir, lab_dir = src / "imagesTr", src / "labelsTr"
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise DataError(f"folder {d.name}/ not found", path=src, hint="give the Task02_Heart folder")
    images = _by_suffix(img_dir, _NII)
    labels = _by_suffix(lab_dir, _NII)
    return _nonempty(_pair(images, labels), src, "imagesTr/la_NNN.nii.gz + labelsTr/la_NNN.nii.gz")


_SLICE_RE = re.compile(r"^(?P<case>.+)_(?P<index>\d+)$")


def _chest_ids(stem: str) -> tuple[str, int | None]:
    """``ID00007637202177411956430_12`` -> (patient id, 12); ``..._mask_12`` -> same."""
    m = _SLICE_RE.match(stem)
    if not m:
        return stem, None
    case = m.group("case")
    if case.endswith("_mask"):
        case = case[: -len("_mask")]
    return case, int(m.group("index"))


@_register("chest-ct", "chest-ct.yaml", "segkit prepare chest-ct chest-ct-segmentation/ --out data/chest-ct")
def discover_chest_ct(src: Path, options: SourceOptions) -> Discovery:
    """Kaggle chest-ct-segmentation: 2D image slices + RGB masks (channels lung, heart, trachea)."""
    from segkit.io.slices import IMAGE_SUFFIXES  # lazy: importing this module does not load OpenCV

    src = _require_dir(src)
    img_dir, mask_dir = src / "images", src / "masks"
    if (img_dir / "images").is_dir():
        img_dir = img_dir / "images"
    if (mask_dir / "masks").is_dir():
        mask_dir = mask_dir / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(
                f"folder {d.relative_to(src)}/ not found", path=src, hint="expected images/ and masks/"
            )
    images = {p.name: p for p in _visible(list(img_dir.iterdir())) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.name: p for p in _visible(list(mask_dir.iterdir())) if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs: dict[str, str] = {}  # image name -> mask name
    problems: list[str] = []
    csv_path = next((p for p in (src / "train.csv", src.parent / "train.csv") if p.is_file()), None)
    if csv_path is not None:
        try:
            with csv_path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or not {"ImageId", "MaskId"} <= set(reader.fieldnames):
                    raise DataError("train.csv needs the columns ImageId and MaskId", path=csv_path,
                                    hint="add a header row: ImageId,MaskId")
                for row in reader:
                    pairs[row["ImageId"].strip()] = row["MaskId"].strip()
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"cannot read train.csv: {e}", path=csv_path, hint="save it as UTF-8 CSV") from e
        listed_images, listed = set(pairs), set(pairs.values())
        for name, mname in sorted(pairs.items()):
            if name not in images:
                problems.append(f"{name}: listed in train.csv but not found in {img_dir.name}/")
            elif mname not in masks:
                problems.append(
                    f"{mname}: mask of {name} listed in train.csv but not found in {mask_dir.name}/"
                )
        pairs = {k: v for k, v in pairs.items() if k in images and v in masks}
        problems += [f"{n}: image not listed in train.csv" for n in sorted(images.keys() - listed_images)]
        problems += [f"{n}: mask not listed in train.csv" for n in sorted(masks.keys() - listed)]
    else:
        by_key: dict[tuple[str, int | None], str] = {}
        for mname in masks:
            by_key[_chest_ids(Path(mname).stem)] = mname
        used: set[str] = set()
        for name in sorted(images):
            mask_name = by_key.get(_chest_ids(Path(name).stem))
            if mask_name is None:
                problems.append(f"{name}: no mask file in {mask_dir.name}/")
            else:
                pairs[name] = mask_name
                used.add(mask_name)
        problems += [f"{m}: no image file in {img_dir.name}/" for m in sorted(masks.keys() - used)]
    grouped: dict[str, list[tuple[int, Path, Path | None]]] = {}
    for name, mname in pairs.items():
        case, index = _chest_ids(Path(name).stem)
        grouped.setdefault(case, []).append((index if index is not None else -1, images[name], masks[mname]))
    cases = []
    for case in sorted(grouped):
        items = sorted(grouped[case], key=lambda t: (t[0], t[1].name))
        if any(i < 0 for i, _, _ in items):  # no numeric slice suffix: number them in name order
            items = [(k, img, m) for k, (_, img, m) in enumerate(items)]
        indices = [i for i, _, _ in items]
        if len(set(indices)) != len(indices):
            dup = next(i for i in indices if indices.count(i) > 1)
            problems.append(f"{items[indices.index(dup)][1].name}: slice {dup} of case '{case}' occurs twice")
            continue
        cases.append(CaseSpec(case, items[0][1], items[0][2], CaseKind.SLICES2D, tuple(items)))
    return _nonempty(Discovery(cases, problems), src, "images/ + masks/ with <patient>_<n>.jpg files")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Regex for a glob with exactly one ``*`` capturing the case id (other wildcards as in fnmatch)."""
    head, star, tail = pattern.partition("*")
    return re.compile(
        fnmatch.translate(head)[4:-3] + "(?P<case>.+)" + fnmatch.translate(tail)[4:-3] + r"\Z"
    )


def _match_glob(src: Path, pattern: str, option: str) -> dict[str, Path]:
    if pattern.count("*") != 1 or "**" in pattern:
        raise DataError(
            f"{option} '{pattern}' must contain exactly one '*' (it matches the case id)",
            hint=f"e.g. {option} '*_image.nii.gz'",
        )
    rx = _glob_regex(pattern)
    found: dict[str, Path] = {}
    for p in sorted(src.glob(pattern)):
        if p.name.startswith("._") or not (p.is_file() or (p.is_dir() and is_volume(p))):
            continue
        m = rx.match(p.relative_to(src).as_posix())
        if m is None:
            continue
        cid = m.group("case")
        if "/" in cid:
            raise DataError(f"{option} '{pattern}': '*' matched a path with '/': {cid}", path=p,
                            hint="put the folder part outside the '*', e.g. 'images/*.nii.gz'")
        found[cid] = p
    return found


@_register(
    "nifti",
    None,
    "segkit prepare nifti volumes/ --image-glob '*_image.nii.gz' --label-glob '*_label.nii.gz' "
    "--config my.yaml --out data/mine",
)
def discover_nifti(src: Path, options: SourceOptions) -> Discovery:
    """Any folder of volume pairs (any ``segkit.io.volumes`` format) matched by ``--image-glob`` /
    ``--label-glob``."""
    src = _require_dir(src)
    if not options.image_glob or not options.label_glob:
        raise DataError(
            "source 'nifti' needs --image-glob and --label-glob",
            hint="e.g. --image-glob '*_image.nii.gz' --label-glob '*_label.nii.gz'",
        )
    images = _match_glob(src, options.image_glob, "--image-glob")
    labels = _match_glob(src, options.label_glob, "--label-glob")
    labels_only = {k: v for k, v in labels.items() if v not in set(images.values())}
    images = {k: v for k, v in images.items() if v not in set(labels.values())}
    d = _pair(images, labels_only)
    bad = [c for c in d.cases if not is_volume(c.image) or not is_volume(c.label)]  # type: ignore[arg-type]
    d.problems += [f"{c.image.name}: not a volume ({supported_text()})" for c in bad]
    d.cases = [c for c in d.cases if c not in bad]
    return _nonempty(d, src, f"files matching '{options.image_glob}' and '{options.label_glob}'")


@_register("phantom", "demo.yaml", "segkit prepare phantom --out demo/data --n 6 --seed 7", needs_src=False)
def discover_phantom(src: Path, options: SourceOptions) -> Discovery:
    """The phantom volumes written by ``segkit.prepare.phantom.write_phantom_cases`` into ``src``
    (OUT/raw)."""
    src = _require_dir(src)
    images = _by_suffix(src, tuple(f"_image{e}" for e in _NII))
    labels = _by_suffix(src, tuple(f"_label{e}" for e in _NII))
    return _nonempty(_pair(images, labels), src, "<case>_image.nii.gz + <case>_label.nii.gz")


def unusable_case_ids(found: Discovery) -> list[str]:
    """Problem lines for case ids that cannot name slice files (``<case_id>_NNNN.png``): empty, starting with
    a dot (hidden files the loader skips; ``..``), or holding a path separator or a control character."""
    problems = []
    for c in found.cases:
        cid = c.case_id
        if (
            not cid
            or cid.startswith(".")
            or any(ch in cid for ch in "/\\")
            or any(ord(ch) < 32 for ch in cid)
        ):
            problems.append(
                f"{c.image.name}: case id {cid!r} cannot name slice files "
                "(it is empty, starts with '.', or holds a path separator or control character); "
                "rename the file"
            )
    return problems


SLAB_SUFFIX = "_slab"


def slab_cases(found: Discovery, count: int, axis: int, gap_mm: float) -> Discovery:
    """Every volume case of ``found`` as ``count`` cases ``<case_id>_slab<k>`` (k = 1 .. count), each one
    ``Slab`` of its slices (``prepare.slabs``).

    Raises:
        ConfigError: a case of 2D slice files (no volume to cut).
    """
    flat = [c for c in found.cases if c.kind != CaseKind.VOLUME]
    if flat:
        raise ConfigError(f"case {flat[0].case_id} is a set of 2D slices: prepare.slabs cuts volumes",
                          path=flat[0].image, hint="remove prepare.slabs for 2D slices")
    cases = [replace(c, case_id=f"{c.case_id}{SLAB_SUFFIX}{k}", slab=Slab(axis, k, count, gap_mm))
             for c in found.cases for k in range(1, count + 1)]
    return Discovery(cases, list(found.problems))


def discover(source: str, src: Path, options: SourceOptions | None = None) -> Discovery:
    """Look ``source`` up in ``SOURCES`` and discover the cases under ``src`` (``select_series`` applied)."""
    return SOURCES.get(source).discover(Path(src), options or SourceOptions())


# === one volume per case: --series ===


def _choices(image: Path) -> list[VolumeRef]:
    """The volumes an image path holds: the series (and cine phases) of a DICOM folder, the phases of a 4D
    NIfTI, else the image itself."""
    if image.is_dir():
        return dicom_series_refs(image)
    return volume_refs(image)


def _series_number(ref: VolumeRef) -> int | None:
    """The series number of a DICOM series ref named ``s<number>_...``, else ``None``."""
    m = re.match(r"s(\d+)(?:_|$)", ref.name) if ref.series_key is not None else None
    return int(m.group(1)) if m else None


def _matches(ref: VolumeRef, pattern: str) -> bool:
    if pattern.strip().isdigit():
        return _series_number(ref) == int(pattern)
    return fnmatch.fnmatchcase(ref.case_id, pattern)


def _example(ref: VolumeRef) -> str:
    num = _series_number(ref)
    cine = ref.phase is not None or (ref.series_key is not None and "/" in ref.series_key)
    return f"--series {num}" if num is not None and not cine else f"--series '{ref.case_id}'"


def _pick_one(path: Path, case_id: str, pattern: str | None, label: bool) -> VolumeRef | None | str:
    """The one volume of ``path`` that ``pattern`` picks (``None``: the path's only volume), or a problem
    line. An image folder of DICOM series is checked against ``pattern`` even when it holds one series; a
    label only when it holds several volumes."""
    if not (path.is_dir() or volume_format(path) is not None):
        return None
    try:
        refs = _choices(path)
    except SegkitError:
        return None  # an unreadable volume fails its own case when it is read (the others still run)
    if len(refs) == 1 and (label or (refs[0].series_key is None and refs[0].phase is None)):
        return None  # one volume: nothing to pick
    listed = ", ".join(r.case_id for r in refs[:8]) + (", ..." if len(refs) > 8 else "")
    if pattern is None:
        if len(refs) <= 1:
            return None
        what = "phases" if refs[0].phase is not None else "series"  # a 4D NIfTI, or DICOM series/phases
        return (f"{path.name}: {len(refs)} {what} in one {'label' if label else 'input'} ({listed}) of case "
                f"'{case_id}'; pick one per case with --series, e.g. {_example(refs[0])}")
    hits = [r for r in refs if _matches(r, pattern)]
    if len(hits) != 1:
        found = "no volume" if not hits else f"{len(hits)} volumes"
        return (f"{path.name}: --series '{pattern}' matches {found} of case '{case_id}' "
                f"({listed}); give a pattern matching one, e.g. {_example(refs[0])}")
    one = hits[0]
    return one if one.series_key is not None or one.phase is not None else None


def _pick(case: CaseSpec, pattern: str | None) -> CaseSpec | str:
    """``case`` with ``pick`` (and ``label_pick``) set to the one volume matching ``pattern`` of an image
    (a label) that holds several, or a problem line."""
    if case.kind != CaseKind.VOLUME:
        return case
    pick = _pick_one(case.image, case.case_id, pattern, label=False)
    if isinstance(pick, str):
        return pick
    label_pick = _pick_one(case.label, case.case_id, pattern, label=True) if case.label is not None else None
    if isinstance(label_pick, str):
        return label_pick
    return replace(case, pick=pick, label_pick=label_pick)


def select_series(found: Discovery, pattern: str | None) -> Discovery:
    """One volume per case: an image holding several (a folder of several DICOM series or a cine series, a
    4D NIfTI) takes the one ``pattern`` (``--series``) matches: a series number (``4``), or a name as listed
    (``s004_T1w``, ``la_003_phase02``) with glob wildcards. Without ``pattern`` such a case is a problem line
    that lists its volumes and names ``--series``; a pattern that matches no volume or several of a case is
    one too (every DICOM image folder is checked against ``pattern``, one of a single series included). A
    label holding several volumes (a folder of DICOM series, a 4D label) is picked from by the same
    pattern."""
    cases: list[CaseSpec] = []
    problems = list(found.problems)
    for case in found.cases:
        picked = _pick(case, pattern)
        if isinstance(picked, str):
            problems.append(picked)
        else:
            cases.append(picked)
    return Discovery(cases, problems)
