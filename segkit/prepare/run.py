"""``run_prepare``: a raw dataset -> ``DIR/{train,valid,test}/{images,masks}`` + ``splits.json`` + ``dataset.json``.

Order of work (each step only starts when the previous one succeeded):

1. the output folder is checked: a non-empty ``out`` is refused unless ``overwrite``, except a folder made by
   ``segkit prepare`` with the same config fingerprint (``records/run.json``): then the run *resumes*;
2. the cases are discovered (``segkit.prepare.sources``); missing pairs are reported by file name and nothing
   is written;
3. the split is computed over ALL cases (so every shard agrees) and ``splits.json`` is written;
4. the cases of this shard run in a ``ProcessPoolExecutor``; at most ``2 * workers`` cases are submitted at a
   time, so memory is bounded by the volumes in flight. A case whose record ``records/cases/<id>.json``
   matches the source checksums and the fingerprint is skipped (re-running is idempotent). A case that fails
   leaves no slice behind and is reported in one line (file name + reason); the others still finish;
5. ``records/shard-<i>-of-<n>.json`` (or ``records/shard-0-of-1.json``) lists the cases this run did;
6. when every case of the dataset has a valid record (all shards done, no failure), ``summary.png`` and then
   ``dataset.json`` are written: ``dataset.json`` is the commit marker and comes last.

With ``--shard i/n`` run the n commands (in any order, in parallel or one after another) on the same ``out``;
the last one to finish writes ``dataset.json``. Rerunning any shard is safe.

``verify_only`` checks the raw dataset (missing pairs, unreadable files, shape/affine mismatch, NaNs,
unexpected label values, empty labels) and writes nothing.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing
import os
import re
import resource
import shutil
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from segkit import __version__
from segkit.config import Config, validate_config
from segkit.errors import DataError, OutputError, SegkitError, write_fault
from segkit.io.atomic import pid_alive, remove_stale_temps, write_json, write_with
from segkit.io.palette import palette_array
from segkit.prepare.manifest import (
    MANIFEST_FILE,
    build_manifest,
    config_fingerprint,
    sha256_file,
    sha256_files,
    write_manifest,
)
from segkit.prepare.sources import SOURCES, CaseSpec, DiscoverOptions, Discovery, unusable_case_ids
from segkit.prepare.split import SPLITS, SPLITS_FILE, load_user_split, split_cases, split_of, write_splits

log = logging.getLogger(__name__)

RECORDS = "records"
SUMMARY_PNG = "summary.png"
CASE_STREAM = 2  # child-seed index for per-case draws (empty-slice fraction)

ProgressFn = Callable[[int, int], None]  # (done, total)


@dataclass
class PrepareReport:
    """What ``run_prepare`` did.

    Attributes:
        out: the dataset folder.
        source: source adapter name.
        n_cases: cases discovered in the raw dataset (all shards).
        done: case ids processed by this run.
        skipped: case ids already complete (checksums matched).
        failures: one line per problem: ``<file>: <reason>``. Non-empty means exit code 2.
        warnings: one line per case worth a look that was still prepared (an all-zero label volume with
            ``prepare.empty_labels: warn``), over all complete cases.
        summary: ``{split: {"cases": n, "slices": n, "pixels": {class_name: n}}}`` over all complete cases
            (pixels counted in the written, resized masks; ``background`` included).
        manifest: ``dataset.json`` when the dataset is complete, else None.
        pending: cases (of other shards) still missing, so ``dataset.json`` is not written yet.
        verify_only: this was a ``--verify`` run (nothing written).
        summary_png: the bar chart, when written.
        peak_rss_mib: largest peak resident memory (MiB) of the processes that ran cases.
        cpu_s: CPU seconds spent on the cases of this run (all workers together).
    """

    out: Path | None
    source: str
    n_cases: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest: Path | None = None
    pending: int = 0
    verify_only: bool = False
    summary_png: Path | None = None
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


# === Options ===


def apply_options(cfg: Config, *, folds: int | None = None, fold: int | None = None, binary: bool = False) -> Config:
    """The config with the CLI's ``--folds``/``--fold``/``--binary`` applied (re-validated)."""
    raw = cfg.model_dump(mode="json")
    if folds is not None:
        raw["prepare"]["split"]["folds"] = folds
    if fold is not None:
        raw["prepare"]["split"]["fold"] = fold
    if binary:
        raw["prepare"]["binary"] = True
    return validate_config(raw, source="command-line options")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n.

    Raises:
        SegkitError: malformed or out of range.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise SegkitError(f"--shard '{text}' must be i/n with 0 <= i < n", hint="e.g. --shard 0/4 ... --shard 3/4")
    return int(m.group(1)), int(m.group(2))


