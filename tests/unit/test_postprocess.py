"""Post-processing decided on validation: the decision rule by hand, and how a run's choice is applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segkit.config import validate_config
from segkit.errors import DataError
from segkit.postprocess import POSTPROCESSING_FILE, apply_postprocessing, decide, load_postprocessing


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
