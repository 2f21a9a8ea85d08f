"""The work on one case, run in worker processes: prepare it (``process_case``) or check it (``verify_case``).

``process_case`` checksums the source files, skips a case whose record still matches, else slices it, writes
its PNG pairs and then its record ``records/cases/<id>.json``; a failing case leaves no slice behind and comes
back as one line ``<file>: <reason>``. Both functions are top-level so that a process pool can pickle them.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from segkit.config import Config
from segkit.errors import DataError, OutputError, SegkitError, write_fault
from segkit.io.atomic import write_json
from segkit.io.hashing import sha256_file, sha256_files
from segkit.io.palette import palette_array
from segkit.prepare.outdir import case_record_path, read_json, slice_files
from segkit.prepare.record import CaseRecord
from segkit.prepare.slices2d import slice_2d_case
from segkit.prepare.sources import CaseSpec
from segkit.seeds import Stream, case_key, generator

if TYPE_CHECKING:
    from segkit.io.volumes import Volume
    from segkit.prepare.slicing import SlicedCase

# === Prepare ===


@dataclass
class CaseTask:
    spec: CaseSpec
    cfg: Config
    out: Path
    split: str
    key: str


@dataclass
class CaseResult:
    case_id: str
    status: str  # "done" | "skipped" | "failed"
    entry: dict[str, Any] | None = None  # the records/cases/<id>.json content
    failure: str | None = None
    peak_rss_mib: float = 0.0  # ru_maxrss of the process that ran the case
    cpu_s: float = 0.0  # CPU seconds (user + system) spent on the case


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """Per-case Generator (``Stream.CASES``): depends on the seed and the case id only (not on order, shard or
    worker)."""
    return generator(seed, Stream.CASES, case_key(case_id))


def _checksums(spec: CaseSpec) -> dict[str, str | None]:
    if spec.kind == "slices2d":
        return {
            "image": sha256_files([img for _, img, _ in spec.slices]),
            "label": sha256_files([m for _, _, m in spec.slices if m is not None]),
        }
    return {"image": sha256_file(spec.image), "label": sha256_file(spec.label) if spec.label else None}


def _is_complete(entry: dict[str, Any] | None, task: CaseTask, sha: dict[str, str | None]) -> bool:
    if not entry or entry.get("key") != task.key:
        return False
    rec = entry.get("record", {})
    if rec.get("split") != task.split or rec.get("sha256") != sha:
        return False
    return all((task.out / f).is_file() for f in entry.get("files", []))


def _relabel_error(e: Exception, spec: CaseSpec) -> str:
    if isinstance(e, SegkitError):
        return e.one_line() if e.path is not None else f"{spec.image.name}: {e.one_line()}"
    return f"{spec.image.name}: {type(e).__name__}: {' '.join(str(e).split())}"


def process_case(task: CaseTask) -> CaseResult:
    """Prepare one case (in a worker): checksum, skip if complete, else slice and write atomically.

    A failing case leaves none of its slices behind; its failure is one line ``<file>: <reason>``.
    """
    t0 = time.process_time()
    res = _process_case(task)
    res.cpu_s = time.process_time() - t0
    res.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return res


def _process_case(task: CaseTask) -> CaseResult:
    spec, out = task.spec, task.out
    try:
        sha = _checksums(spec)
        rec_path = case_record_path(out, spec.case_id)
        if _is_complete(read_json(rec_path), task, sha):
            return CaseResult(spec.case_id, "skipped", read_json(rec_path))
        rec_path.unlink(missing_ok=True)
        for p in slice_files(out, spec.case_id):
            p.unlink()
        entry = _prepare_case(task, sha)
        write_json(rec_path, entry)
        return CaseResult(spec.case_id, "done", entry)
    except Exception as e:  # noqa: BLE001 - per-case boundary: every failure becomes one report line
        for p in slice_files(out, spec.case_id):
            p.unlink(missing_ok=True)
        fault = e if isinstance(e, OutputError) else write_fault(e)
        if fault is not None:  # a full or read-only disk fails every case alike: stop at the first one
            raise fault from e
        return CaseResult(spec.case_id, "failed", failure=_relabel_error(e, spec))


def _prepare_case(task: CaseTask, sha: dict[str, str | None]) -> dict[str, Any]:
    from segkit.io.volumes import load_volume
    from segkit.prepare.slicing import slice_case, write_slices

    spec, cfg = task.spec, task.cfg
    rng = case_rng(cfg.seed, spec.case_id)
    if spec.kind == "slices2d":
        if cfg.prepare.extra_axes:
            raise DataError("prepare.extra_axes slices volumes along other axes; this case is a folder of "
                            "2D slices", path=spec.image,
                            hint="set prepare.extra_axes: [] (one plane) for 2D slice data")
        sliced = slice_2d_case(spec, cfg, rng)
        views = []
    else:
        image = load_volume(spec.image_ref)
        label = load_volume(spec.label_ref) if spec.label_ref is not None else None
        sliced = slice_case(image, label, cfg, spec.case_id, rng)
        views = _extra_views(image, label, cfg, spec.case_id, rng) if task.split != "test" else []
        del image, label
    n_classes = len(cfg.effective_classes) + 1
    pixels = np.zeros(n_classes, dtype=np.int64)
    written = [sliced, *(view for _, view in views)]  # prepare.extra_axes: what the split folders hold too
    for _, _, lbl in (item for s in written for item in s.slices):
        if lbl is not None:
            pixels += class_pixels(lbl, n_classes)
    empty = spec.label is not None and not pixels[1:].any() and not _label_has_foreground(spec, cfg)
    if empty and cfg.prepare.empty_labels == "error":
        if spec.slab is not None:
            raise DataError(f"{spec.slab.describe()} of the label volume (case {spec.case_id}) holds no "
                            "foreground voxel", path=spec.label,
                            hint="lower prepare.slabs, or set prepare.empty_labels=allow or warn")
        raise DataError(
            "label volume is empty (no foreground voxel)",
            path=spec.label,
            hint="fix the label, or set prepare.empty_labels=allow (real negatives) or warn",
        )
    palette = palette_array([c.color for c in cfg.effective_classes])
    paths = write_slices(sliced, task.out / task.split, palette, cfg.prepare.png_compression)
    for axis, view in views:
        paths += write_slices(view, task.out / task.split, palette, cfg.prepare.png_compression, view=axis)
    # source paths are absolute; for 2D cases they are the image / mask folders (file names: source_slices)
    image_src = spec.image if spec.kind == "volume" else spec.image.parent
    label_src = spec.label if spec.kind == "volume" or spec.label is None else spec.label.parent
    record = CaseRecord(
        split=task.split,
        image=str(image_src.resolve()),
        label=str(label_src.resolve()) if label_src is not None else None,
        sha256=sha,
        geometry=sliced.geometry,
        series=_picked(spec),
        slab=spec.slab,
    )
    return {
        "key": task.key,
        "record": record.to_json(),
        "n_slices_written": sum(len(s.slices) for s in written),
        "pixels": [int(v) for v in pixels],
        "files": sorted(p.relative_to(task.out).as_posix() for p in paths),
        "empty_label": bool(empty),
    }


def _extra_views(
    image: Volume, label: Volume | None, cfg: Config, case_id: str, rng: np.random.Generator
) -> list[tuple[int, SlicedCase]]:
    """The case sliced along each of ``prepare.extra_axes`` (training and validation cases: inference
    averages the views; the record keeps ``prepare.axis``'s geometry). The same intensity recipe (taken from
    the whole volume), size and empty-slice rule; drawn from ``rng`` after the main view, so that view is the
    one a single-axis dataset gets."""
    from segkit.prepare.slicing import slice_case

    out = []
    for axis in cfg.prepare.extra_axes:
        view_cfg = cfg.model_copy(update={"prepare": cfg.prepare.view(axis)})
        out.append((int(axis), slice_case(image, label, view_cfg, case_id, rng)))
    return out


def _picked(spec: CaseSpec) -> dict[str, Any] | None:
    """The record's ``series``: what ``--series`` picked from the image and the label, or ``None``."""
    from segkit.io.volumes import picked_volume

    if spec.pick is None and spec.label_pick is None:
        return None
    image = picked_volume(spec.pick) if spec.pick is not None else None
    return {"image": image, "label": picked_volume(spec.label_pick) if spec.label_pick is not None else None}