# === Output folder ===


def _marker(out: Path) -> Path:
    return out / RECORDS / "run.json"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_out(out: Path, key: str, overwrite: bool) -> bool:
    """Decide whether ``out`` may be written.

    Returns:
        True when ``out`` holds an earlier run with the same fingerprint (resume), else False.

    Raises:
        DataError: ``out`` is a file, or is not empty (and not a resumable run) and ``overwrite`` is off.
    """
    if out.exists() and not out.is_dir():
        raise DataError("--out is a file, not a folder", path=out, hint="give a new or existing folder")
    if not out.exists() or not any(out.iterdir()) or overwrite:
        return False
    marker = _read_json(_marker(out))
    if marker is not None and marker.get("key") == key:
        return True
    why = "was prepared with a different config or source" if marker is not None else "is not empty"
    raise DataError(
        f"output folder {why}; refusing to overwrite it",
        path=out,
        hint="pass --overwrite to replace it, or choose another --out",
    )


def clear_out(out: Path, phantom: bool = False) -> list[Path]:
    """Remove what ``segkit prepare`` wrote in ``out`` and nothing else; return the files it left in place.

    segkit's files are known by name: the case records, splits.json, dataset.json, summary.png, every slice file
    ``<case>_<NNNN>.png`` of a case named in splits.json or in a case record, the phantom's ``raw/case_NNN_*``
    volumes (``phantom``), and temporaries of killed runs. A folder is removed only when that leaves it empty,
    so a user's own file inside ``train/images`` or ``records/`` survives ``--overwrite``.
    """
    out = Path(out)
    remove_stale_temps(out)
    case_ids: set[str] = set()
    splits = _read_json(out / SPLITS_FILE) or {}
    for name in SPLITS:
        ids = splits.get(name)
        if isinstance(ids, list):
            case_ids.update(c for c in ids if isinstance(c, str))
    records = out / RECORDS
    ours: list[Path] = []
    if records.is_dir():
        for rec in (records / "cases").glob("*.json"):
            case_ids.add(rec.stem)
            entry = _read_json(rec) or {}
            files = entry.get("files", [])
            ours += [out / f for f in files if isinstance(f, str) and not Path(f).is_absolute() and ".." not in Path(f).parts]
            ours.append(rec)
        ours += [_marker(out), *records.glob("shard-*-of-*.json")]
    for cid in case_ids:
        ours += _slice_files(out, cid)
    ours += [out / SPLITS_FILE, out / MANIFEST_FILE, out / SUMMARY_PNG]
    if phantom:
        ours += [p for p in (out / "raw").glob("case_*_*.nii.gz") if re.fullmatch(r"case_\d{3,}_(image|label)\.nii\.gz", p.name)]
    for p in ours:
        if p.is_file() or p.is_symlink():
            p.unlink()
    kept: list[Path] = []
    for top in (*SPLITS, RECORDS, *(("raw",) if phantom else ())):
        kept += _prune_empty(out / top)
    if kept:
        log.warning("--overwrite kept %d file(s) that segkit did not write, e.g. %s", len(kept), kept[0])
    return kept


def _prune_empty(folder: Path) -> list[Path]:
    """Remove empty folders under (and including) ``folder``, deepest first; return the files that remain."""
    if not folder.is_dir() or folder.is_symlink():
        return [folder] if folder.exists() or folder.is_symlink() else []
    for d in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
        return []
    return sorted(p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())


