"""segkit.geometry: spacing, axis codes, exact RAS reorientation and its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from segkit.geometry import (
    axis_codes,
    canonical_affine,
    canonical_ornt,
    canonical_shape,
    from_canonical,
    invert_ornt,
    spacing_from_affine,
    to_canonical,
)

LPS = np.array([[-1.5, 0, 0, 70.0], [0, -1.5, 0, 250.0], [0, 0, 2.0, -40.0], [0, 0, 0, 1]])
# Array axes: 0 -> Superior (3 mm), 1 -> Right (0.8 mm), 2 -> Posterior (1.2 mm).
PERMUTED = np.array([[0, 0.8, 0, -10.0], [0, 0, -1.2, 30.0], [3.0, 0, 0, 5.0], [0, 0, 0, 1]])


def test_spacing_and_codes_follow_the_array_axes() -> None:
    assert spacing_from_affine(LPS) == pytest.approx((1.5, 1.5, 2.0))
    assert spacing_from_affine(PERMUTED) == pytest.approx((3.0, 0.8, 1.2))
    assert axis_codes(LPS) == "LPS"
    assert axis_codes(PERMUTED) == "SRP"
    assert axis_codes(np.eye(4)) == "RAS"


def test_lps_to_ras_flips_the_first_two_axes() -> None:
    data = np.arange(4 * 3 * 2).reshape(4, 3, 2)
    ras, ornt = to_canonical(data, LPS)
    assert ornt.tolist() == [[0, -1], [1, -1], [2, 1]]
    # Hand-derived: RAS index i counts from the patient's right, i.e. from the last LPS index.
    assert ras[0, 0, 0] == data[3, 2, 0]
    assert ras[3, 2, 1] == data[0, 0, 1]
    np.testing.assert_array_equal(ras, data[::-1, ::-1, :])
    np.testing.assert_array_equal(from_canonical(ras, ornt), data)


def test_permuted_axes_keep_every_voxel_at_its_world_point() -> None:
    shape = (5, 4, 3)
    data = np.arange(np.prod(shape)).reshape(shape)
    ras, ornt = to_canonical(data, PERMUTED)
    assert ras.shape == (4, 3, 5) == canonical_shape(shape, ornt)
    can_aff = canonical_affine(PERMUTED, shape)
    # The canonical affine is diagonal with positive spacing (R, A, S).
    np.testing.assert_allclose(can_aff[:3, :3], np.diag([0.8, 1.2, 3.0]))
    inv = np.linalg.inv(PERMUTED)
    for idx in [(0, 0, 0), (3, 2, 4), (1, 0, 2), (2, 1, 3)]:
        world = can_aff @ np.array([*idx, 1.0])
        orig = np.rint(inv @ world).astype(int)[:3]
        assert ras[idx] == data[tuple(orig)]
    np.testing.assert_array_equal(from_canonical(ras, ornt), data)


def test_invert_ornt_and_json_lists() -> None:
    ornt = canonical_ornt(PERMUTED)
    inv = invert_ornt(ornt)
    assert invert_ornt(inv).tolist() == ornt.tolist()
    data = np.random.default_rng(0).integers(0, 9, size=(5, 4, 3)).astype(np.uint8)
    ras, _ = to_canonical(data, PERMUTED)
    back = from_canonical(ras, [[int(a), int(f)] for a, f in ornt])  # as stored in dataset.json
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, data)