def _label_has_foreground(spec: CaseSpec, cfg: Config) -> bool:
    """Whether the case's source labels hold any foreground (a tiny structure may vanish in resized masks)."""
    from segkit.io.volumes import load_volume
    from segkit.prepare.slicing import map_labels

    if spec.kind == "slices2d":
        return False  # its masks were read at full size: the written pixels already tell
    label = load_volume(spec.label_ref)  # type: ignore[arg-type]
    return bool(map_labels(label.data, cfg, label.path).any())


def class_pixels(labels: npt.NDArray[np.uint8], n_classes: int) -> npt.NDArray[np.int64]:
    """Pixels per class id 0..n_classes-1 of a (H, W) uint8 label slice (ids >= n_classes are not counted).

    ``np.bincount`` first copies the slice to intp (~1 ms for 512^2); counting each foreground class with
    ``count_nonzero(labels == c)`` (few classes) or a bincount of the foreground pixels only is 5-10x faster.
    """
    out = np.zeros(n_classes, dtype=np.int64)
    nonzero = int(np.count_nonzero(labels))
    if nonzero and n_classes > 1:
        if n_classes <= 17:
            out[1:] = [np.count_nonzero(labels == c) for c in range(1, n_classes)]
        else:
            out[1:] = np.bincount(labels[labels != 0], minlength=n_classes)[1:n_classes]
    out[0] = labels.size - nonzero
    return out