# === Per case work (runs in worker processes) ===


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
    """Per-case Generator: depends on the seed and the case id only (not on order, shard or worker)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(case_id.encode())], spawn_key=(CASE_STREAM,)))


def _case_record_path(out: Path, case_id: str) -> Path:
    return out / RECORDS / "cases" / f"{case_id}.json"


def _slice_files(out: Path, case_id: str) -> list[Path]:
    """Every slice file of ``case_id`` in any split (exact stem ``<case_id>_<4+ digits>.png``)."""
    rx = re.compile(re.escape(case_id) + r"_\d{4,}\.png\Z")
    found = []
    for split in SPLITS:
        for sub in ("images", "masks"):
            d = out / split / sub
            if d.is_dir():
                found += [p for p in d.glob(f"{glob_escape(case_id)}_*.png") if rx.match(p.name)]
    return found


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


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
        rec_path = _case_record_path(out, spec.case_id)
        if _is_complete(_read_json(rec_path), task, sha):
            return CaseResult(spec.case_id, "skipped", _read_json(rec_path))
        rec_path.unlink(missing_ok=True)
        for p in _slice_files(out, spec.case_id):
            p.unlink()
        entry = _prepare_case(task, sha)
        write_json(rec_path, entry)
        return CaseResult(spec.case_id, "done", entry)
    except Exception as e:  # noqa: BLE001 - per-case boundary: every failure becomes one report line
        for p in _slice_files(out, spec.case_id):
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
        sliced = slice_2d_case(spec, cfg, rng)
    else:
        image = load_volume(spec.image)
        label = load_volume(spec.label) if spec.label is not None else None
        sliced = slice_case(image, label, cfg, spec.case_id, rng)
        del image, label
    n_classes = len(cfg.effective_classes) + 1
    pixels = np.zeros(n_classes, dtype=np.int64)
    for _, _, lbl in sliced.slices:
        if lbl is not None:
            pixels += class_pixels(lbl, n_classes)
    empty = spec.label is not None and not pixels[1:].any() and not _label_has_foreground(spec, cfg)
    if empty and cfg.prepare.empty_labels == "error":
        raise DataError(
            "label volume is empty (no foreground voxel)",
            path=spec.label,
            hint="fix the label, or set prepare.empty_labels=allow (real negatives) or warn",
        )
    palette = palette_array([c.color for c in cfg.effective_classes])
    paths = write_slices(sliced, task.out / task.split, palette, cfg.prepare.png_compression)
    # source paths are absolute; for 2D cases they are the image / mask folders (file names: source_slices)
    image_src = spec.image if spec.kind == "volume" else spec.image.parent
    label_src = spec.label if spec.kind == "volume" or spec.label is None else spec.label.parent
    record = {
        "split": task.split,
        "image": str(image_src.resolve()),
        "label": str(label_src.resolve()) if label_src is not None else None,
        "sha256": sha,
        **sliced.record,
    }
    return {
        "key": task.key,
        "record": record,
        "n_slices_written": len(sliced.slices),
        "pixels": [int(v) for v in pixels],
        "files": sorted(p.relative_to(task.out).as_posix() for p in paths),
        "empty_label": bool(empty),
    }


def _label_has_foreground(spec: CaseSpec, cfg: Config) -> bool:
    """Whether the case's source labels hold any foreground (a tiny structure may vanish in resized masks)."""
    from segkit.io.volumes import load_volume
    from segkit.prepare.slicing import map_labels

    if spec.kind == "slices2d":
        return False  # its masks were read at full size: the written pixels already tell
    label = load_volume(spec.label)  # type: ignore[arg-type]
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


# === 2D sources (chest-ct) ===

_CHEST_CHANNELS = {"lung": 0, "heart": 1, "trachea": 2}  # R, G, B of the Kaggle masks
_CHEST_PRECEDENCE = ("lung", "heart", "trachea")  # later wins on overlap


