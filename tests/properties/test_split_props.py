"""Property tests of the case-level split: disjoint, complete, deterministic."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from segkit.config import SplitConfig  # noqa: E402
from segkit.prepare.split import allocate, split_cases  # noqa: E402

ids_st = st.lists(st.text("abcdef0123456789_", min_size=1, max_size=6), min_size=3, max_size=40, unique=True)
ratio_st = st.floats(0.05, 1.0)


@given(ids=ids_st, tr=ratio_st, va=ratio_st, te=ratio_st, seed=st.integers(0, 2**31 - 1))
def test_split_is_a_partition_and_deterministic(
    ids: list[str], tr: float, va: float, te: float, seed: int
) -> None:
    cfg = SplitConfig(train=tr, valid=va, test=te)
    s = split_cases(ids, cfg, seed)
    parts = [set(s["train"]), set(s["valid"]), set(s["test"])]
    assert sum(len(p) for p in parts) == len(ids)
    assert set().union(*parts) == set(ids)
    assert all(len(p) >= 1 for p in parts)  # every positive ratio gets a case (n >= 3)
    assert split_cases(list(reversed(ids)), cfg, seed) == s


@given(ids=ids_st, k=st.integers(2, 5), seed=st.integers(0, 1000), data=st.data())
def test_kfold_folds_disjoint_and_cover(ids: list[str], k: int, seed: int, data: st.DataObject) -> None:
    fold = data.draw(st.integers(0, k - 1))
    cfg = SplitConfig(train=0.8, valid=0.0, test=0.2, folds=k, fold=fold)
    n_test = allocate(len(ids), [0.2, 0.8], ["test", "train"])[0]
    if len(ids) - n_test < k:
        return
    s = split_cases(ids, cfg, seed)
    pooled = [c for f in s["kfold"] for c in f]
    assert len(pooled) == len(set(pooled))
    assert set(pooled) | set(s["test"]) == set(ids)
    assert not set(pooled) & set(s["test"])
    assert s["valid"] == s["kfold"][fold]
    assert set(s["train"]) == set(pooled) - set(s["valid"])
    assert max(map(len, s["kfold"])) - min(map(len, s["kfold"])) <= 1


patients_st = st.dictionaries(
    st.from_regex(r"p[0-9]{1,3}", fullmatch=True), st.integers(1, 3), min_size=4, max_size=25
)


@given(patients=patients_st, k=st.one_of(st.none(), st.integers(2, 4)), seed=st.integers(0, 1000))
def test_grouped_split_never_separates_one_patients_volumes(
    patients: dict[str, int], k: int | None, seed: int
) -> None:
    """ACDC-like ids (two phases per patient): with group_by every patient's volumes share one split and one
    fold, and every fold_view is a partition of the cases."""
    from segkit.prepare.split import fold_view, split_of

    ids = [f"{p}_frame{j:02d}" for p, n in patients.items() for j in range(n)]
    cfg = SplitConfig(train=0.7, valid=0.1 if k is None else 0.0, test=0.2, folds=k, group_by=r"^(p\d+)_")
    n_test = allocate(len(patients), [0.2, 0.8], ["test", "train"])[0]
    if k is not None and len(patients) - n_test < k:
        return
    s = split_cases(ids, cfg, seed)
    where = split_of(s)
    assert set(where) == set(ids)
    for p, n in patients.items():
        assert len({where[f"{p}_frame{j:02d}"] for j in range(n)}) == 1
    if k is not None:
        fold_of = {c: j for j, f in enumerate(s["kfold"]) for c in f}
        for p, n in patients.items():
            assert len({fold_of.get(f"{p}_frame{j:02d}", -1) for j in range(n)}) == 1
        for j in range(k):
            view = fold_view(s, j)
            assert sorted(view["train"] + view["valid"] + view["test"]) == sorted(ids)
            assert set(view["valid"]) == set(s["kfold"][j]) and not set(view["train"]) & set(view["valid"])
