"""Case-level train/valid/test splits (and K-fold), ``splits.json``, and the leak check.

Splits are made over *case ids* (patients / volumes), never over slices, so no patient can sit on both sides.
The result depends only on the set of case ids, the ratios and the seed: ids are sorted first, then permuted
with a ``np.random.Generator`` derived from the seed (``segkit.seeds``' SPLIT stream).

Example:
    >>> s = split_cases([f"c{i}" for i in range(10)], SplitConfig(train=0.6, valid=0.2, test=0.2), seed=1)
    >>> len(s["train"]), len(s["valid"]), len(s["test"])
    (6, 2, 2)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from segkit.config import SplitConfig
from segkit.errors import DataError
from segkit.io.atomic import write_json
from segkit.seeds import Stream, generator

SPLITS = ("train", "valid", "test")
SPLITS_FILE = "splits.json"
K = TypeVar("K")  # the name of a group of case ids (a split name, a fold number)


def split_rng(seed: int) -> np.random.Generator:
    """The Generator used for splitting, derived from the config seed (``Stream.SPLIT``)."""
    return generator(seed, Stream.SPLIT)


def allocate(n: int, ratios: Sequence[float], names: Sequence[str]) -> list[int]:
    """Split ``n`` items into counts proportional to ``ratios`` (largest remainder).

    Every positive ratio gets at least one item, and a zero ratio gets none.

    Args:
        n: number of items.
        ratios: non-negative weights (need not sum to 1).
        names: names of the parts, used in the error.

    Returns:
        Counts summing to ``n``.

    Raises:
        DataError: fewer items than parts with a positive ratio.
    """
    r = np.asarray(ratios, dtype=float)
    r = r / r.sum()
    positive = r > 0
    if n < int(positive.sum()):
        wanted = ", ".join(f"{nm} {w:.2f}" for nm, w in zip(names, r, strict=True) if w > 0)
        empty = [nm for nm, w in zip(names, r, strict=True) if w > 0][n:]
        raise DataError(
            f"split '{empty[0]}' would be empty: {n} case{'s' if n != 1 else ''} for ratios {wanted}",
            hint=f"add cases or set prepare.split.{empty[0]}: 0",
        )
    target = r * n
    counts = np.where(positive, np.maximum(1, np.floor(target)), 0).astype(int)
    while counts.sum() < n:
        counts[int(np.argmax(np.where(positive, target - counts, -np.inf)))] += 1
    while counts.sum() > n:
        counts[int(np.argmax(np.where(counts > 1, counts - target, -np.inf)))] -= 1
    return [int(c) for c in counts]


def split_cases(case_ids: Iterable[str], split_cfg: SplitConfig, seed: int) -> dict[str, Any]:
    """Assign every case to exactly one of train / valid / test.

    With ``group_by`` the split is made over patients (the regex's group) and each case follows its patient;
    ``splits.json`` then also lists ``patients`` per split. Without ``folds``: the sorted ids are permuted
    once and cut into test, valid, train by the normalised ratios (each positive ratio gets at least one
    case). With ``folds`` = K: the test share is held out first, the remaining cases are cut into K disjoint
    folds, fold ``split_cfg.fold`` is the validation set and the other K-1 folds are train (the ``valid``
    ratio is ignored).

    Args:
        case_ids: the case ids (unique).
        split_cfg: ratios, ``folds`` and ``fold``.
        seed: the config seed.

    Returns:
        The ``splits.json`` dict: ``{"seed", "ratios", "folds", "fold", "train", "valid", "test"}`` with
        sorted id lists, plus ``"kfold"`` (list of K sorted id lists) when ``folds`` is set.

    Raises:
        DataError: duplicate ids, no cases, a split with a positive ratio would be empty, or fewer cases than
            folds.
    """
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"case id '{dup[0]}' occurs twice", hint="case ids must be unique")
    if not ids:
        raise DataError("no cases to split", hint="check the source folder and the --image-glob/--label-glob")
    if split_cfg.group_by:
        return _split_grouped(ids, split_cfg, seed)
    total = split_cfg.train + split_cfg.valid + split_cfg.test
    ratios = {
        "train": split_cfg.train / total,
        "valid": split_cfg.valid / total,
        "test": split_cfg.test / total,
    }
    order = [ids[i] for i in split_rng(seed).permutation(len(ids))]
    out: dict[str, Any] = {"seed": seed, "ratios": ratios, "folds": split_cfg.folds, "fold": split_cfg.fold}
    if split_cfg.folds is None:
        n_test, n_valid, _ = allocate(
            len(ids), [ratios["test"], ratios["valid"], ratios["train"]], ["test", "valid", "train"]
        )
        out["test"] = sorted(order[:n_test])
        out["valid"] = sorted(order[n_test : n_test + n_valid])
        out["train"] = sorted(order[n_test + n_valid :])
    else:
        k = split_cfg.folds
        n_test, _ = allocate(len(ids), [ratios["test"], ratios["train"] + ratios["valid"]], ["test", "train"])
        rest = order[n_test:]
        if len(rest) < k:
            raise DataError(
                f"{k} folds need at least {k} cases outside the test split, got {len(rest)}",
                hint="use fewer folds (--folds) or add cases",
            )
        folds = [sorted(str(c) for c in chunk) for chunk in np.array_split(np.asarray(rest, dtype=object), k)]
        out["test"] = sorted(order[:n_test])
        out["valid"] = folds[split_cfg.fold]
        out["train"] = sorted(c for j, f in enumerate(folds) if j != split_cfg.fold for c in f)
        out["kfold"] = folds
    out = {
        k: out[k] for k in ("seed", "ratios", "folds", "fold", "train", "valid", "test", "kfold") if k in out
    }
    check_no_leak(out)
    return out


def patient_groups(case_ids: Sequence[str], group_by: str) -> dict[str, list[str]]:
    """``{patient: [case ids]}`` by the first group of the ``group_by`` regex (``re.search``).

    Raises:
        DataError: a case id the pattern does not match (named, with the pattern).
    """
    pattern = re.compile(group_by)
    groups: dict[str, list[str]] = {}
    for cid in case_ids:
        m = pattern.search(cid)
        if m is None or not m.group(1):
            raise DataError(
                f"case id '{cid}' does not match prepare.split.group_by '{group_by}'",
                hint="the pattern's one (group) must name the patient in every case id, "
                "e.g. '^(patient\\d+)_'",
            )
        groups.setdefault(m.group(1), []).append(cid)
    return groups


def _split_grouped(ids: list[str], split_cfg: SplitConfig, seed: int) -> dict[str, Any]:
    """``split_cases`` over patients (``group_by``), then every patient's cases follow it."""
    groups = patient_groups(ids, split_cfg.group_by or "")
    by_patient = split_cases(sorted(groups), split_cfg.model_copy(update={"group_by": None}), seed)
    out: dict[str, Any] = {k: by_patient[k] for k in ("seed", "ratios", "folds", "fold")}
    out["group_by"] = split_cfg.group_by
    for name in SPLITS:
        out[name] = sorted(c for p in by_patient[name] for c in groups[p])
    if "kfold" in by_patient:
        out["kfold"] = [sorted(c for p in fold for c in groups[p]) for fold in by_patient["kfold"]]
    out["patients"] = {name: by_patient[name] for name in SPLITS}
    check_no_leak(out)
    return out


def check_no_leak(splits: dict[str, Any], path: Path | None = None) -> None:
    """Raise if any case id sits in two splits (or two K-fold folds, or twice in one split).

    Raises:
        DataError: naming the case and both splits.
    """
    twice = first_repeat((name, splits.get(name, [])) for name in SPLITS)
    if twice is not None:
        cid, first, second = twice
        raise DataError(
            f"case '{cid}' is in both {first} and {second}: slices of one patient would leak across splits",
            path=path,
            hint="list each case in one split only (or run segkit prepare again to rewrite splits.json)",
        )
    in_folds = first_repeat(enumerate(splits.get("kfold") or []))
    if in_folds is not None:
        cid, j0, j1 = in_folds
        raise DataError(
            f"case '{cid}' is in folds {j0} and {j1}", path=path, hint="list each case in one fold only"
        )


def first_repeat(groups: Iterable[tuple[K, Iterable[str]]]) -> tuple[str, K, K] | None:
    """The first case id listed twice in ``groups`` (``(name, case ids)`` pairs, read in order), as
    ``(case id, name where it was first, name where it came again)``; None when every id occurs once."""
    seen: dict[str, K] = {}
    for name, ids in groups:
        for cid in ids:
            if cid in seen:
                return cid, seen[cid], name
            seen[cid] = name
    return None


def fold_view(splits: dict[str, Any], fold: int, path: Path | None = None) -> dict[str, list[str]]:
    """The train / valid / test case lists of cross-validation fold ``fold``: valid = that fold's cases, train
    = the other folds' cases, test unchanged.

    Raises:
        DataError: the split has no folds (``prepare --folds K`` writes them), or ``fold`` is out of range.
    """
    folds = splits.get("kfold")
    if not folds:
        raise DataError("the dataset has no cross-validation folds", path=path,
                        hint="prepare it with --folds K (e.g. segkit prepare ... --folds 5), or drop --fold")
    if not 0 <= fold < len(folds):
        raise DataError(f"fold {fold} is out of range: the dataset has {len(folds)} folds", path=path,
                        hint=f"use a fold in 0..{len(folds) - 1}")
    return {"train": sorted(c for j, f in enumerate(folds) if j != fold for c in f),
            "valid": sorted(folds[fold]), "test": sorted(splits.get("test", []))}


def split_of(splits: dict[str, Any]) -> dict[str, str]:
    """case_id -> split name."""
    return {cid: name for name in SPLITS for cid in splits.get(name, [])}


def write_splits(out_dir: Path, splits: dict[str, Any]) -> Path:
    """Check for leaks, then write ``out_dir/splits.json`` atomically; returns its path."""
    path = Path(out_dir) / SPLITS_FILE
    check_no_leak(splits, path)
    write_json(path, splits)
    return path


def load_splits(out_dir: Path) -> dict[str, Any]:
    """Read and leak-check ``out_dir/splits.json``.

    Raises:
        DataError: missing, unreadable or leaking.
    """
    path = Path(out_dir) / SPLITS_FILE
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError("splits.json not found", path=path, hint="run segkit prepare first") from e
    except (OSError, ValueError) as e:
        raise DataError(
            f"cannot read splits.json: {e}", path=path, hint="run segkit prepare again to rewrite it"
        ) from e
    if not isinstance(splits, dict) or not all(isinstance(splits.get(s), list) for s in SPLITS):
        raise DataError("splits.json must hold train, valid and test lists", path=path,
                        hint="run segkit prepare again to rewrite it")
    check_no_leak(splits, path)
    return splits


# === User splits ===


def load_user_split(path: Path, case_ids: Sequence[str], fold: int | None = None) -> dict[str, Any]:
    """A split given as a JSON file, checked against the dataset's case ids.

    Accepted shapes:

    - ``{"train": [...], "valid": [...], "test": [...]}`` (segkit's ``splits.json``; ``"val"`` is read as
      ``"valid"``; a missing ``test`` is empty);
    - nnU-Net's ``splits_final.json``: ``[{"train": [...], "val": [...]}, ...]``, one entry per fold; fold
      ``fold`` (default 0) is used and the cases in no fold are the test set;
    - ``{"test": [...], "folds": [{"train": [...], "val": [...]}, ...]}``.

    Returns:
        The ``splits.json`` dict (``"source"`` = the file, ``"fold"``, sorted ``train``/``valid``/``test``,
        and ``"kfold"`` = each fold's validation cases when the file has folds).

    Raises:
        DataError: unreadable or malformed file; a case id the dataset does not have; a case in two lists; a
            dataset case in no list; a fold out of range (each names the cases, up to five).
    """
    path = Path(path)
    hint = "list every case of the dataset exactly once in train, valid or test"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"cannot read the split file: {e}", path=path, hint="give a JSON file") from e
    folds: list[dict[str, Any]] | None = None
    test: list[Any] = []
    if isinstance(raw, list):
        folds = raw
    elif isinstance(raw, dict) and isinstance(raw.get("folds"), list):
        folds, test = raw["folds"], raw.get("test", [])
    elif isinstance(raw, dict):
        if fold is not None:
            raise DataError("--fold picks a fold, but the file holds one train/valid/test split", path=path,
                            hint="drop --fold, or give a file with folds")
        chosen = raw
    else:
        raise DataError("a split file holds a JSON object or a list of folds", path=path, hint=hint)
    if folds is not None:
        k = 0 if fold is None else int(fold)
        if not folds or not 0 <= k < len(folds) or not all(isinstance(f, dict) for f in folds):
            raise DataError(f"fold {k} is not in the file ({len(folds)} folds)", path=path,
                            hint=f"use --fold 0..{max(len(folds) - 1, 0)}")
        chosen = {**folds[k], "test": test}
    lists: dict[str, list[str]] = {}
    for name in SPLITS:
        value = chosen.get(name, chosen.get("val") if name == "valid" else None)
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise DataError(f"'{name}' must be a list of case ids", path=path, hint=hint)
        lists[name] = value
    if folds is not None and not test:  # nnU-Net's file has no test set: what is in no fold is test
        in_folds = {c for f in folds for key in ("train", "val", "valid") for c in f.get(key, [])}
        lists["test"] = sorted(set(case_ids) - in_folds)
    _check_user_lists(lists, case_ids, path, hint)
    out: dict[str, Any] = {"source": str(path), "fold": fold if folds is not None else None,
                           **{name: sorted(lists[name]) for name in SPLITS}}
    if folds is not None:
        out["kfold"] = [sorted(f.get("val", f.get("valid", []))) for f in folds]
    return out


def _check_user_lists(lists: dict[str, list[str]], case_ids: Sequence[str], path: Path, hint: str) -> None:
    """A user split's lists hold every dataset case exactly once, no other id, and some train and valid cases.

    Raises:
        DataError: the first problem found, naming the cases (up to five).
    """
    known = set(case_ids)
    twice = first_repeat((name, lists[name]) for name in SPLITS)
    if twice is not None:
        raise DataError(f"case '{twice[0]}' is in both {twice[1]} and {twice[2]}", path=path, hint=hint)
    seen = {cid for name in SPLITS for cid in lists[name]}
    unknown = sorted(seen - known)
    if unknown:
        raise DataError(
            f"{len(unknown)} case id(s) are not in the dataset: {_few(unknown)}",
            path=path,
            hint="check the ids against the source files (case id = file name without its suffix)",
        )
    missing = sorted(known - seen)
    if missing:
        raise DataError(
            f"{len(missing)} case(s) of the dataset are in no split: {_few(missing)}", path=path, hint=hint
        )
    for name in ("train", "valid"):
        if not lists[name]:
            raise DataError(
                f"the split has no {name} case", path=path, hint="training needs both train and valid cases"
            )


def _few(ids: Sequence[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (" ..." if len(ids) > n else "")