def chest_mask_to_labels(rgb: npt.NDArray[np.uint8], cfg: Config, path: Path | None = None) -> npt.NDArray[np.uint8]:
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
            f"chest-ct masks need classes named lung, heart and trachea; the config lacks {', '.join(missing)}",
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
    from segkit.prepare.slicing import SlicedCase, choose_slices, resize_image, resize_label

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
                    f"image and mask shapes differ: {img_path.name} {img.shape} vs {mask_path.name} {rgb.shape[:2]}",
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
    record = {
        "kind": "slices2d",
        "shape": [h0, w0, len(items)],
        "spacing": [1.0, 1.0, 1.0],
        "affine": np.eye(4).tolist(),
        "orientation": "RAS",
        "ornt_transform": [[0, 1], [1, 1], [2, 1]],
        "canonical_shape": [h0, w0, len(items)],
        "axis": 2,
        "slice_shape": [h0, w0],
        "size": list(prep.size),
        "resize": [prep.size[0] / h0, prep.size[1] / w0],
        "intensity": {"kind": "none"},
        "slices": [items[i][0] for i in keep],
        "n_slices": len(items),
        "source_slices": [[k, img.name, m.name if m is not None else None] for k, img, m in spec.slices],
    }
    return SlicedCase(spec.case_id, record, slices)


# === Verify (runs in worker processes) ===


def verify_case(spec: CaseSpec, cfg: Config) -> list[str]:
    """Problems of one raw case, one line each (file name + reason); empty when the case is fine."""
    from segkit.io.volumes import load_volume
    from segkit.prepare.slicing import check_finite, check_pair, map_labels

    problems: list[str] = []

    def note(e: Exception) -> None:
        problems.append(_relabel_error(e, spec))

    if spec.kind == "slices2d":
        try:
            sliced = slice_2d_case(spec, cfg.model_copy(update={"prepare": cfg.prepare.model_copy(update={"empty_slices": "keep"})}), np.random.default_rng(0))
            if spec.label is not None and not any(lbl is not None and lbl.any() for _, _, lbl in sliced.slices):
                problems.append(f"{spec.label.name}: every mask of case '{spec.case_id}' is empty")
        except Exception as e:  # noqa: BLE001 - report, do not stop
            note(e)
        return problems
    try:
        image = load_volume(spec.image)
    except Exception as e:  # noqa: BLE001
        note(e)
        image = None
    label = None
    if spec.label is not None:
        try:
            label = load_volume(spec.label)
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
                problems.append(f"{label.name}: label volume is empty (no foreground voxel)")
        except Exception as e:  # noqa: BLE001
            note(e)
    return problems


# === Parallel map with bounded memory ===


def _pool_map(fn: Callable[..., Any], args: list[tuple[Any, ...]], workers: int) -> Iterator[Any]:
    """Yield ``fn(*a)`` for each ``a`` (in completion order); at most ``2 * workers`` submitted at a time."""
    if workers <= 1 or len(args) <= 1:
        for a in args:
            yield fn(*a)
        return
    ctx = multiprocessing.get_context("forkserver")
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(args)), mp_context=ctx) as pool:
        pending: set[cf.Future[Any]] = set()
        it = iter(args)
        for a in it:
            pending.add(pool.submit(fn, *a))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for a in it:
                pending.add(pool.submit(fn, *a))
                if len(pending) >= 2 * workers:
                    break
            for f in finished:
                yield f.result()


# === Summary ===


def summarize(entries: dict[str, dict[str, Any]], cfg: Config) -> dict[str, dict[str, Any]]:
    """``{split: {"cases", "slices", "pixels": {class_name: n}}}`` from case entries (records/cases/*.json)."""
    names = ["background", *(c.name for c in cfg.effective_classes)]
    summary: dict[str, dict[str, Any]] = {
        s: {"cases": 0, "slices": 0, "pixels": dict.fromkeys(names, 0)} for s in SPLITS
    }
    for entry in entries.values():
        s = summary[entry["record"]["split"]]
        s["cases"] += 1
        s["slices"] += int(entry["n_slices_written"])
        for name, n in zip(names, entry["pixels"], strict=False):
            s["pixels"][name] += int(n)
    return summary


