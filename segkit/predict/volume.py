"""A volume array in -> class ids (and optionally probabilities) in its original geometry.

Steps of ``predict_volume``:

1. ``segkit.prepare.slicing.volume_to_slices``: the preprocessing ``prepare`` applied (reorientation to RAS,
   slicing axis, display convention, intensity recipe, resize to ``prepare.size``), from a
   ``segkit.prepare.record.Preprocessing`` recipe or a prepared case's recorded ``Geometry``;
2. resize to the model's ``data.image_size`` as the training pipeline does (``segkit.io.slices.fit_image``)
   -- or, for a model trained on patches (``data.patches``), keep the prepared size and let a Gaussian sliding
   window cover it; replicate gray to ``data.channels`` and stack 2.5D neighbours (``model_inputs``);
3. batched prediction (flip TTA optional); the probabilities are resampled (bilinear) to the original slice
   size, then argmax (``resize_probs``);
4. ``reassemble_volume``: undo the display convention and the reorientation.

``segkit infer`` (``segkit.infer.volume``), ``segkit evaluate`` and the post-processing choice all segment
volumes with it; post-processing (``segkit.postprocess``) is applied by them, afterwards.

Example:
    >>> pred = predict_volume(model, load_volume(Path("ct.nii.gz")), spec, cfg, VolumeSettings(batch_size=8))
    >>> pred.labels.shape == pred.geometry.shape
    True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.progress import NULL_PROGRESS, Part, Progress

if TYPE_CHECKING:
    import keras

    from segkit.config import Config
    from segkit.io.volumes import Volume
    from segkit.predict.cascade import Cascade
    from segkit.prepare.record import Geometry, Preprocessing


@dataclass(frozen=True)
class VolumeSettings:
    """How the slices of a volume are predicted.

    Attributes:
        batch_size: slices per model call.
        tta: flip test-time augmentation.
        probabilities: also keep the class probabilities (resampled to the original slice size).
    """

    batch_size: int
    tta: bool = False
    probabilities: bool = False


@dataclass(frozen=True)
class VolumePrediction:
    """Labels of one volume (``predict_volume``) and the slices they came from.

    Attributes:
        labels: (X, Y, Z) uint8 class ids in the input's ORIGINAL array shape and orientation (no
            post-processing).
        stack: (N, H, W) uint8 preprocessed display slices as the model saw them (``data.image_size``, or the
            prepared size with ``data.patches``; a cascade: its fine stage's).
        labels2d: (N, h, w) uint8 predicted ids at the original slice size ``geometry.slice_shape``.
        geometry: geometry of the input (``segkit.prepare.slicing.volume_to_slices``).
        seconds: wall time per stage ("preprocess", "predict", "reassemble").
        probabilities: (X, Y, Z, K) float32 softmax per class in the input's geometry (after TTA and ensemble
            averaging), when asked for.
        crop: ``(r0, r1, c0, c1)`` of the display slices the model segmented (a cascade's fine stage:
            ``segkit.predict.cascade``), background elsewhere; None: whole slices.
        coarse_stack: a cascade's coarse stage's whole display slices (``cascade.coarse_size``); None else.
    """

    labels: npt.NDArray[np.uint8]
    stack: npt.NDArray[np.uint8]
    labels2d: npt.NDArray[np.uint8]
    geometry: Geometry
    seconds: dict[str, float]
    probabilities: npt.NDArray[np.float32] | None = None
    crop: tuple[int, int, int, int] | None = None
    coarse_stack: npt.NDArray[np.uint8] | None = None

    def display_stack(self) -> npt.NDArray[np.uint8]:
        """The slices an overlay draws the labels on: ``stack``, or for a cascade the coarse stage's whole
        slices at the original slice size with the fine stage's crop pasted in at its own resolution
        (``segkit.predict.cascade.composite_display``)."""
        if self.coarse_stack is None:
            return self.stack
        from segkit.predict.cascade import composite_display

        size = (int(self.labels2d.shape[1]), int(self.labels2d.shape[2]))
        return composite_display(self.coarse_stack, self.stack, self.crop, size)


def case_id_of(path: Path) -> str:
    """``ct.nii.gz`` -> ``ct`` (strips the volume suffix)."""
    from segkit.io.volumes import volume_suffix

    name = Path(path).name
    sfx = volume_suffix(Path(path))
    return name[: -len(sfx)] if sfx else Path(path).stem


def model_inputs(
    stack: npt.NDArray[np.uint8], indices: Sequence[int], channels: int, context: int
) -> npt.NDArray[np.float32]:
    """Model input for some slices of a volume, as the training pipeline builds it.

    Args:
        stack: (N, H, W) uint8 display slices of one volume, already at the model size.
        indices: which slices (positions in ``stack``).
        channels: ``data.channels`` (gray replicated to 3 when 3).
        context: ``data.context_slices`` k; neighbours -k..k (clamped at the ends) become extra channels.

    Returns:
        (len(indices), H, W, channels * (2k + 1)) float32 in 0..1.
    """
    from segkit.io.slices import stack_context, to_unit_float

    n = stack.shape[0]
    planes = []
    for i in indices:
        rows = [min(max(i + d, 0), n - 1) for d in range(-context, context + 1)]
        planes.append(stack_context([stack[r] for r in rows], channels))
    return to_unit_float(np.stack(planes))  # one float conversion for the batch


def resize_probs(probs: npt.NDArray[np.float32], size: Sequence[int]) -> npt.NDArray[np.float32]:
    """(H, W, K) probabilities resampled (bilinear) to ``size`` = (h, w); unchanged when already that size.

    Labels restored this way (resample the probabilities, then argmax) follow the predicted boundary between
    pixels of the model's grid instead of repeating whole pixels, as nnU-Net exports its predictions.
    """
    import cv2

    h, w = int(size[0]), int(size[1])
    if probs.shape[:2] == (h, w):
        return probs
    out = cv2.resize(np.ascontiguousarray(probs, dtype=np.float32), (w, h),
                     interpolation=cv2.INTER_LINEAR).astype(np.float32, copy=False)
    return out[..., None] if out.ndim == 2 else out


def predict_volume_slices(
    model: keras.Model,
    stack: npt.NDArray[np.uint8],
    cfg: Config,
    settings: VolumeSettings,
    progress: Progress = NULL_PROGRESS,
    out_size: Sequence[int] | None = None,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32] | None]:
    """(N, H, W) uint8 slices -> class ids, one batch of probabilities in memory at a time.

    Args:
        model: a loaded model.
        stack: the display slices at the model's scale.
        cfg: the config (``data.channels``, ``data.context_slices``, ``infer.overlap``).
        settings: batch size, TTA, and whether to keep the probabilities.
        progress: advanced by the number of slices done after each batch (never started here: the caller's
            task).
        out_size: (h, w) of the returned label slices: the probabilities are resampled to it before the argmax
            (``resize_probs``); default the input size.

    Returns:
        ``(labels, probabilities)``: (N, h, w) uint8 class ids, and the resampled (N, h, w, K) float32
        probabilities when ``settings.probabilities`` (else None).
    """
    from segkit.predict.slices import make_predictor, predict_probs

    batch_size = settings.batch_size
    predictor = make_predictor(model, batch_size)
    oh, ow = (int(out_size[0]), int(out_size[1])) if out_size is not None else stack.shape[1:3]
    out = np.zeros((stack.shape[0], oh, ow), dtype=np.uint8)
    kept: npt.NDArray[np.float32] | None = None
    for s in range(0, stack.shape[0], batch_size):
        idx = list(range(s, min(s + batch_size, stack.shape[0])))
        x = model_inputs(stack, idx, cfg.data.channels, cfg.data.context_slices)
        probs = predict_probs(model, x, batch_size, settings.tta, cfg.infer.overlap, predictor)
        for j, p in enumerate(probs):
            full = resize_probs(p, (oh, ow))
            out[s + j] = full.argmax(-1).astype(np.uint8)
            if settings.probabilities:
                if kept is None:
                    kept = np.zeros((stack.shape[0], oh, ow, full.shape[-1]), dtype=np.float32)
                kept[s + j] = full
        progress.advance(len(idx))
    return out, kept


def predict_volume(
    model: keras.Model | Cascade,
    volume: Volume,
    spec: Preprocessing | Geometry,
    cfg: Config,
    settings: VolumeSettings,
    progress: Progress = NULL_PROGRESS,
    crop: tuple[int, int, int, int] | None = None,
) -> VolumePrediction:
    """Segment every slice of a volume and put the labels back into its original geometry.

    Args:
        model: a loaded model, or a ``segkit.predict.cascade.Cascade`` (then ``predict_cascade`` runs: the
            coarse stage chooses ``crop``, then the fine stage's own foreground, ``cascade.refine_passes``).
            With ``prepare.extra_axes`` the volume is segmented along every view and the probabilities
            averaged (``predict_views``).
        volume: the (X, Y, Z) image as stored in the file (HU for CT), its (4, 4) voxel -> RAS affine, and its
            file (named in errors and in the progress task; ``None`` for an array in memory).
        spec: the preprocessing recipe for ``volume_to_slices``: a run's recipe
            (``segkit.infer.volume.preprocessing_spec``), or the ``Geometry`` of a prepared case
            (``dataset.json``) to repeat that case's recorded recipe.
        cfg: the config (``data.image_size``, channels, context slices, ``infer.overlap``, classes).
        settings: batch size, flip TTA, and whether to return the (X, Y, Z, K) class probabilities in the
            input's geometry.
        progress: started once with the number of slices (every view's with ``prepare.extra_axes``;
            described by the file name, else ``"volume"``) before prediction, then advanced by the slices done
            after each batch; pass
            ``segkit.progress.Part(p)`` to count the slices into a task already started.
        crop: segment only this box of every display slice (``segkit.prepare.roi``), resized to the model's
            size; background outside it.

    Returns:
        ``VolumePrediction``; ``labels.shape == volume.data.shape``.

    Raises:
        DataError: NaN/inf intensities, or labels that do not fit the input's shape.
    """
    from segkit.io.slices import fit_image
    from segkit.predict.cascade import Cascade, predict_cascade
    from segkit.prepare.slicing import reassemble_volume, volume_to_slices

    if isinstance(model, Cascade):
        return predict_cascade(model, volume, spec, cfg, settings, progress)
    if cfg.prepare.extra_axes and crop is None:
        return predict_views(model, volume, spec, cfg, settings, progress)
    path, data = volume.path, volume.data
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    sliced = volume_to_slices(data, volume.affine, spec, case_id_of(path) if path is not None else "volume",
                              path=path, crop=crop)
    # data.patches: the prepared scale (a sliding window covers the slice); else the model input size by the
    # training pipeline's resize (applied here to the uint8 slice; training resizes the decoded float image)
    stack = np.stack([fit_image(img, cfg) for _, img, _ in sliced.slices])
    t["preprocess"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress.start(stack.shape[0], path.name if path is not None else "volume")
    whole = sliced.geometry.slice_shape
    out_size = whole if crop is None else (crop[1] - crop[0], crop[3] - crop[2])
    labels2d, probs2d = predict_volume_slices(model, stack, cfg, settings, progress, out_size=out_size)
    t["predict"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if crop is not None:  # back into the whole slices: background outside the crop
        from segkit.prepare.roi import paste

        labels2d = np.stack([paste(s, crop, whole) for s in labels2d])
        if probs2d is not None:
            bg = np.eye(probs2d.shape[-1], dtype=np.float32)[0]
            probs2d = np.stack([paste(p, crop, whole, bg) for p in probs2d])
    full = replace(sliced.geometry, crop=None)  # the slices are whole again
    labels = reassemble_volume({k: labels2d[i] for i, (k, _, _) in enumerate(sliced.slices)}, full)
    if labels.shape != np.shape(data):
        raise DataError(f"reassembled labels {labels.shape} differ from the input {np.shape(data)}",
                        path=path)
    probs = None
    if probs2d is not None:
        from segkit.prepare.slicing import reassemble_probabilities

        probs = reassemble_probabilities(probs2d, sliced.geometry)
        del probs2d
    t["reassemble"] = time.perf_counter() - t0
    return VolumePrediction(labels.astype(np.uint8, copy=False), stack, labels2d, sliced.geometry, t, probs,
                            crop)


def slices_visited(geometry: Geometry, cfg: Config) -> int:
    """How many slices ``predict_volume`` segments in a volume of ``geometry`` (the progress unit): those
    along the geometry's axis, plus those along each of ``prepare.extra_axes``."""
    can = geometry.canonical_shape
    return int(can[geometry.axis]) + sum(int(can[a]) for a in cfg.prepare.extra_axes)


def view_spec(spec: Preprocessing | Geometry, axis: int) -> Preprocessing | Geometry:
    """The recipe of one extra view (``prepare.extra_axes``): ``spec`` sliced along ``axis``. A
    ``Preprocessing`` keeps its ``prepare`` section (MR percentiles and CT windows are taken from the whole
    volume, so every view sees the same intensities); a prepared case's ``Geometry`` keeps its recorded
    intensity recipe and size."""
    from segkit.prepare.record import Preprocessing

    if isinstance(spec, Preprocessing):
        return Preprocessing(spec.prepare.view(axis), spec.modality)
    return replace(spec, axis=axis, crop=None)


def predict_views(
    model: keras.Model,
    volume: Volume,
    spec: Preprocessing | Geometry,
    cfg: Config,
    settings: VolumeSettings,
    progress: Progress = NULL_PROGRESS,
) -> VolumePrediction:
    """Multi-planar inference (``prepare.extra_axes``): segment the volume along ``prepare.axis`` (``spec``)
    and along every extra axis (``view_spec``), average the class probabilities of the views in the volume's
    own geometry, then take the argmax.

    Returns:
        The main view's ``VolumePrediction`` (``stack``, ``geometry``) with the averaged ``labels``,
        ``labels2d`` re-sliced from them along ``prepare.axis``, ``probabilities`` (when asked for) the
        average, and ``seconds`` summed over the views. ``progress`` counts the slices of every view.
    """
    from segkit.geometry import to_canonical
    from segkit.prepare.record import Geometry
    from segkit.prepare.slicing import display_slices

    single = cfg.model_copy(update={"prepare": cfg.prepare.view()})
    keep = replace(settings, probabilities=True)
    axes = [int(a) for a in cfg.prepare.extra_axes]
    canonical = to_canonical(np.asarray(volume.data), volume.affine, copy=False)[0].shape  # a view
    main_axis = int(spec.axis if isinstance(spec, Geometry) else spec.prepare.axis)
    n = sum(int(canonical[a]) for a in (main_axis, *axes))
    progress.start(n, volume.path.name if volume.path is not None else "volume")
    main = predict_volume(model, volume, spec, single, keep, Part(progress))
    total = main.probabilities
    assert total is not None
    seconds = dict(main.seconds)
    for axis in axes:
        other = predict_volume(model, volume, view_spec(spec, axis), single, keep, Part(progress))
        assert other.probabilities is not None
        total += other.probabilities
        seconds = {k: v + other.seconds.get(k, 0.0) for k, v in seconds.items()}
        del other
    total /= 1 + len(axes)
    labels = total.argmax(-1).astype(np.uint8)
    lbl_ras = to_canonical(labels, volume.affine, copy=False)[0]
    labels2d = np.stack([s for _, s in display_slices(lbl_ras, main_axis, range(lbl_ras.shape[main_axis]))])
    return replace(main, labels=labels, labels2d=labels2d,
                   probabilities=total if settings.probabilities else None, seconds=seconds)
