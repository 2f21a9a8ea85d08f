"""Post-processing decided on validation: the decision rule by hand, and how a run's choice is applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segkit.config import validate_config
from segkit.errors import DataError
from segkit.postprocess import (
    POSTPROCESSING_FILE,
    Postprocessing,
    apply_postprocessing,
    decide,
    keep_largest,
    largest_foreground,
    load_postprocessing,
)


def _means(plain, plain_lcc, tta, tta_lcc):  # noqa: ANN001, ANN202
    return {"plain": plain, "plain+lcc": plain_lcc, "tta": tta, "tta+lcc": tta_lcc}


def test_component_filter_is_kept_per_class_only_where_it_helps() -> None:
    # class 1 (one organ) gains from the filter, class 2 (two lungs) loses: only class 1 takes it.
    m = _means({1: 0.80, 2: 0.70}, {1: 0.85, 2: 0.60}, {1: 0.80, 2: 0.70}, {1: 0.84, 2: 0.60})
    tta, lcc, plain, with_tta = decide(m, [1, 2])
    assert (tta, lcc) == (False, (1,))
    assert plain == pytest.approx((0.85 + 0.70) / 2) and with_tta == pytest.approx((0.84 + 0.70) / 2)


def test_tta_is_kept_only_when_it_raises_the_mean() -> None:
    m = _means({1: 0.80, 2: 0.70}, {1: 0.80, 2: 0.70}, {1: 0.82, 2: 0.71}, {1: 0.83, 2: 0.70})
    assert decide(m, [1, 2])[:2] == (True, (1,))
    tie = _means({1: 0.8}, {1: 0.8}, {1: 0.8}, {1: 0.8})
    assert decide(tie, [1])[:2] == (False, ())  # no gain, no cost added


def test_a_tie_goes_to_the_filter_only_for_one_piece_anatomy() -> None:
    tie = _means({1: 0.8, 2: 0.7}, {1: 0.8, 2: 0.7}, {1: 0.8, 2: 0.7}, {1: 0.8, 2: 0.7})
    # class 1 is one piece in every validation reference (an LV), class 2 is two (both lungs)
    assert decide(tie, [1, 2], {1: True, 2: False})[:2] == (False, (1,))
    worse = _means({1: 0.8}, {1: 0.79}, {1: 0.8}, {1: 0.79})
    assert decide(worse, [1], {1: True})[:2] == (False, ())  # a loss is a loss, one piece or not


def _with_fg(plain, plain_lcc, fg, fg_lcc):  # noqa: ANN001, ANN202 - the same numbers with and without TTA
    return {"plain": plain, "plain+lcc": plain_lcc, "plain+fg": fg, "plain+fg+lcc": fg_lcc,
            "tta": plain, "tta+lcc": plain_lcc, "tta+fg": fg, "tta+fg+lcc": fg_lcc}


def test_the_foreground_filter_is_kept_where_it_raises_the_mean_and_classes_are_chosen_after_it() -> None:
    # a second "heart" apart from the real one: the foreground filter removes it (class 2: 0.5 -> 0.8), and
    # on the filtered labels class 1's own filter no longer changes anything, so it is not chosen
    m = _with_fg({1: 0.8, 2: 0.5}, {1: 0.85, 2: 0.4}, {1: 0.85, 2: 0.8}, {1: 0.85, 2: 0.8})
    tta, lcc, plain, _ = decide(m, [1, 2])
    assert (tta, lcc) == (False, ("foreground",)) and plain == pytest.approx((0.85 + 0.8) / 2)
    # the foreground filter costs Dice (two organs apart, both legitimate): not kept, per-class choice kept
    worse = _with_fg({1: 0.8, 2: 0.7}, {1: 0.85, 2: 0.6}, {1: 0.8, 2: 0.0}, {1: 0.85, 2: 0.0})
    assert decide(worse, [1, 2])[:2] == (False, (1,))


def test_a_foreground_tie_goes_to_the_filter_only_when_the_foreground_is_one_piece() -> None:
    tie = _with_fg({1: 0.8}, {1: 0.8}, {1: 0.8}, {1: 0.8})
    assert decide(tie, [1], {1: True}, single_foreground=True)[:2] == (False, ("foreground", 1))
    assert decide(tie, [1], {1: True}, single_foreground=False)[:2] == (False, (1,))


def test_the_foreground_filter_keeps_the_piece_a_per_class_filter_would_lose() -> None:
    """ACDC patient086 ES in one run: a small true LV inside the heart and a larger "LV + MYO" blob on slices
    away from it. The per-class filter alone keeps the blob's LV (the larger piece) and deletes the true one;
    the foreground filter first removes the blob, whatever its classes."""
    import numpy as np

    from segkit.config import validate_config

    cfg = validate_config({"classes": [{"id": c, "name": n, "color": [c, 0, 0]}
                                       for c, n in ((1, "RV"), (2, "MYO"), (3, "LV"))]})
    v = np.zeros((12, 12, 12), np.uint8)
    v[2:8, 2:8, 0:3] = 1  # RV
    v[2:8, 8:11, 0:3] = 2  # MYO touching it
    v[4:6, 9:10, 0:3] = 3  # a small LV inside the MYO: 6 voxels
    v[0:4, 0:4, 8:12] = 2  # the blob, apart: MYO ...
    v[1:3, 1:3, 8:12] = 3  # ... around an LV of 16 voxels, larger than the true one
    assert (keep_largest(v, [3], cfg)[4:6, 9:10, 0:3] == 0).all()  # per class: the true LV is lost
    kept = keep_largest(v, ["foreground", 3], cfg)
    assert (kept[:, :, 8:] == 0).all() and (kept[:, :, :3] == v[:, :, :3]).all()
    assert (largest_foreground(v) == kept).all()
    assert keep_largest(v, ["foreground"], cfg).dtype == np.uint8


def test_the_foreground_token_round_trips_through_config_and_file(tmp_path: Path) -> None:
    assert _cfg(largest_component=["foreground", 1]).infer.largest_component == ("foreground", 1)
    # --set infer.largest_component=foreground
    assert _cfg(largest_component="foreground").infer.largest_component == ("foreground",)
    # the token goes first (the filter runs first), repeats go; "true" stays a boolean
    assert _cfg(largest_component=[2, "Foreground", 1, 2]).infer.largest_component == ("foreground", 2, 1)
    assert _cfg(largest_component="true").infer.largest_component is True
    for bad, word in ((["largest"], "'largest'"), ("all", "'all'"), ([0, 1], "0 is the background"),
                      ([True], "True"), ([[1]], r"\[1\]"), (["0"], "0 is the background")):
        with pytest.raises(Exception, match=f"{word}.*give true, false, a list of class ids"):
            _cfg(largest_component=bad)
    pp = Postprocessing(tta=False, largest_component=("foreground", 2), foreground_components=(1, 1))
    (tmp_path / POSTPROCESSING_FILE).write_text(json.dumps(pp.to_json()))
    assert load_postprocessing(tmp_path) == pp
    assert apply_postprocessing(_cfg(), tmp_path).infer.largest_component == ("foreground", 2)
    # a file written before the foreground filter existed still loads
    (tmp_path / POSTPROCESSING_FILE).write_text(json.dumps({"tta": False, "largest_component": [1]}))
    assert load_postprocessing(tmp_path).foreground_components == ()


def test_reference_components_are_counted_in_3d() -> None:
    import numpy as np

    from segkit.postprocess import count_components

    m = np.zeros((6, 6, 6), bool)
    m[0:2, 0:2, 0:2] = True
    m[2, 2, 2] = True  # touches the first block at a corner: one piece with 26-connectivity
    assert count_components(m) == 1
    m[5, 5, 5] = True
    assert count_components(m) == 2


def test_classes_never_seen_are_skipped() -> None:
    m = _means({1: 0.9, 2: None}, {1: 0.8, 2: None}, {1: 0.9, 2: None}, {1: 0.8, 2: None})
    assert decide(m, [1, 2]) == (False, (), 0.9, 0.9)


def _cfg(**infer: object):  # noqa: ANN202
    return validate_config({"classes": [{"id": 1, "name": "a", "color": [1, 2, 3]},
                                        {"id": 2, "name": "b", "color": [4, 5, 6]}], "infer": infer})


def test_apply_uses_the_run_choice_unless_the_config_sets_it(tmp_path: Path) -> None:
    off = apply_postprocessing(_cfg(), tmp_path)  # no file: off
    assert off.infer.tta is False and off.infer.largest_component is False
    (tmp_path / POSTPROCESSING_FILE).write_text(json.dumps({"tta": True, "largest_component": [2]}))
    cfg = apply_postprocessing(_cfg(), tmp_path)
    assert cfg.infer.tta is True and cfg.infer.largest_component == (2,)
    explicit = apply_postprocessing(_cfg(tta=False, largest_component=True), tmp_path)
    assert explicit.infer.tta is False and explicit.infer.largest_component is True
    assert load_postprocessing(tmp_path).largest_component == (2,)
    # a fully written config (a run's config.yaml, every default dumped) still leaves the choice to the run
    dumped = validate_config(_cfg().model_dump(mode="json"))
    assert apply_postprocessing(dumped, tmp_path).infer.largest_component == (2,)
    # 2D slices: the component choice made on 3D volumes is not applied
    assert apply_postprocessing(_cfg(), tmp_path, volumes=False).infer.largest_component is False


def test_largest_component_refuses_a_bare_number() -> None:
    with pytest.raises(Exception, match="list of class ids"):
        _cfg(largest_component=1)


def test_a_broken_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / POSTPROCESSING_FILE).write_text(json.dumps({"tta": True}))
    with pytest.raises(DataError,
                       match="invalid postprocessing.json: the key .largest_component. is missing"):
        load_postprocessing(tmp_path)