def plot_summary(summary: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Bar charts (slices per split; foreground pixels per class and split) saved atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    splits = list(summary)
    classes = [c for c in next(iter(summary.values()))["pixels"] if c != "background"]
    fig = Figure(figsize=(11, 4))  # no pyplot: no global figure state, Agg canvas only
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.5]})
    counts = [summary[s]["slices"] for s in splits]
    bars = ax1.bar(splits, counts, color=["#4c72b0", "#dd8452", "#55a868"])
    ax1.bar_label(bars, labels=[f"{summary[s]['slices']}\n({summary[s]['cases']} cases)" for s in splits], fontsize=8)
    ax1.set_ylabel("slices")
    ax1.set_title("slices per split")
    width = 0.8 / max(len(splits), 1)
    x = np.arange(len(classes))
    for i, s in enumerate(splits):
        ax2.bar(x + i * width, [summary[s]["pixels"][c] for c in classes], width, label=s)
    ax2.set_xticks(x + width * (len(splits) - 1) / 2, classes, rotation=30, ha="right")
    ax2.set_ylabel("pixels (resized masks)")
    ax2.set_title("foreground pixels per class")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    write_with(path, lambda p: fig.savefig(p, dpi=100))
    return path


# === Main entry ===


def run_prepare(
    source: str,
    src: Path | None,
    out: Path | None,
    cfg: Config,
    *,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    folds: int | None = None,
    fold: int | None = None,
    binary: bool = False,
    verify_only: bool = False,
    image_glob: str | None = None,
    label_glob: str | None = None,
    phantom_n: int = 6,
    phantom_seed: int | None = None,
    progress: ProgressFn | None = None,
    splits_file: Path | None = None,
) -> PrepareReport:
    """Prepare (or with ``verify_only`` check) a raw dataset; see the module docstring for the steps.

    Args:
        source: source adapter name (``segkit.prepare.sources.SOURCES``).
        src: raw dataset folder (None for ``phantom``, which writes ``out/raw``).
        out: dataset folder (may be None with ``verify_only``).
        cfg: the config (classes, modality, prepare, seed).
        workers: worker processes (default ``os.cpu_count()``); 1 runs in this process.
        shard: ``(i, n)``: process cases ``i, i+n, i+2n, ...`` of the sorted case list.
        overwrite: replace an existing, non-resumable ``out`` (only segkit's own entries are removed).
        folds, fold: K-fold split (override ``prepare.split``).
        binary: merge all foreground classes into one.
        verify_only: check the raw data, write nothing.
        image_glob, label_glob: patterns of the ``nifti`` source.
        phantom_n, phantom_seed: number of phantom cases and their seed (default ``cfg.seed``).
        progress: called as ``progress(done, total)`` after each case.
        splits_file: a user split (``segkit.prepare.split.load_user_split``: segkit's splits.json, nnU-Net's
            splits_final.json with ``fold``, or test + folds) instead of ``prepare.split``'s random one.

    Returns:
        A ``PrepareReport``; ``report.failures`` non-empty means the CLI exits with code 2.

    Raises:
        SegkitError: problems that stop the whole run (unknown source, missing SRC, refused ``out``, a split
            that would be empty, a bad option).
    """
    adapter = SOURCES.get(source)
    if splits_file is not None and folds is not None:
        raise SegkitError("--splits and --folds exclude each other", hint="the split file holds the folds; use --fold")
    cfg = apply_options(cfg, folds=folds, fold=None if splits_file is not None else fold, binary=binary)
    workers = max(1, workers or os.cpu_count() or 1)
    key = config_fingerprint(cfg, adapter.name)
    if splits_file is not None:  # another split file (or fold) is another dataset
        if not Path(splits_file).is_file():
            raise DataError("split file not found", path=splits_file, hint="give a JSON split file")
        if out is not None and overwrite and Path(splits_file).resolve().is_relative_to(Path(out).resolve()):
            raise DataError("the split file lies inside --out, which --overwrite clears", path=splits_file,
                            hint="copy it outside the output folder first")
        digest = hashlib.sha256(Path(splits_file).read_bytes() + f"fold={fold}".encode()).hexdigest()
        key = hashlib.sha256(f"{key}:{digest}".encode()).hexdigest()
    options = DiscoverOptions(image_glob, label_glob)
    report = PrepareReport(out=out, source=adapter.name, verify_only=verify_only)
    if out is None and (not verify_only or not adapter.needs_src):
        raise SegkitError("--out is required", hint="e.g. --out data/mydataset")

    # 1. output folder and 2. discovery
    raw_tmp: Path | None = None
    resume = False
    if src is not None and out is not None and Path(src).resolve() == Path(out).resolve():
        raise DataError("--out must not be the source folder", path=out, hint="write the dataset to a new folder")
    if not adapter.needs_src and out is not None:
        if not verify_only:
            resume = check_out(out, key, overwrite)
        raw_tmp = _make_phantom(out, phantom_n, cfg.seed if phantom_seed is None else phantom_seed)
        src = raw_tmp
    else:
        if src is None:
            raise SegkitError(f"source '{adapter.name}' needs a SRC folder", hint=f"e.g. {adapter.example}")
        if out is not None and not verify_only:
            resume = check_out(out, key, overwrite)
    if resume and out is not None:
        remove_stale_temps(out)  # temporaries of a killed earlier run
    handed_over = False
    try:
        found = adapter.discover(Path(src), options)
        found.problems += unusable_case_ids(found)
        report.n_cases = len(found.cases)
        if verify_only:
            report.failures = list(found.problems) + _verify(found, cfg, workers, progress)
            return report
        if found.problems:
            report.failures = list(found.problems)
            return report
        cfg = resolve_spacing(cfg, found.cases)
        # 3. split over all cases (raises before anything is written when a split would be empty)
        ids = [c.case_id for c in found.cases]
        if splits_file is not None:
            splits = load_user_split(Path(splits_file), ids, fold)
        else:
            splits = split_cases(ids, cfg.prepare.split, cfg.seed)
        if out is None:
            raise SegkitError("--out is required", hint="e.g. --out data/mydataset")
        handed_over = True  # the phantom files move to out/raw below
    finally:
        if raw_tmp is not None and not handed_over:  # verify, missing pairs, an error: drop the phantom
            shutil.rmtree(raw_tmp, ignore_errors=True)
    if overwrite and not resume:
        clear_out(out, phantom=raw_tmp is not None)
    out.mkdir(parents=True, exist_ok=True)
    if raw_tmp is not None:
        found = _install_phantom(raw_tmp, out / "raw", found)
    write_json(_marker(out), {"key": key, "source": adapter.name, "fingerprint": cfg.prepare_fingerprint(),
                              "seed": cfg.seed, "segkit_version": __version__})
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # the commit marker goes until this run is complete
    write_splits(out, splits)

    # 4. the cases of this shard
    i, n = shard or (0, 1)
    mine = found.cases[i::n]
    where = split_of(splits)
    tasks = [(CaseTask(c, cfg, out, where[c.case_id], key),) for c in mine]
    if progress is not None:
        progress(0, len(tasks))
    for k, res in enumerate(_pool_map(process_case, tasks, workers), start=1):
        report.peak_rss_mib = max(report.peak_rss_mib, res.peak_rss_mib)
        report.cpu_s += res.cpu_s
        if res.status == "failed":
            report.failures.append(res.failure)
        elif res.status == "skipped":
            report.skipped.append(res.case_id)
        else:
            report.done.append(res.case_id)
        if progress is not None:
            progress(k, len(tasks))
    report.failures.sort()
    # 5. shard record
    write_json(
        out / RECORDS / f"shard-{i}-of-{n}.json",
        {"key": key, "shard": [i, n], "cases": [c.case_id for c in mine], "done": sorted(report.done),
         "skipped": sorted(report.skipped), "failures": report.failures},
    )
    # 6. completion
    entries = _load_entries(out, key, found.cases, where)
    if cfg.prepare.empty_labels == "warn":
        labels = {c.case_id: c.label for c in found.cases if c.label is not None}
        report.warnings = [
            f"{labels[cid].name if cid in labels else cid}: label volume is empty (no foreground voxel); "
            "kept (set prepare.empty_labels=allow for real negatives, or error to refuse such cases)"
            for cid, e in sorted(entries.items()) if e.get("empty_label")
        ]
    report.summary = summarize(entries, cfg)
    report.pending = len(found.cases) - len(entries)
    if report.pending == 0 and not report.failures:
        report.summary_png = plot_summary(report.summary, out / SUMMARY_PNG, f"{cfg.name} ({adapter.name})")
        manifest = build_manifest(cfg, adapter.name, {cid: e["record"] for cid, e in entries.items()})
        report.manifest = write_manifest(out, manifest)
    return report


