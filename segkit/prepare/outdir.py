"""The output folder of ``segkit prepare``: its layout and its safety.

Owns the names segkit writes under ``out`` (``records/run.json``, ``records/cases/<id>.json``, the slice files
``<split>/{images,masks}/<case>_<NNNN>.png`` and ``<case>_ax<k>_<NNNN>.png`` (``slice_stem``),
``summary.png``), the decision whether ``out`` may be written or
resumed (``check_out``), and ``--overwrite``'s removal of segkit's own files only (``clear_out``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from segkit.errors import DataError
from segkit.io.atomic import remove_stale_temps
from segkit.prepare.manifest import MANIFEST_FILE
from segkit.prepare.split import SPLITS, SPLITS_FILE

log = logging.getLogger(__name__)

RECORDS = "records"
SUMMARY_PNG = "summary.png"


def marker_path(out: Path) -> Path:
    """The run marker ``records/run.json`` (config fingerprint of the run that wrote ``out``)."""
    return out / RECORDS / "run.json"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def case_record_path(out: Path, case_id: str) -> Path:
    """The record of one prepared case: ``records/cases/<case_id>.json``."""
    return out / RECORDS / "cases" / f"{case_id}.json"


def slice_stem(case_id: str, index: int, view: int | None = None) -> str:
    """The stem of a slice file: ``<case_id>_<NNNN>``, or ``<case_id>_ax<k>_<NNNN>`` for a slice along an
    extra axis ``view`` (``prepare.extra_axes``)."""
    return f"{case_id}_{int(index):04d}" if view is None else f"{case_id}_ax{int(view)}_{int(index):04d}"


def slice_files(out: Path, case_id: str) -> list[Path]:
    """Every slice file of ``case_id`` in any split (exact stem ``<case_id>_<4+ digits>.png``, or
    ``<case_id>_ax<k>_<4+ digits>.png`` of ``prepare.extra_axes``)."""
    rx = re.compile(re.escape(case_id) + r"_(?:ax[012]_)?\d{4,}\.png\Z")
    found = []
    for split in SPLITS:
        for sub in ("images", "masks"):
            d = out / split / sub
            if d.is_dir():
                found += [p for p in d.glob(f"{glob_escape(case_id)}_*.png") if rx.match(p.name)]
    return found


def glob_escape(text: str) -> str:
    """``text`` with the glob metacharacters ``* ? [`` escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


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
    marker = read_json(marker_path(out))
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

    segkit's files are known by name: the case records, splits.json, dataset.json, summary.png, every slice
    file ``<case>_<NNNN>.png`` (and ``<case>_ax<k>_<NNNN>.png``) of a case named in splits.json or in a case
    record, the phantom's
    ``raw/case_NNN_*`` volumes (``phantom``), and temporaries of killed runs. A folder is removed only when
    that leaves it empty, so a user's own file inside ``train/images`` or ``records/`` survives
    ``--overwrite``.
    """
    out = Path(out)
    remove_stale_temps(out)
    case_ids: set[str] = set()
    splits = read_json(out / SPLITS_FILE) or {}
    for name in SPLITS:
        ids = splits.get(name)
        if isinstance(ids, list):
            case_ids.update(c for c in ids if isinstance(c, str))
    records = out / RECORDS
    ours: list[Path] = []
    if records.is_dir():
        for rec in (records / "cases").glob("*.json"):
            case_ids.add(rec.stem)
            entry = read_json(rec) or {}
            files = entry.get("files", [])
            ours += [
                out / f
                for f in files
                if isinstance(f, str) and not Path(f).is_absolute() and ".." not in Path(f).parts
            ]
            ours.append(rec)
        ours += [marker_path(out), *records.glob("shard-*-of-*.json")]
    for cid in case_ids:
        ours += slice_files(out, cid)
    ours += [out / SPLITS_FILE, out / MANIFEST_FILE, out / SUMMARY_PNG]
    if phantom:
        ours += [
            p
            for p in (out / "raw").glob("case_*_*.nii.gz")
            if re.fullmatch(r"case_\d{3,}_(image|label)\.nii\.gz", p.name)
        ]
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
    for d in sorted(
        (p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)
    ):
        if not any(d.iterdir()):
            d.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
        return []
    return sorted(p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())
