"""NIfTI/NRRD volume in -> label NIfTI out, in the input's exact shape and affine.

Steps of ``infer_volume``:

1. ``load_volume`` (a 2D or 4D file is a one-line ``DataError``);
2. ``segkit.prepare.slicing.volume_to_slices``: the preprocessing ``prepare`` applied (reorientation to RAS,
   slicing axis, display convention, intensity recipe, resize to ``prepare.size``): a
   ``segkit.prepare.record.Preprocessing`` read from the run's ``preprocessing.json`` or the dataset's
   ``dataset.json`` when one exists, else taken from the config (``preprocessing_spec``);
3. resize to the model's ``data.image_size`` as the training pipeline does (``segkit.io.slices.fit_image``)
   -- or, for a model trained on patches (``data.patches``), keep the prepared size and let a Gaussian sliding
   window cover it; replicate gray to ``data.channels`` and stack 2.5D neighbours;
4. batched prediction (flip TTA optional); the probabilities are resampled (bilinear) to the original slice
   size, then argmax (``resize_probs``);
5. ``reassemble_volume``: undo the display convention and the reorientation;
6. optional largest-connected-component clean-up per class;
7. write ``<case>_seg.nii.gz`` (uint8 labels, the input's affine) and ``<case>_overlay.png`` (a montage);
   existing outputs are refused unless ``overwrite`` (``segkit infer --overwrite``).

Steps 2-6 are ``predict_volume`` (array + affine in, labels in the original geometry out), which
``segkit.evaluate.run`` also calls to score every slice of a test volume exactly as ``segkit infer`` segments it.

Example:
    >>> res = infer_volume(model, Path("ct.nii.gz"), cfg, Path("out"))
    >>> res.seg_path
    PosixPath('out/ct_seg.nii.gz')
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    import keras

    from segkit.config import Config
    from segkit.prepare.record import Geometry, Preprocessing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VolumeResult:
    """What ``infer_volume`` wrote.

    Attributes:
        case_id: input file name without its volume suffix.
        seg_path: the label NIfTI (uint8, input shape and affine).
        montage_path: the overlay montage PNG.
        shape: (X, Y, Z) shape of the input and of the labels.
        affine: (4, 4) affine of the input and of the labels.
        voxels_per_class: ``{class_id: voxel count}`` of the written labels.
        seconds: wall time per stage ("preprocess", "predict", "reassemble", "write").
        probs_path: ``<case>_probs.nii.gz`` when probabilities were saved.
    """

    case_id: str
    seg_path: Path
    montage_path: Path
    shape: tuple[int, int, int]
    affine: npt.NDArray[np.float64]
    voxels_per_class: dict[int, int]
    seconds: dict[str, float]
    probs_path: Path | None = None


@dataclass(frozen=True)
class VolumePrediction:
    """Labels of one volume (``predict_volume``) and the slices they came from.

    Attributes:
        labels: (X, Y, Z) uint8 class ids in the input's ORIGINAL array shape and orientation.
        stack: (N, H, W) uint8 preprocessed display slices as the model saw them (``data.image_size``, or the
            prepared size with ``data.patches``).
        labels2d: (N, h, w) uint8 predicted ids at the original slice size ``geometry.slice_shape`` (before
            largest-component clean-up).
        geometry: geometry of the input (``segkit.prepare.slicing.volume_to_slices``).
        seconds: wall time per stage ("preprocess", "predict", "reassemble").
        probabilities: (X, Y, Z, K) float32 softmax per class in the input's geometry (after TTA and ensemble
            averaging, before the largest-component clean-up), when asked for.
    """

    labels: npt.NDArray[np.uint8]
    stack: npt.NDArray[np.uint8]
    labels2d: npt.NDArray[np.uint8]
    geometry: Geometry
    seconds: dict[str, float]
    probabilities: npt.NDArray[np.float32] | None = None


def case_id_of(path: Path) -> str:
    """``ct.nii.gz`` -> ``ct`` (strips the volume suffix)."""
    from segkit.io.volumes import volume_suffix

    name = Path(path).name
    sfx = volume_suffix(Path(path))
    return name[: -len(sfx)] if sfx else Path(path).stem


def preprocessing_spec(cfg: Config) -> Preprocessing:
    """The recipe ``prepare`` used for the model's training data: the copy the run keeps
    (``<train.run_dir>/preprocessing.json``, written by ``train``; it still holds when the dataset was prepared
    again since), else the dataset's ``dataset.json``, else the config itself.

    Raises:
        DataError: the file read is unreadable, lacks ``prepare`` / ``modality`` or has an invalid ``prepare``
            section (one line naming the file).
    """
    import json

    from segkit.prepare.manifest import MANIFEST_FILE, load_manifest
    from segkit.prepare.record import Preprocessing

    kept = Path(cfg.train.run_dir) / "preprocessing.json"
    if kept.is_file():
        hint = "delete it to use data.dir's dataset.json, or train the run again"
        try:
            obj = json.loads(kept.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the run's preprocessing recipe: {e}", path=kept, hint=hint) from e
        spec = Preprocessing.from_json(obj, path=kept, hint=hint)
        logger.info("preprocessing from %s", kept)
        return spec
    manifest_path = Path(cfg.data.dir) / MANIFEST_FILE
    if manifest_path.is_file():
        spec = Preprocessing.from_json(load_manifest(Path(cfg.data.dir)), path=manifest_path)
        logger.info("preprocessing from %s", manifest_path)
        return spec
    return Preprocessing.from_config(cfg)


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
    batch_size: int,
    tta: bool = False,
    progress: Progress = NULL_PROGRESS,
    out_size: Sequence[int] | None = None,
    keep_probabilities: bool = False,
) -> npt.NDArray[np.uint8] | tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """(N, H, W) uint8 slices -> class ids, one batch of probabilities in memory at a time.

    Args:
        progress: advanced by the number of slices done after each batch (never started here: the caller's
            task).
        out_size: (h, w) of the returned label slices: the probabilities are resampled to it before the argmax
            (``resize_probs``); default the input size.
        keep_probabilities: also return the resampled probabilities (N, h, w, K) float32.

    Returns:
        (N, h, w) uint8 class ids (and the probabilities when ``keep_probabilities``).
    """
    from segkit.infer.predict import make_predictor, predict_probs

    predictor = make_predictor(model, batch_size)
    oh, ow = (int(out_size[0]), int(out_size[1])) if out_size is not None else stack.shape[1:3]
    out = np.zeros((stack.shape[0], oh, ow), dtype=np.uint8)
    kept: npt.NDArray[np.float32] | None = None
    for s in range(0, stack.shape[0], batch_size):
        idx = list(range(s, min(s + batch_size, stack.shape[0])))
        x = model_inputs(stack, idx, cfg.data.channels, cfg.data.context_slices)
        probs = predict_probs(model, x, batch_size, tta, cfg.infer.overlap, predictor)
        for j, p in enumerate(probs):
            full = resize_probs(p, (oh, ow))
            out[s + j] = full.argmax(-1).astype(np.uint8)
            if keep_probabilities:
                if kept is None:
                    kept = np.zeros((stack.shape[0], oh, ow, full.shape[-1]), dtype=np.float32)
                kept[s + j] = full
        progress.advance(len(idx))
    return (out, kept) if keep_probabilities else out  # type: ignore[return-value]


def predict_volume(
    model: keras.Model,
    data: npt.NDArray,
    affine: npt.ArrayLike,
    spec: Preprocessing | Geometry,
    cfg: Config,
    batch_size: int,
    tta: bool = False,
    largest_component: bool | Sequence[int] | None = False,
    progress: Progress = NULL_PROGRESS,
    path: Path | None = None,
    probabilities: bool = False,
) -> VolumePrediction:
    """Segment every slice of a volume array and put the labels back into its original geometry.

    Args:
        model: a loaded model.
        data: (X, Y, Z) image array as stored in the file (HU for CT).
        affine: its (4, 4) voxel -> RAS affine.
        spec: the preprocessing recipe for ``volume_to_slices``: ``preprocessing_spec(cfg)``, or the
            ``Geometry`` of a prepared case (``dataset.json``) to repeat that case's recorded recipe exactly.
        cfg: the config (``data.image_size``, channels, context slices, ``infer.overlap``, classes).
        batch_size: slices per model call.
        tta: flip test-time augmentation.
        largest_component: keep the largest connected component (3D) of every class (True) or of the listed
            class ids.
        progress: started once with the number of slices (described by the file name of ``path``, else
            ``"volume"``) before prediction, then advanced by the slices done after each batch; pass
            ``segkit.progress.Part(p)`` to count the slices into a task already started.
        path: the input file, named in errors.
        probabilities: also return the (X, Y, Z, K) class probabilities in the input's geometry.

    Returns:
        ``VolumePrediction``; ``labels.shape == data.shape``.

    Raises:
        DataError: NaN/inf intensities, or labels that do not fit the input's shape.
    """
    import time

    from segkit.infer.predict import largest_component as keep_largest
    from segkit.io.slices import fit_image
    from segkit.prepare.slicing import reassemble_volume, volume_to_slices

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    sliced = volume_to_slices(data, affine, spec, case_id_of(path) if path is not None else "volume", path=path)
    # data.patches: the prepared scale (a sliding window covers the slice); else the model input size by the
    # training pipeline's resize (applied here to the uint8 slice; training resizes the decoded float image)
    stack = np.stack([fit_image(img, cfg) for _, img, _ in sliced.slices])
    t["preprocess"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    progress.start(stack.shape[0], path.name if path is not None else "volume")
    probs2d = None
    if probabilities:
        labels2d, probs2d = predict_volume_slices(model, stack, cfg, batch_size, tta, progress,
                                                  out_size=sliced.geometry.slice_shape, keep_probabilities=True)
    else:
        labels2d = predict_volume_slices(model, stack, cfg, batch_size, tta, progress,
                                         out_size=sliced.geometry.slice_shape)
    t["predict"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labels = reassemble_volume({k: labels2d[i] for i, (k, _, _) in enumerate(sliced.slices)}, sliced.geometry)
    lcc = lcc_classes(largest_component, cfg)
    if lcc:
        labels = keep_largest(labels, lcc)
    if labels.shape != np.shape(data):
        raise DataError(f"reassembled labels {labels.shape} differ from the input {np.shape(data)}", path=path)
    probs = None
    if probs2d is not None:
        from segkit.prepare.slicing import reassemble_probabilities

        probs = reassemble_probabilities(probs2d, sliced.geometry)
        del probs2d
    t["reassemble"] = time.perf_counter() - t0
    return VolumePrediction(labels.astype(np.uint8, copy=False), stack, labels2d, sliced.geometry, t, probs)


def lcc_classes(largest_component: bool | Sequence[int] | None, cfg: Config) -> list[int]:
    """Class ids to clean with the largest-component filter: all for True, none for False/None, else the list."""
    if largest_component is None:
        return []
    if isinstance(largest_component, bool):
        return [c.id for c in cfg.effective_classes] if largest_component else []
    return [int(c) for c in largest_component]


def volume_outputs(path: Path, out_dir: Path, probabilities: bool = False) -> list[Path]:
    """The files ``infer_volume`` writes for ``path``: ``<case>_seg.nii.gz``, ``<case>_overlay.png`` and, with
    ``probabilities``, ``<case>_probs.nii.gz``."""
    case_id = case_id_of(Path(path))
    out = [Path(out_dir) / f"{case_id}_seg.nii.gz", Path(out_dir) / f"{case_id}_overlay.png"]
    return out + ([Path(out_dir) / f"{case_id}_probs.nii.gz"] if probabilities else [])


def refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    """Raise ``DataError`` naming the first existing file of ``paths`` unless ``overwrite``.

    Raises:
        DataError: ``"output file already exists (N of M)"``, hint ``--overwrite``.
    """
    if overwrite:
        return
    existing = [p for p in paths if Path(p).exists()]
    if existing:
        raise DataError(
            f"output file already exists ({len(existing)} of {len(paths)} outputs exist)",
            path=existing[0],
            hint="pass --overwrite to replace them, or choose another --output",
        )


def infer_volume(
    model: keras.Model,
    path: Path,
    cfg: Config,
    out_dir: Path,
    batch_size: int | None = None,
    tta: bool | None = None,
    largest_component: bool | Sequence[int] | None = None,
    progress: Progress = NULL_PROGRESS,
    overwrite: bool = False,
    save_probabilities: bool = False,
) -> VolumeResult:
    """Segment one volume file and write its label NIfTI and overlay montage.

    Args:
        model: a loaded model (``segkit.infer.predict.load_model``).
        path: ``.nii``, ``.nii.gz``, ``.nrrd`` or ``.nhdr`` 3D image.
        cfg: the config (preprocessing, channels, classes, infer options).
        out_dir: where ``<case>_seg.nii.gz`` and ``<case>_overlay.png`` go.
        batch_size, tta, largest_component: override ``cfg.infer`` when not None.
        progress: started once with the number of slices and the file name (e.g. ``ct.nii.gz``) before
            prediction, then advanced by the slices done after each batch.
        overwrite: replace existing outputs (else they are refused before anything is read).
        save_probabilities: also write ``<case>_probs.nii.gz``: (X, Y, Z, K) float32 class probabilities in
            the input's geometry (background first; after TTA / ensemble averaging, before any component filter).

    Returns:
        ``VolumeResult``.

    Raises:
        DataError: existing outputs without ``overwrite``, unreadable file, not 3D (2D or 4D), NaN intensities.
    """
    import time

    from segkit.io.png import write_png
    from segkit.io.volumes import load_volume, save_volume

    outputs = volume_outputs(Path(path), Path(out_dir), probabilities=save_probabilities)
    refuse_existing(outputs, overwrite)
    seg_out, montage_out = outputs[:2]
    bs = int(batch_size or cfg.infer.batch_size)
    use_tta = bool(cfg.infer.tta) if tta is None else tta
    use_lcc = cfg.infer.largest_component if largest_component is None else largest_component
    t0 = time.perf_counter()
    vol = load_volume(Path(path))
    if vol.data.ndim != 3:
        raise DataError(f"expected a 3D volume, got shape {vol.data.shape}", path=path,
                        hint="give one 3D image per file")
    case_id = case_id_of(Path(path))
    t_load = time.perf_counter() - t0
    pred = predict_volume(
        model, vol.data, vol.affine, preprocessing_spec(cfg), cfg, bs, use_tta, use_lcc, progress, Path(path),
        probabilities=save_probabilities,
    )
    t = dict(pred.seconds)
    t["preprocess"] += t_load
    labels = pred.labels

    t0 = time.perf_counter()
    seg_path = save_volume(seg_out, labels, vol.affine)
    montage = overlay_montage(pred.stack, pred.labels2d, [c.color for c in cfg.effective_classes], cfg.infer.alpha)
    montage_path = write_png(montage_out, montage)
    probs_path = None
    if save_probabilities:
        if pred.probabilities is None:  # cannot happen: predict_volume(probabilities=True) returns them
            raise RuntimeError("predict_volume returned no probabilities")
        probs_path = save_volume(outputs[2], pred.probabilities, vol.affine)
    t["write"] = time.perf_counter() - t0
    counts = np.bincount(labels.ravel(), minlength=cfg.num_classes)
    logger.info("%s: wrote %s", case_id, seg_path)
    return VolumeResult(
        case_id=case_id,
        seg_path=seg_path,
        montage_path=montage_path,
        shape=tuple(int(s) for s in labels.shape),  # type: ignore[arg-type]
        affine=np.asarray(vol.affine, dtype=np.float64),
        voxels_per_class={c.id: int(counts[c.id]) for c in cfg.effective_classes},
        seconds=t,
        probs_path=probs_path,
    )


def overlay(
    gray: npt.NDArray[np.uint8], labels: npt.NDArray[np.integer], colors: Sequence[Sequence[int]], alpha: float
) -> npt.NDArray[np.uint8]:
    """(H, W) uint8 image + (H, W) ids -> (H, W, 3) uint8 RGB, class colours blended with opacity ``alpha``.

    Background pixels keep the image unchanged.
    """
    from segkit.io.palette import encode_mask, palette_array

    base = gray if gray.ndim == 3 else np.repeat(gray[..., None], 3, axis=-1)
    rgb = encode_mask(np.asarray(labels), palette_array(colors)).astype(np.float32)
    fg = (np.asarray(labels) > 0)[..., None]
    blended = base.astype(np.float32) * (1 - alpha) + rgb * alpha
    return np.where(fg, blended, base.astype(np.float32)).round().clip(0, 255).astype(np.uint8)


def overlay_montage(
    stack: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.integer],
    colors: Sequence[Sequence[int]],
    alpha: float,
    n: int = 9,
) -> npt.NDArray[np.uint8]:
    """A grid of up to ``n`` overlays (evenly spaced over the slices with foreground, else over all slices).

    Args:
        stack: (N, H, W) uint8 display slices (resized to the labels' size when it differs).
        labels: (N, h, w) predicted ids.

    Returns:
        (rows*H, cols*W, 3) uint8 RGB.
    """
    fg = np.flatnonzero(labels.reshape(labels.shape[0], -1).any(1))
    pool = fg if fg.size else np.arange(stack.shape[0])
    pick = np.unique(pool[np.linspace(0, pool.size - 1, min(n, pool.size)).round().astype(int)])
    from segkit.io.slices import resize_image

    h, w = labels.shape[1:3]  # the images follow the labels' (original slice) size
    tiles = [overlay(resize_image(stack[i], (h, w)), labels[i], colors, alpha) for i in pick]
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return grid