def median_spacing(cases: list[CaseSpec], axis: int) -> tuple[float, float] | None:
    """Median in-plane spacing (mm; rows, columns of a display slice) of the volume cases, from their headers.

    Returns ``None`` when there is no volume case (2D sources keep ``prepare.size``).
    """
    from segkit.io.volumes import read_header
    from segkit.prepare.slicing import display_spacing

    rows, cols = [], []
    for case in cases:
        if case.kind != "volume":
            continue
        _, affine = read_header(case.image)
        r, c = display_spacing(affine, axis)
        rows.append(r)
        cols.append(c)
    if not rows:
        return None
    return (round(float(np.median(rows)), 4), round(float(np.median(cols)), 4))


def resolve_spacing(cfg: Config, cases: list[CaseSpec]) -> Config:
    """``cfg`` with ``prepare.spacing: median`` replaced by the dataset's median in-plane spacing (unchanged
    otherwise), so every case, the fingerprint of its record and ``dataset.json`` carry the number in mm."""
    if cfg.prepare.spacing != "median":
        return cfg
    med = median_spacing(cases, int(cfg.prepare.axis))
    if med is None:
        raise DataError(
            "prepare.spacing 'median' needs volume cases (this source has 2D slices only)",
            hint="remove prepare.spacing; 2D slices are resized to prepare.size",
        )
    log.info("prepare.spacing median: %.4g x %.4g mm", *med)
    prep = cfg.prepare.model_copy(update={"spacing": med})
    return cfg.model_copy(update={"prepare": prep})