# === Verify (checks one raw case, writes nothing) ===


def verify_case(spec: CaseSpec, cfg: Config) -> list[str]:
    """Problems of one raw case, one line each (file name + reason); empty when the case is fine."""
    from segkit.io.volumes import load_volume
    from segkit.prepare.slicing import check_finite, check_pair, map_labels

    problems: list[str] = []

    def note(e: Exception) -> None:
        problems.append(_relabel_error(e, spec))

    if spec.kind == "slices2d":
        try:
            sliced = slice_2d_case(
                spec,
                cfg.model_copy(update={"prepare": cfg.prepare.model_copy(update={"empty_slices": "keep"})}),
                np.random.default_rng(0),
            )
            if spec.label is not None and not any(
                lbl is not None and lbl.any() for _, _, lbl in sliced.slices
            ):
                problems.append(f"{spec.label.name}: every mask of case '{spec.case_id}' is empty")
        except Exception as e:  # noqa: BLE001 - report, do not stop
            note(e)
        return problems
    try:
        image = load_volume(spec.image_ref)
    except Exception as e:  # noqa: BLE001
        note(e)
        image = None
    label = None
    if spec.label is not None:
        try:
            label = load_volume(spec.label_ref)  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001
            note(e)
    if image is not None:
        try:
            check_finite(image)
        except Exception as e:  # noqa: BLE001
            note(e)
    if label is not None:
        if image is not None:
            try:
                check_pair(image, label)
            except Exception as e:  # noqa: BLE001
                note(e)
        try:
            classes = map_labels(label.data, cfg, label.path)
            if not classes.any():
                what = (f"{spec.slab.describe()} of the label volume (case {spec.case_id})" if spec.slab
                        else "label volume")
                problems.append(f"{label.name}: {what} is empty (no foreground voxel)")
        except Exception as e:  # noqa: BLE001
            note(e)
    return problems
