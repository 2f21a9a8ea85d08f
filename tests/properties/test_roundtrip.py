"""Round trips: volume -> slices -> volume is the identity (any orientation); palette encode -> decode."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from nibabel import orientations as nio  # noqa: E402

from segkit.config import validate_config  # noqa: E402
from segkit.io.palette import decode_mask, encode_mask, palette_array  # noqa: E402
from segkit.io.volumes import Volume  # noqa: E402
from segkit.prepare.slicing import from_display, reassemble_volume, slice_case, to_display  # noqa: E402


@st.composite
def oriented_label_volume(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    """A random (8..11)^3 label volume (classes 0..3) with a random axis permutation/flip affine and axis."""
    shape = tuple(draw(st.lists(st.integers(8, 11), min_size=3, max_size=3)))
    data = draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, 3)))
    perm = draw(st.permutations([0, 1, 2]))
    flips = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    spacing = draw(st.lists(st.floats(0.3, 4.0), min_size=3, max_size=3))
    affine = np.zeros((4, 4))
    for i in range(3):  # array axis i points along world axis perm[i]
        affine[perm[i], i] = flips[i] * spacing[i]
    affine[:3, 3] = draw(st.lists(st.floats(-200, 200), min_size=3, max_size=3))
    affine[3, 3] = 1.0
    axis = draw(st.integers(0, 2))
    return data, affine, axis


@given(oriented_label_volume(), st.sampled_from(["keep", "drop"]))
def test_volume_slices_volume_is_identity(case: tuple[np.ndarray, np.ndarray, int], empty: str) -> None:
    data, affine, axis = case
    # Independent canonical shape from nibabel, to set the output size equal to the in-plane shape.
    ornt = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt("RAS"))
    can = nio.apply_orientation(data, ornt).shape
    a, b = (can[i] for i in range(3) if i != axis)
    cfg = validate_config(
        {
            "classes": [{"id": i, "name": f"c{i}", "color": [60 * i, 255 - 60 * i, 30]} for i in (1, 2, 3)],
            "prepare": {"axis": axis, "size": [b, a], "empty_slices": empty},
        }
    )
    image = Volume(data.astype(np.float32) * 100.0, affine, None)
    sliced = slice_case(image, Volume(data, affine, None), cfg, "p", np.random.default_rng(0))
    assert all(lbl.shape == (b, a) for _, _, lbl in sliced.slices)
    back = reassemble_volume({k: lbl for k, _, lbl in sliced.slices}, sliced.geometry)
    assert back.shape == data.shape and back.dtype == np.uint8
    np.testing.assert_array_equal(back, data)
    # The recorded affine is the source affine (the volume goes back with its own geometry).
    np.testing.assert_allclose(sliced.geometry.affine_array, affine)


@given(
    hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6), elements=st.integers(0, 255))
)
def test_display_convention_is_invertible(arr: np.ndarray) -> None:
    np.testing.assert_array_equal(from_display(to_display(arr)), arr)
    assert to_display(arr).shape == arr.shape[::-1]


@given(
    st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
        min_size=1,
        max_size=8,
        unique=True,
    ).filter(lambda cs: (0, 0, 0) not in cs),
    st.data(),
)
def test_palette_encode_decode_is_identity(colors: list[tuple[int, int, int]], data: st.DataObject) -> None:
    pal = palette_array(colors)
    labels = data.draw(hnp.arrays(np.uint8, (5, 7), elements=st.integers(0, len(colors))))
    rgb = encode_mask(labels, pal)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(decode_mask(rgb, pal, tolerance=0.0), labels)