def _verify(found: Discovery, cfg: Config, workers: int, progress: ProgressFn | None) -> list[str]:
    problems: list[str] = []
    args = [(c, cfg) for c in found.cases]
    if progress is not None:
        progress(0, len(args))
    for k, lines in enumerate(_pool_map(verify_case, args, workers), start=1):
        problems += lines
        if progress is not None:
            progress(k, len(args))
    return sorted(problems)


def _load_entries(out: Path, key: str, cases: list[CaseSpec], where: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Valid case entries (this fingerprint, this split, files present) of every case of the dataset."""
    entries = {}
    for c in cases:
        e = _read_json(_case_record_path(out, c.case_id))
        if e and e.get("key") == key and e["record"].get("split") == where[c.case_id]:
            entries[c.case_id] = e
    return entries


def _make_phantom(out: Path, n: int, seed: int) -> Path:
    """Generate the phantom cases into a temporary folder beside ``out`` (moved to ``out/raw`` later)."""
    from segkit.prepare.phantom import write_phantom_cases

    if n < 1:
        raise SegkitError(f"--n must be at least 1, got {n}", hint="e.g. --n 8")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{glob_escape(out.name)}.raw-tmp-*"):  # left by killed runs
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.raw-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_phantom_cases(tmp, n, seed)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        fault = e if isinstance(e, OutputError) else write_fault(e)
        if fault is not None:  # name the folder the user gave, not the temporary one
            raise OutputError(fault.message, path=out, hint=fault.hint) from e
        raise
    return tmp


def _install_phantom(tmp: Path, raw: Path, found: Discovery) -> Discovery:
    """Move freshly generated phantom files into ``out/raw`` (atomic per file) and repoint the cases."""
    raw.mkdir(parents=True, exist_ok=True)
    for p in tmp.iterdir():
        os.replace(p, raw / p.name)
    shutil.rmtree(tmp, ignore_errors=True)
    cases = [
        CaseSpec(c.case_id, raw / c.image.name, raw / c.label.name if c.label else None, c.kind) for c in found.cases
    ]
    return Discovery(cases, found.problems)
