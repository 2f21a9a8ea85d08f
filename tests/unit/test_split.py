"""Case-level splits: hand-computed counts, determinism, K-fold, empty splits, leak check, splits.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segkit.config import SplitConfig
from segkit.errors import DataError
from segkit.prepare.split import allocate, check_no_leak, load_splits, split_cases, write_splits

IDS = [f"case_{i:02d}" for i in range(10)]


def test_counts_follow_normalised_ratios() -> None:
    # 10 cases, 6:2:2 (given as 3:1:1, normalised) -> 6 train, 2 valid, 2 test.
    s = split_cases(IDS, SplitConfig(train=3, valid=1, test=1), seed=0)
    assert (len(s["train"]), len(s["valid"]), len(s["test"])) == (6, 2, 2)
    assert s["ratios"] == {"train": 0.6, "valid": 0.2, "test": 0.2}
    assert sorted(s["train"] + s["valid"] + s["test"]) == IDS
    assert all(s[k] == sorted(s[k]) for k in ("train", "valid", "test"))


def test_same_seed_same_split_regardless_of_input_order() -> None:
    a = split_cases(IDS, SplitConfig(), seed=5)
    b = split_cases(list(reversed(IDS)), SplitConfig(), seed=5)
    assert a == b
    others = [split_cases(IDS, SplitConfig(), seed=s)["test"] for s in range(6, 12)]
    assert any(t != a["test"] for t in others)


def test_small_datasets_keep_one_case_per_positive_split() -> None:
    # 3 cases at 0.7/0.15/0.15: floor gives 2/0/0, every positive ratio needs one -> 1/1/1.
    s = split_cases(["a", "b", "c"], SplitConfig(), seed=0)
    assert (len(s["train"]), len(s["valid"]), len(s["test"])) == (1, 1, 1)
    # A zero ratio stays empty: 2 cases, train only + test.
    s = split_cases(["a", "b"], SplitConfig(train=1, valid=0, test=1), seed=0)
    assert s["valid"] == [] and len(s["train"]) == 1 and len(s["test"]) == 1


def test_empty_split_is_an_error_naming_the_split() -> None:
    with pytest.raises(DataError, match=r"split 'valid' would be empty: 1 case for ratios") as e:
        split_cases(["only"], SplitConfig(train=0.6, valid=0.2, test=0.2), seed=0)
    assert "prepare.split.valid: 0" in (e.value.hint or "")


def test_allocate_largest_remainder() -> None:
    assert allocate(7, [0.5, 0.25, 0.25], ["a", "b", "c"]) == [
        3,
        2,
        2,
    ]  # 3.5/1.75/1.75 -> 3/1/1 then +1 b, +1 c
    assert allocate(4, [1, 0, 0], ["a", "b", "c"]) == [4, 0, 0]


def test_kfold_covers_every_non_test_case_once() -> None:
    cfg = SplitConfig(train=0.8, valid=0.0, test=0.2, folds=4, fold=1)
    s = split_cases(IDS, cfg, seed=3)
    assert len(s["test"]) == 2 and len(s["kfold"]) == 4
    assert [len(f) for f in s["kfold"]] == [2, 2, 2, 2]
    pooled = [c for f in s["kfold"] for c in f]
    assert sorted(pooled + s["test"]) == IDS and len(set(pooled)) == 8
    assert s["valid"] == s["kfold"][1]
    assert sorted(s["train"]) == sorted(c for j, f in enumerate(s["kfold"]) if j != 1 for c in f)
    # Every fold as validation: the test set stays fixed, validation sets partition the rest.
    runs = [split_cases(IDS, cfg.model_copy(update={"fold": k}), seed=3) for k in range(4)]
    assert all(r["test"] == s["test"] for r in runs)
    assert sorted(c for r in runs for c in r["valid"]) == sorted(pooled)


def test_kfold_needs_enough_cases() -> None:
    with pytest.raises(DataError, match="5 folds need at least 5 cases outside the test split, got 3"):
        split_cases(["a", "b", "c", "d"], SplitConfig(folds=5), seed=0)


def test_duplicate_ids_rejected() -> None:
    with pytest.raises(DataError, match="case id 'a' occurs twice"):
        split_cases(["a", "b", "a"], SplitConfig(), seed=0)


def test_leak_check() -> None:
    with pytest.raises(DataError, match="case 'p1' is in both train and test"):
        check_no_leak({"train": ["p1", "p2"], "valid": [], "test": ["p1"]})
    with pytest.raises(DataError, match="case 'x' is in folds 0 and 2"):
        check_no_leak({"train": [], "valid": [], "test": [], "kfold": [["x"], ["y"], ["x"]]})


def test_write_and_load_splits(tmp_path: Path) -> None:
    s = split_cases(IDS, SplitConfig(), seed=1)
    path = write_splits(tmp_path, s)
    assert json.loads(path.read_text()) == s
    assert load_splits(tmp_path) == s
    path.write_text(json.dumps({**s, "test": s["test"] + [s["train"][0]]}))
    with pytest.raises(DataError, match="is in both train and test"):
        load_splits(tmp_path)


ACDC = [f"patient{p:03d}_frame{f:02d}" for p in (2, 7, 8, 11, 13, 19, 24, 28, 30, 33) for f in (1, 2)]


@pytest.mark.parametrize("folds", [None, 3])
def test_group_by_keeps_both_volumes_of_a_patient_in_one_split(folds: int | None) -> None:
    cfg = SplitConfig(train=0.6, valid=0.2, test=0.2, folds=folds, group_by=r"^(patient\d+)_")
    s = split_cases(ACDC, cfg, seed=42)
    assert sorted(s["train"] + s["valid"] + s["test"]) == sorted(ACDC)
    for name in ("train", "valid", "test"):
        patients = {c.split("_")[0] for c in s[name]}
        assert len(s[name]) == 2 * len(patients)  # both phases of every patient in this split
        assert sorted(patients) == s["patients"][name]
    assert len(s["patients"]["test"]) == 2  # 20 % of 10 patients, not of 20 volumes
    if folds:
        assert all(len(f) % 2 == 0 for f in s["kfold"])


def test_group_by_that_does_not_match_names_the_case() -> None:
    with pytest.raises(DataError, match="case id 'scan_7' does not match prepare.split.group_by"):
        split_cases([*ACDC, "scan_7"], SplitConfig(group_by=r"^(patient\d+)_"), seed=1)


def test_group_by_needs_one_group() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        SplitConfig(group_by=r"^patient\d+_")
    with pytest.raises(ValueError, match="regular expression"):
        SplitConfig(group_by=r"^(patient")


# === user splits ===


def _write(tmp_path, obj) -> Path:  # noqa: ANN001
    import json as _json

    p = tmp_path / "split.json"
    p.write_text(_json.dumps(obj))
    return p


def test_user_split_shapes(tmp_path) -> None:  # noqa: ANN001
    from segkit.prepare.split import load_user_split

    ids = ["a", "b", "c", "d", "e"]
    s = load_user_split(_write(tmp_path, {"train": ["a", "b", "c"], "val": ["d"], "test": ["e"]}), ids)
    assert (s["train"], s["valid"], s["test"]) == (["a", "b", "c"], ["d"], ["e"])
    nnunet = [{"train": ["a", "b"], "val": ["c"]}, {"train": ["a", "c"], "val": ["b"]}]  # splits_final.json
    s = load_user_split(_write(tmp_path, nnunet), ids, fold=1)
    assert (s["train"], s["valid"], s["test"], s["kfold"]) == (["a", "c"], ["b"], ["d", "e"], [["c"], ["b"]])
    s = load_user_split(_write(tmp_path, {"test": ["e", "d"], "folds": nnunet}), ids)
    assert (s["train"], s["valid"], s["test"]) == (["a", "b"], ["c"], ["d", "e"])


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            {"train": ["a", "b"], "valid": ["c", "zz"], "test": ["d", "e"]},
            "1 case id(s) are not in the dataset: zz",
        ),
        (
            {"train": ["a", "b"], "valid": ["b"], "test": ["c", "d", "e"]},
            "case 'b' is in both train and valid",
        ),
        ({"train": ["a"], "valid": ["b"], "test": ["c"]}, "2 case(s) of the dataset are in no split: d, e"),
        ([{"train": ["a"], "val": ["b"]}], "fold 3 is not in the file (1 folds)"),
        ({"train": "a"}, "'train' must be a list of case ids"),
    ],
)
def test_user_split_errors_name_the_cases(tmp_path, obj, message: str) -> None:  # noqa: ANN001
    from segkit.prepare.split import load_user_split

    with pytest.raises(DataError) as e:
        load_user_split(
            _write(tmp_path, obj), ["a", "b", "c", "d", "e"], fold=3 if isinstance(obj, list) else None
        )
    assert (
        message in e.value.one_line()
        and "split.json" in e.value.one_line()
        and "(hint: " in e.value.one_line()
    )


def test_user_split_fold_needs_folds_and_valid_cases(tmp_path) -> None:  # noqa: ANN001
    from segkit.prepare.split import load_user_split

    ids = ["a", "b", "c"]
    with pytest.raises(DataError, match="--fold picks a fold, but the file holds one train/valid/test split"):
        load_user_split(_write(tmp_path, {"train": ["a"], "valid": ["b"], "test": ["c"]}), ids, fold=1)
    with pytest.raises(DataError, match="the split has no valid case"):
        load_user_split(_write(tmp_path, {"train": ["a", "b"], "valid": [], "test": ["c"]}), ids)
