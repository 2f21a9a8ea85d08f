"""Online augmentation of (image, mask) pairs with albumentations, seeded per sample.

Every transform of ``cfg.augment`` fires with its own probability ``p`` (0 = off). Geometric transforms
(flips, rotation, 90-degree rotation, scale, shift, shear, elastic, grid and optical distortion) are drawn
once and applied to the image (``augment.interpolation``, linear by default) and to the mask (nearest
neighbour, fill 0 = background, dtype kept), so the two stay aligned and no new class appears. Intensity
transforms (brightness, contrast, gamma, noise, blur) touch the image only. The image is clipped back to 0..1.

Randomness: each call gets a seed derived from ``(cfg.seed, epoch, index)`` with ``np.random.SeedSequence``;
every transform receives its own child seed (albumentations' ``Compose.set_random_seed`` would give all
transforms the same seed, so e.g. hflip and vflip would always fire together). The same seed, epoch and
sample index give the same output in any process and thread; different samples or epochs differ.

Library: albumentations 2.x (``Affine``, ``ElasticTransform``, ``GridDistortion``, ``OpticalDistortion``,
...; ``mask_interpolation`` defaults to ``cv2.INTER_NEAREST``), called from ``tf.numpy_function`` by
``segkit.data.pipeline``.

Example:
    >>> aug = Augmenter(cfg)
    >>> image2, mask2 = aug(image, mask, epoch=0, index=17)   # (H, W, C) float32, (H, W) uint8
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from segkit.seeds import Stream, seed_sequence

if TYPE_CHECKING:  # pragma: no cover
    from segkit.config import AugmentConfig, Config

_Int = TypeVar("_Int", bound=np.integer)  # the mask's dtype, which augmentation keeps


def _fmt(v: float) -> str:
    return f"{v:g}"


def describe_augmentation(cfg: Config) -> list[str]:
    """One line per active transform with its probability and range, in the order they are applied.

    Example:
        ``["hflip p=0.5", "rotate p=0.3 angle -15..15 deg", ...]``; ``[]`` when augmentation is off.
    """
    a = cfg.augment
    if not a.enabled:
        return []
    lines: list[str] = []

    def add(name: str, p: float, text: str = "") -> None:
        if p > 0:
            lines.append(f"{name} p={_fmt(p)}" + (f" {text}" if text else ""))

    add("hflip", a.hflip.p)
    add("vflip", a.vflip.p)
    h, w = cfg.data.image_size
    add("rotate90", a.rotate90.p, "k in {0,1,2,3} x 90 deg" if h == w else "180 deg (non-square input)")
    add("rotate", a.rotate.p, f"angle {_fmt(-a.rotate.limit)}..{_fmt(a.rotate.limit)} deg")
    add("scale", a.scale.p, f"factor {_fmt(a.scale.range[0])}..{_fmt(a.scale.range[1])} (<1 shrink, >1 zoom)")
    add("shift", a.shift.p, f"up to {_fmt(a.shift.limit)} of the height and width")
    add("shear", a.shear.p, f"angle {_fmt(-a.shear.limit)}..{_fmt(a.shear.limit)} deg (x and y)")
    add("elastic", a.elastic.p, f"alpha {_fmt(a.elastic.alpha)} px, sigma {_fmt(a.elastic.sigma)} px")
    add(
        "grid_distortion",
        a.grid_distortion.p,
        f"{a.grid_distortion.num_steps} steps, limit +-{_fmt(a.grid_distortion.limit)}",
    )
    k0, k1 = a.optical_distortion.k
    add(
        "optical_distortion", a.optical_distortion.p, f"k {_fmt(k0)}..{_fmt(k1)} (k>0 barrel, k<0 pincushion)"
    )
    add("brightness", a.brightness.p, f"shift {_fmt(-a.brightness.limit)}..{_fmt(a.brightness.limit)}")
    add("contrast", a.contrast.p, f"factor {_fmt(1 - a.contrast.limit)}..{_fmt(1 + a.contrast.limit)}")
    add("gamma", a.gamma.p, f"gamma {_fmt(a.gamma.range[0])}..{_fmt(a.gamma.range[1])}")
    add("noise", a.noise.p, f"gaussian std 0..{_fmt(a.noise.std)}")
    add("blur", a.blur.p, f"gaussian sigma {_fmt(a.blur.sigma[0])}..{_fmt(a.blur.sigma[1])} px")
    return lines


def build_transforms(a: AugmentConfig, image_size: tuple[int, int]) -> list[Any]:
    """The albumentations transforms of ``a`` with p > 0, geometric first, then intensity.

    Args:
        a: the augment section.
        image_size: (height, width); 90-degree rotation of a non-square image is restricted to 180 degrees so
            the shape is kept.

    Returns:
        A list of albumentations transforms (empty when nothing is active).
    """
    import albumentations as A

    const = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": 0}
    image_interp = cv2.INTER_NEAREST if a.interpolation == "nearest" else cv2.INTER_LINEAR
    interp = {"interpolation": image_interp, "mask_interpolation": cv2.INTER_NEAREST}
    t: list[Any] = []
    if a.hflip.p > 0:
        t.append(A.HorizontalFlip(p=a.hflip.p))
    if a.vflip.p > 0:
        t.append(A.VerticalFlip(p=a.vflip.p))
    if a.rotate90.p > 0:
        if image_size[0] == image_size[1]:
            t.append(A.RandomRotate90(p=a.rotate90.p))
        else:
            t.append(A.Affine(rotate=(180.0, 180.0), p=a.rotate90.p, **interp, **const))
    if a.rotate.p > 0:
        t.append(A.Affine(rotate=(-a.rotate.limit, a.rotate.limit), p=a.rotate.p, **interp, **const))
    if a.scale.p > 0:
        t.append(A.Affine(scale=tuple(a.scale.range), keep_ratio=True, p=a.scale.p, **interp, **const))
    if a.shift.p > 0:
        move = (-a.shift.limit, a.shift.limit)
        t.append(A.Affine(translate_percent={"x": move, "y": move}, p=a.shift.p, **interp, **const))
    if a.shear.p > 0:
        shear = (-a.shear.limit, a.shear.limit)
        t.append(A.Affine(shear={"x": shear, "y": shear}, p=a.shear.p, **interp, **const))
    if a.elastic.p > 0:
        t.append(
            A.ElasticTransform(alpha=a.elastic.alpha, sigma=a.elastic.sigma, p=a.elastic.p, **interp, **const)
        )
    if a.grid_distortion.p > 0:
        g = a.grid_distortion
        t.append(
            A.GridDistortion(
                num_steps=g.num_steps, distort_limit=(-g.limit, g.limit), p=g.p, **interp, **const
            )
        )
    if a.optical_distortion.p > 0:
        # albumentations' camera model: negative coefficient = barrel, positive = pincushion; segkit's k is
        # the usual radial-lens convention (k > 0 barrel), hence the sign flip.
        k0, k1 = a.optical_distortion.k
        t.append(
            A.OpticalDistortion(
                distort_limit=(-k1, -k0), mode="camera", p=a.optical_distortion.p, **interp, **const
            )
        )
    if a.brightness.p > 0:
        lim = a.brightness.limit
        t.append(
            A.RandomBrightnessContrast(
                brightness_limit=(-lim, lim), contrast_limit=(0.0, 0.0), p=a.brightness.p
            )
        )
    if a.contrast.p > 0:
        lim = a.contrast.limit
        t.append(
            A.RandomBrightnessContrast(
                brightness_limit=(0.0, 0.0), contrast_limit=(-lim, lim), p=a.contrast.p
            )
        )
    if a.gamma.p > 0:
        g0, g1 = a.gamma.range
        t.append(A.RandomGamma(gamma_limit=(g0 * 100.0, g1 * 100.0), p=a.gamma.p))
    if a.noise.p > 0:
        t.append(A.GaussNoise(std_range=(0.0, a.noise.std), p=a.noise.p))
    if a.blur.p > 0:
        t.append(A.GaussianBlur(blur_limit=0, sigma_limit=tuple(a.blur.sigma), p=a.blur.p))
    return t


class Augmenter:
    """Seeded (image, mask) augmentation for one config; safe to call from several threads.

    Args:
        cfg: uses ``cfg.augment``, ``cfg.data.image_size`` and ``cfg.seed``.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.names = describe_augmentation(cfg)
        self._local = threading.local()

    def _compose(self) -> Any:
        comp = getattr(self._local, "compose", None)
        if comp is None:
            import albumentations as A

            transforms = (build_transforms(self.cfg.augment, self.cfg.data.image_size)
                          if self.cfg.augment.enabled else [])
            comp = A.Compose(transforms, p=1.0, mask_interpolation=cv2.INTER_NEAREST, strict=True)
            self._local.compose = comp
        return comp

    def seed_for(self, epoch: int, index: int) -> np.random.SeedSequence:
        """The seed of sample ``index`` in epoch ``epoch``: the ``Stream.AUGMENT`` stream of ``segkit.seeds``,
        ``SeedSequence([cfg.seed, 1, epoch, index])``."""
        return seed_sequence(self.cfg.seed, Stream.AUGMENT, int(epoch), int(index))

    def __call__(
        self, image: npt.NDArray[np.float32], mask: npt.NDArray[_Int], *, epoch: int, index: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[_Int]]:
        """Augment one sample with the seed of (cfg.seed, epoch, index); see ``apply``."""
        return self.apply(image, mask, self.seed_for(epoch, index))

    def apply(
        self, image: npt.NDArray[np.float32], mask: npt.NDArray[_Int], seed: np.random.SeedSequence | int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[_Int]]:
        """Augment one sample.

        Args:
            image: (H, W, C) float32 in 0..1 (any C; 2.5D stacks included).
            mask: (H, W) integer class ids.
            seed: a SeedSequence or int; the same seed gives the same output.

        Returns:
            image (H, W, C) float32 clipped to 0..1; mask (H, W) with the input's dtype and a label set that
            is a subset of the input's.
        """
        comp = self._compose()
        if not comp.transforms:
            return image, mask
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
        words = ss.generate_state(len(comp.transforms) + 1, dtype=np.uint32)
        comp.set_random_seed(int(words[0]))  # Compose-level generator (its own p draw)
        for tr, w in zip(comp.transforms, words[1:], strict=True):
            tr.set_random_seed(int(w))
        dtype = mask.dtype
        out = comp(
            image=np.ascontiguousarray(image, dtype=np.float32),
            mask=np.ascontiguousarray(mask, dtype=np.uint8),
        )
        img = out["image"]
        if img.ndim == 2:
            img = img[..., None]
        return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False), out["mask"].astype(dtype, copy=False)
