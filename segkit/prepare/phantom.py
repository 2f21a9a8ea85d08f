"""Synthetic CT-like phantoms: the data of ``make demo`` and of most tests.

Each case is a body ellipse (soft tissue ~0..40 HU, air -1000 HU outside) holding three labelled structures
that match ``configs/demo.yaml``:

- 1 ventricle: a large ellipsoid, ~300 HU;
- 2 atrium: a medium ellipsoid touching the ventricle, ~200 HU;
- 3 vessel: a tube of radius 2.5-3.5 voxels running along z over part of the volume, curving, ~400 HU.

Sizes, positions and contrasts are jittered per case; Gaussian noise and a smooth multiplicative bias field
are added. The structures cover only the middle part of the z range, so there are label-free slices too.
The affine is deliberately not the identity: anisotropic 1.2 x 1.2 x 2.5 mm voxels, LPS-like array axes
(x and y flipped against RAS) and a non-zero origin, so orientation bugs show up.

Everything is drawn from the ``np.random.Generator`` given (never the global state): the same seed gives
the same volumes. A 64 x 64 x 40 case takes a few milliseconds.

Example:
    >>> image, label, affine = make_phantom(np.random.default_rng(0))
    >>> image.dtype, label.dtype, sorted(np.unique(label))
    (dtype('float32'), dtype('uint8'), [0, 1, 2, 3])
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from segkit.io.volumes import save_volume
from segkit.seeds import Stream, generator

log = logging.getLogger(__name__)

SPACING = (1.2, 1.2, 2.5)
AIR_HU = -1000.0


def phantom_affine(
    shape: tuple[int, int, int], spacing: tuple[float, float, float] = SPACING
) -> npt.NDArray[np.float64]:
    """LPS-like (4, 4) affine: array x grows to patient Left, y to Posterior, z to Superior; centred
    origin."""
    sx, sy, sz = spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [
        sx * (shape[0] - 1) / 2 + 10.0,
        sy * (shape[1] - 1) / 2 - 20.0,
        -sz * (shape[2] - 1) / 2 + 35.0,
    ]
    return affine


def make_phantom(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = (64, 64, 40),
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """One synthetic CT case.

    Args:
        rng: source of every random draw.
        shape: (X, Y, Z) array shape; at least 16 x 16 x 8.

    Returns:
        ``(image (X, Y, Z) float32 in HU, label (X, Y, Z) uint8 in {0, 1, 2, 3}, affine (4, 4) float64)``.
    """
    nx, ny, nz = (int(s) for s in shape)
    if nx < 16 or ny < 16 or nz < 8:
        raise ValueError(f"phantom shape must be at least (16, 16, 8), got {shape}")
    # Voxel coordinates normalised so that in-plane geometry scales with the shape (64 px reference).
    px = nx / 64.0
    py = ny / 64.0
    x = np.arange(nx, dtype=np.float32)[:, None, None]
    y = np.arange(ny, dtype=np.float32)[None, :, None]
    z = np.arange(nz, dtype=np.float32)[None, None, :]
    zf = np.arange(nz, dtype=np.float32) / (nz - 1)  # 0..1 along z

    # === Body ===
    cx, cy = nx / 2 + rng.uniform(-2, 2) * px, ny / 2 + rng.uniform(-2, 2) * py
    ax_b, ay_b = rng.uniform(0.40, 0.46) * nx, rng.uniform(0.33, 0.40) * ny
    body2d = ((x[:, :, 0] - cx) / ax_b) ** 2 + ((y[:, :, 0] - cy) / ay_b) ** 2 <= 1.0
    tissue = rng.uniform(0.0, 40.0)
    image = np.full(shape, AIR_HU, dtype=np.float32)
    image[body2d] = tissue
    label = np.zeros(shape, dtype=np.uint8)

    # === Ventricle (1): large ellipsoid left of centre, in the middle of the z range ===
    z_mid = rng.uniform(0.42, 0.55) * nz
    v_r = np.array([rng.uniform(9, 12) * px, rng.uniform(8, 11) * py, rng.uniform(0.17, 0.22) * nz])
    v_c = np.array([cx + rng.uniform(2, 6) * px, cy + rng.uniform(-3, 1) * py, z_mid])
    ventricle = _ellipsoid(x, y, z, v_c, v_r)

    # === Atrium (2): medium ellipsoid touching the ventricle, shifted up in z and sideways ===
    a_r = np.array([rng.uniform(6, 8) * px, rng.uniform(5.5, 7.5) * py, rng.uniform(0.11, 0.15) * nz])
    direction = np.array([rng.uniform(-0.9, -0.5), rng.uniform(-0.5, 0.2), rng.uniform(0.5, 0.9)])
    direction /= np.linalg.norm(direction)
    # Distance along ``direction`` at which two ellipsoids just touch (0.85 = slight overlap -> adjacent).
    reach = 0.85 * (1 / np.linalg.norm(direction / v_r) + 1 / np.linalg.norm(direction / a_r))
    a_c = v_c + direction * reach
    atrium = _ellipsoid(x, y, z, a_c, a_r)

    # === Vessel (3): curving tube along z over part of the volume, posterior to the heart ===
    z0, z1 = rng.uniform(0.08, 0.2) * nz, rng.uniform(0.72, 0.88) * nz
    radius = rng.uniform(2.5, 3.5) * min(px, py)
    phase = rng.uniform(0, 2 * np.pi)
    amp_x, amp_y = rng.uniform(2, 5) * px, rng.uniform(1, 3) * py
    tx = cx - rng.uniform(8, 12) * px + amp_x * np.sin(2 * np.pi * 0.8 * zf + phase)
    ty = cy + rng.uniform(12, 15) * py + amp_y * np.cos(2 * np.pi * 0.6 * zf + phase)
    d2 = (x - tx[None, None, :]) ** 2 + (y - ty[None, None, :]) ** 2
    vessel = (d2 <= radius**2) & (z >= z0) & (z <= z1)

    # Paint order: atrium, ventricle over it, vessel on top; everything stays inside the body.
    inside = body2d[:, :, None]
    for mask, cls, hu in (
        (atrium, 2, 200.0 + rng.uniform(-25, 25)),
        (ventricle, 1, 300.0 + rng.uniform(-25, 25)),
        (vessel, 3, 400.0 + rng.uniform(-25, 25)),
    ):
        m = mask & inside
        label[m] = cls
        image[m] = hu

    # === Bias field (smooth, multiplicative on attenuation above air) and noise ===
    bias = _bias_field(rng, shape)
    image = (image - AIR_HU) * bias + AIR_HU
    image += rng.normal(0.0, rng.uniform(12.0, 20.0), size=shape).astype(np.float32)
    return image.astype(np.float32), label, phantom_affine((nx, ny, nz))


def _ellipsoid(
    x: npt.NDArray, y: npt.NDArray, z: npt.NDArray, c: npt.NDArray, r: npt.NDArray
) -> npt.NDArray[np.bool_]:
    return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int]) -> npt.NDArray[np.float32]:
    """Smooth multiplicative field ~1 +- 0.05: a random low-order polynomial in normalised coordinates."""
    nx, ny, nz = shape
    u = np.linspace(-1, 1, nx, dtype=np.float32)[:, None, None]
    v = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    w = np.linspace(-1, 1, nz, dtype=np.float32)[None, None, :]
    c = rng.uniform(-1, 1, size=6).astype(np.float32)
    field = c[0] * u + c[1] * v + c[2] * w + c[3] * u * v + c[4] * (u**2 - 0.33) + c[5] * (v**2 - 0.33)
    return (1.0 + 0.05 * field / 3.0).astype(np.float32)


def write_phantom_cases(
    out_dir: Path,
    n: int,
    seed: int,
    shape: tuple[int, int, int] = (64, 64, 40),
) -> list[tuple[Path, Path]]:
    """Write ``n`` phantom cases as ``case_XXX_image.nii.gz`` / ``case_XXX_label.nii.gz`` (atomically).

    Case ``i`` draws from ``segkit.seeds``' PHANTOM stream, ``SeedSequence(seed, spawn_key=(i,))`` (=
    ``SeedSequence(seed).spawn(n)[i]``), so case ``i`` is the same whatever ``n`` is, and the same seed gives
    identical files.

    Args:
        out_dir: folder to write into (created).
        n: number of cases.
        seed: base seed.
        shape: (X, Y, Z) of each volume.

    Returns:
        ``[(image_path, label_path), ...]`` sorted by case id.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[Path, Path]] = []
    for i in range(n):
        image, label, affine = make_phantom(generator(seed, Stream.PHANTOM, i), shape)
        img_path = out_dir / f"case_{i:03d}_image.nii.gz"
        lbl_path = out_dir / f"case_{i:03d}_label.nii.gz"
        save_volume(img_path, image, affine)
        save_volume(lbl_path, label, affine)
        pairs.append((img_path, lbl_path))
    log.info("wrote %d phantom cases to %s", n, out_dir)
    return pairs
