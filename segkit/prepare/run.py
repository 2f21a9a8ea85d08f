"""``run_prepare``: a raw dataset -> ``DIR/{train,valid,test}/{images,masks}`` + ``splits.json`` +
``dataset.json``.

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

This module only orchestrates; the pieces live beside it: ``outdir`` (step 1 and ``--overwrite``), ``cases``
(step 4 and ``verify_only``, in the worker processes), ``slices2d`` (the 2D-slice sources) and ``report``
(``PrepareReport``, ``summary.png``).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from segkit import __version__
from segkit.config import COARSE_DIR, Config, validate_config
from segkit.errors import ConfigError, DataError, OutputError, SegkitError, write_fault
from segkit.io.atomic import pid_alive, remove_stale_temps, write_json
from segkit.prepare.cases import CaseTask, process_case, verify_case
from segkit.prepare.manifest import MANIFEST_FILE, build_manifest, config_fingerprint, write_manifest
from segkit.prepare.outdir import (
    RECORDS,
    SUMMARY_PNG,
    case_record_path,
    check_out,
    clear_out,
    glob_escape,
    marker_path,
    read_json,
)
from segkit.prepare.report import PrepareReport, plot_summary, summarize, untrained_classes
from segkit.prepare.sources import (
    SOURCES,
    CaseKind,
    CaseSpec,
    Discovery,
    Source,
    SourceOptions,
    slab_cases,
    unusable_case_ids,
)
from segkit.prepare.split import load_user_split, split_cases, split_of, write_splits
from segkit.progress import NULL_PROGRESS, Progress

log = logging.getLogger(__name__)


# === Options ===


def apply_options(
    cfg: Config, *, folds: int | None = None, fold: int | None = None, binary: bool = False
) -> Config:
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
        raise SegkitError(
            f"--shard '{text}' must be i/n with 0 <= i < n", hint="e.g. --shard 0/4 ... --shard 3/4"
        )
    return int(m.group(1)), int(m.group(2))


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


# === Records ===


@dataclass(frozen=True)
class PrepareOptions:
    """How ``run_prepare`` runs: the command's options besides the source, its folders and the config.

    Attributes:
        workers: worker processes (default ``os.cpu_count()``); 1 runs in this process.
        shard: ``(i, n)``: process cases ``i, i+n, i+2n, ...`` of the sorted case list.
        overwrite: replace an existing, non-resumable ``out`` (only segkit's own entries are removed).
        folds, fold: K-fold split (override ``prepare.split``).
        binary: merge all foreground classes into one.
        verify_only: check the raw data, write nothing.
        splits_file: a user split (``segkit.prepare.split.load_user_split``: segkit's splits.json, nnU-Net's
            splits_final.json with ``fold``, or test + folds) instead of ``prepare.split``'s random one.
        source_options: options of particular sources (``SourceOptions``: the ``nifti`` globs, the number of
            phantom cases and their seed, default ``cfg.seed``).
    """

    workers: int | None = None
    shard: tuple[int, int] | None = None
    overwrite: bool = False
    folds: int | None = None
    fold: int | None = None
    binary: bool = False
    verify_only: bool = False
    splits_file: Path | None = None
    source_options: SourceOptions = field(default_factory=SourceOptions)


@dataclass(frozen=True)
class _Job:
    """One ``run_prepare`` call after its checks: the source, the config with the options applied (and, once
    the cases are known, ``prepare.spacing`` resolved), the dataset key, the options and the worker count."""

    adapter: Source
    cfg: Config
    key: str
    options: PrepareOptions
    workers: int


# === Main entry ===


def run_prepare(
    source: str,
    src: Path | None,
    out: Path | None,
    cfg: Config,
    options: PrepareOptions | None = None,
    progress: Progress = NULL_PROGRESS,
) -> PrepareReport:
    """Prepare (or with ``options.verify_only`` check) a raw dataset; see the module docstring for the steps.

    Args:
        source: source adapter name (``segkit.prepare.sources.SOURCES``).
        src: raw dataset folder (None for ``phantom``, which writes ``out/raw``).
        out: dataset folder (may be None with ``verify_only``).
        cfg: the config (classes, modality, prepare, seed).
        options: ``PrepareOptions`` (workers, shard, overwrite, folds/fold, binary, verify_only, a split file,
            the source options); None: the defaults.
        progress: started once with the number of cases of this shard (description ``"prepare"``, or
            ``"verify"`` with ``verify_only``: all cases), then advanced by 1 after each case.

    Returns:
        A ``PrepareReport``; ``report.failures`` non-empty means the CLI exits with code 2.

    Raises:
        SegkitError: problems that stop the whole run (unknown source, missing SRC, refused ``out``, a split
            that would be empty, a bad option).
    """
    adapter = SOURCES.get(source)
    opts = options or PrepareOptions()
    if opts.splits_file is not None and opts.folds is not None:
        raise SegkitError(
            "--splits and --folds exclude each other", hint="the split file holds the folds; use --fold"
        )
    cfg = apply_options(cfg, folds=opts.folds, fold=None if opts.splits_file is not None else opts.fold,
                        binary=opts.binary)
    workers = max(1, opts.workers or os.cpu_count() or 1)
    job = _Job(adapter, cfg, _dataset_key(cfg, adapter.name, opts, out), opts, workers)
    _check_folders(adapter, src, out, opts.verify_only)
    if opts.verify_only:
        return _verify_dataset(job, src, out, progress)
    assert out is not None  # _check_folders: --out is required unless verifying
    report = _prepare_dataset(job, src, out, progress)
    if cfg.cascade.enabled and not report.failures:  # the coarse stage's whole slices, same cases and split
        coarse = cfg.cascade_stages()[0]
        cjob = _Job(adapter, coarse, _dataset_key(coarse, adapter.name, opts, out), opts, workers)
        report.coarse = _prepare_dataset(cjob, src, out / COARSE_DIR, progress)
        report.failures += [f"coarse dataset: {f}" for f in report.coarse.failures]
    return report


def _check_folders(adapter: Source, src: Path | None, out: Path | None, verify_only: bool) -> None:
    """Refuse a missing ``out`` (needed unless verifying a source with SRC), ``out`` = SRC, and a missing SRC.

    Raises:
        SegkitError: ``--out`` missing, or SRC missing (``Source.check_src``).
        DataError: ``out`` is the source folder.
    """
    if out is None and (not verify_only or not adapter.needs_src):
        raise SegkitError("--out is required", hint="e.g. --out data/mydataset")
    if src is not None and out is not None and Path(src).resolve() == Path(out).resolve():
        raise DataError(
            "--out must not be the source folder", path=out, hint="write the dataset to a new folder"
        )
    adapter.check_src(src)


def _dataset_key(cfg: Config, source: str, opts: PrepareOptions, out: Path | None) -> str:
    """The dataset's key (``config_fingerprint``), including ``--series``, ``--resample-tilt`` and a user
    split file and fold: another series, other voxels or another split is another dataset.

    Raises:
        DataError: the split file is missing, or lies inside ``out`` that ``overwrite`` would clear.
    """
    key = config_fingerprint(cfg, source)
    if opts.source_options.series is not None:
        key = hashlib.sha256(f"{key}:series={opts.source_options.series}".encode()).hexdigest()
    if opts.source_options.resample_tilt:  # tilted series are resampled, not refused: other voxels
        key = hashlib.sha256(f"{key}:resample_tilt".encode()).hexdigest()
    splits_file = opts.splits_file
    if splits_file is None:
        return key
    if not Path(splits_file).is_file():
        raise DataError("split file not found", path=splits_file, hint="give a JSON split file")
    if out is not None and opts.overwrite and Path(splits_file).resolve().is_relative_to(Path(out).resolve()):
        raise DataError("the split file lies inside --out, which --overwrite clears", path=splits_file,
                        hint="copy it outside the output folder first")
    digest = hashlib.sha256(Path(splits_file).read_bytes() + f"fold={opts.fold}".encode()).hexdigest()
    return hashlib.sha256(f"{key}:{digest}".encode()).hexdigest()


def _raw_folder(job: _Job, src: Path | None, out: Path | None) -> tuple[Path, Path | None]:
    """The folder to discover the cases in, and the phantom's temporary folder (None for a source with SRC).

    Step 2's phantom: its cases are generated beside ``out`` (moved to ``out/raw`` once the split is made).
    """
    if not job.adapter.needs_src and out is not None:
        opts = job.options.source_options
        seed = job.cfg.seed if opts.phantom_seed is None else opts.phantom_seed
        tmp = _make_phantom(out, opts.phantom_n, seed)
        return tmp, tmp
    assert src is not None  # Source.check_src (_check_folders) refused a missing SRC
    return Path(src), None


def _discover(job: _Job, raw: Path, report: PrepareReport) -> Discovery:
    """Step 2: the cases of ``raw`` (cut into ``prepare.slabs`` blocks, if set) and their problems (missing
    pairs, unusable case ids); counts the cases."""
    found = job.adapter.discover(raw, job.options.source_options)
    prep = job.cfg.prepare
    if prep.slabs is not None:
        found = _short_volumes_out(slab_cases(found, prep.slabs, prep.axis, prep.slab_gap_mm))
    found.problems += unusable_case_ids(found)
    report.n_cases = len(found.cases)
    return found


def _short_volumes_out(found: Discovery) -> Discovery:
    """``found`` without the blocks of volumes too short for ``prepare.slabs``: one problem line per volume
    (from its header, before anything is written), not one failure per block."""
    from segkit.io.volumes import TooFewSlicesError, VolumeRef, read_header

    short: dict[VolumeRef, str] = {}  # the whole volume of each case, its blocks' one line
    for c in found.cases:
        if c.slab is not None and c.slab.index == 1:
            try:
                read_header(c.image_ref)
            except TooFewSlicesError as e:  # other header problems: that block's case fails as without slabs
                short[replace(c.image_ref, slab=None)] = e.one_line()
    kept = [c for c in found.cases if replace(c.image_ref, slab=None) not in short]
    return Discovery(kept, list(found.problems) + list(short.values()))


def _verify_dataset(job: _Job, src: Path | None, out: Path | None, progress: Progress) -> PrepareReport:
    """``verify_only``: every problem of the raw cases, nothing written (a generated phantom is removed)."""
    report = PrepareReport(out=out, source=job.adapter.name, verify_only=True)
    raw, raw_tmp = _raw_folder(job, src, out)
    try:
        found = _discover(job, raw, report)
        report.failures = list(found.problems) + _verify(found, job, progress)
    finally:
        if raw_tmp is not None:
            shutil.rmtree(raw_tmp, ignore_errors=True)
    return report


def _prepare_dataset(job: _Job, src: Path | None, out: Path, progress: Progress) -> PrepareReport:
    """Steps 1 to 6 of the module docstring."""
    report = PrepareReport(out=out, source=job.adapter.name, verify_only=False)
    resume = check_out(out, job.key, job.options.overwrite)  # 1. output folder
    raw, raw_tmp = _raw_folder(job, src, out)
    if resume:
        remove_stale_temps(out)  # temporaries of a killed earlier run
    handed_over = False
    try:
        found = _discover(job, raw, report)  # 2. discovery
        if found.problems:
            report.failures = list(found.problems)
            return report
        flat = [c for c in found.cases if c.kind != CaseKind.VOLUME] if job.cfg.cascade.enabled else []
        if flat:  # a cascade crops volumes around their labels: 2D slice files have no volume to crop
            raise ConfigError(f"case {flat[0].case_id} is a set of 2D slices: a cascade (cascade.enabled) "
                              "needs volumes", path=flat[0].image,
                              hint="set cascade.enabled: false for 2D slices")
        job = replace(job, cfg=resolve_spacing(job.cfg, found.cases))
        # 3. split over all cases (raises before anything is written when a split would be empty)
        splits = _split(job, found)
        handed_over = True  # the phantom files move to out/raw below
    finally:
        if raw_tmp is not None and not handed_over:  # missing pairs, an error: drop the phantom
            shutil.rmtree(raw_tmp, ignore_errors=True)
    if job.options.overwrite and not resume:
        clear_out(out, phantom=raw_tmp is not None)
    out.mkdir(parents=True, exist_ok=True)
    if raw_tmp is not None:
        found = _install_phantom(raw_tmp, out / "raw", found)
    write_json(marker_path(out), {"key": job.key, "source": job.adapter.name,
                                  "fingerprint": job.cfg.prepare_fingerprint(), "seed": job.cfg.seed,
                                  "segkit_version": __version__})
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # the commit marker goes until this run is complete
    write_splits(out, splits)
    where = split_of(splits)
    _run_cases(job, out, found.cases, where, report, progress)  # 4. and 5.
    _complete(job, out, found, where, report)  # 6.
    return report


def _split(job: _Job, found: Discovery) -> dict[str, Any]:
    """Step 3: the user's split file, or ``prepare.split``'s random split of every case id."""
    ids = [c.case_id for c in found.cases]
    if job.options.splits_file is not None:
        return load_user_split(Path(job.options.splits_file), ids, job.options.fold)
    return split_cases(ids, job.cfg.prepare.split, job.cfg.seed)


def _run_cases(job: _Job, out: Path, cases: list[CaseSpec], where: dict[str, str], report: PrepareReport,
               progress: Progress) -> None:
    """Steps 4 and 5: the cases of this shard in the worker pool (results into ``report``), then the shard
    record ``records/shard-<i>-of-<n>.json``."""
    i, n = job.options.shard or (0, 1)
    mine = cases[i::n]
    tasks = [(CaseTask(c, job.cfg, out, where[c.case_id], job.key),) for c in mine]
    progress.start(len(tasks), "prepare")
    for res in _pool_map(process_case, tasks, job.workers):
        report.peak_rss_mib = max(report.peak_rss_mib, res.peak_rss_mib)
        report.cpu_s += res.cpu_s
        if res.status == "failed":
            report.failures.append(res.failure)
        elif res.status == "skipped":
            report.skipped.append(res.case_id)
        else:
            report.done.append(res.case_id)
        progress.advance(1)
    report.failures.sort()
    write_json(
        out / RECORDS / f"shard-{i}-of-{n}.json",
        {"key": job.key, "shard": [i, n], "cases": [c.case_id for c in mine], "done": sorted(report.done),
         "skipped": sorted(report.skipped), "failures": report.failures},
    )


def _complete(job: _Job, out: Path, found: Discovery, where: dict[str, str], report: PrepareReport) -> None:
    """Step 6: the summary of every finished case (of all shards), the empty-label warnings, and -- when no
    case is pending or failed -- ``summary.png`` and, last, the commit marker ``dataset.json``."""
    cfg, source = job.cfg, job.adapter.name
    entries = _load_entries(out, job.key, found.cases, where)
    if cfg.prepare.empty_labels == "warn":
        labels = {c.case_id: c.label.name + (f" ({c.slab.describe()}, case {c.case_id})" if c.slab else "")
                  for c in found.cases if c.label is not None}
        report.warnings = [
            f"{labels.get(cid, cid)}: label volume is empty (no foreground voxel); "
            "kept (set prepare.empty_labels=allow for real negatives, or error to refuse such cases)"
            for cid, e in sorted(entries.items()) if e.get("empty_label")
        ]
    report.summary = summarize(entries, cfg)
    report.pending = len(found.cases) - len(entries)
    if report.pending == 0:
        report.warnings += untrained_classes(report.summary, cfg.prepare.slabs is not None)
    if report.pending == 0 and not report.failures:
        report.summary_png = plot_summary(report.summary, out / SUMMARY_PNG, f"{cfg.name} ({source})")
        manifest = build_manifest(cfg, source, {cid: e["record"] for cid, e in entries.items()})
        report.manifest = write_manifest(out, manifest)


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
        _, affine = read_header(case.image_ref)
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


def _verify(found: Discovery, job: _Job, progress: Progress) -> list[str]:
    """The problems of every case (``verify_case`` in the worker pool), sorted."""
    problems: list[str] = []
    args = [(c, job.cfg) for c in found.cases]
    progress.start(len(args), "verify")
    for lines in _pool_map(verify_case, args, job.workers):
        problems += lines
        progress.advance(1)
    return sorted(problems)


def _load_entries(
    out: Path, key: str, cases: list[CaseSpec], where: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Valid case entries (this fingerprint, this split, files present) of every case of the dataset."""
    entries = {}
    for c in cases:
        e = read_json(case_record_path(out, c.case_id))
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
    cases = [replace(c, image=raw / c.image.name, label=raw / c.label.name if c.label else None)
             for c in found.cases]  # the rest (a prepare.slabs block) kept
    return Discovery(cases, found.problems)
