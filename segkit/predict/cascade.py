"""A locate-then-segment cascade (``cascade:`` config section) as one predictor of whole volumes.

``predict_cascade`` (what ``segkit.predict.volume.predict_volume`` runs for a ``Cascade``):

1. the coarse model segments every whole slice at ``cascade.coarse_size`` (``predict_volume``, no TTA);
2. its foreground (all classes), without the 3D components smaller than a tenth of the largest
   (``segkit.prepare.roi.main_components``: specks go, a second lung stays), gives the region of interest:
   its in-plane box on the display slices + ``cascade.margin_mm`` + half of ``cascade.jitter_mm`` (the mean
   margin of the training crops), square in mm (``segkit.prepare.roi.roi_box``), the same box for every slice;
3. the fine model segments that crop of every slice, resized to its ``prepare.size`` (TTA per the settings);
   its probabilities are resampled to the crop and put back into the whole slice, background outside;
   then, ``cascade.refine_passes`` times (default once), the box is taken again in the same way from the
   fine stage's own foreground and the fine model segments that crop instead (stopping when the box no
   longer changes). A coarse model's foreground reaching past the heart widens its box (ACDC-80's patient047:
   192-213 mm a side against the 132-137 mm of its training crops), and the fine model, trained at the
   reference crops' scale, then loses the right ventricle; the fine stage's own box is close to the training
   crops' (a fixed-point crop, as in Zhou et al., MICCAI 2017, "A fixed-point model for pancreas
   segmentation"). One pass by default: a second one changed a box by 1.5 mm and lost a left ventricle
   (README, "The cascade's second crop"). A refined crop in which the fine model finds nothing is dropped
   for the crop before it (warned);
4. the overlay PNG of ``segkit infer`` draws on ``VolumePrediction.display_stack()``: the coarse stage's whole
   slices at the original slice size, the fine stage's sharper crop pasted in (``composite_display``; built
   only when asked for, so evaluation does not pay for it).

When the coarse model finds no foreground the fine model segments the whole slices (a warning says so): the
documented fallback, never an empty answer by construction; a refinement pass then crops around what the
fine model found, if anything.

Example:
    >>> model = load_cascade(Path("runs/acdc-cascade"), cfg)          # both stages of a trained run
    >>> pred = predict_volume(model, load_volume(Path("ct.nii.gz")), spec, cfg, VolumeSettings(4))
    >>> pred.crop                                                       # (r0, r1, c0, c1) of the fine stage
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from segkit.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from segkit.config import Config
    from segkit.io.volumes import Volume
    from segkit.predict.volume import VolumePrediction, VolumeSettings
    from segkit.prepare.record import Geometry, Preprocessing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cascade:
    """The two stages of a cascade, ready to predict.

    Attributes:
        coarse: the coarse model (whole slices at ``coarse_cfg.data.image_size``).
        coarse_cfg: its config (``Config.cascade_stages()[0]``).
        coarse_spec: the coarse run's preprocessing recipe for new volumes (``preprocessing.json``).
        fine: the fine model (one, or a fold ensemble).
    """

    coarse: Any
    coarse_cfg: Config
    coarse_spec: Preprocessing
    fine: Any


def load_cascade(
    run_dir: Path, cfg: Config, fine: Any | None = None, precision: str | None = None
) -> Cascade:
    """A trained cascade's two stages: the coarse run in ``<run_dir>/coarse`` and the fine model (``fine``
    when already loaded, else the run folder's model or fold ensemble). A cross-validation folder's cascade is
    the ensemble of its folds' coarse models and that of their fine models.

    Raises:
        ModelError: a stage's model is missing or does not fit its config (the message names the file).
    """
    from segkit.config import COARSE_DIR, load_config
    from segkit.io.run_folder import CONFIG_FILE, MODEL_FILE, is_cv_folder, read_cv_folds
    from segkit.predict.models import load_models, run_models
    from segkit.predict.recipe import preprocessing_spec

    run_dir = Path(run_dir)
    dirs = ([run_dir / f / COARSE_DIR for f in read_cv_folds(run_dir)] if is_cv_folder(run_dir)
            else [run_dir / COARSE_DIR])
    saved = dirs[0] / CONFIG_FILE  # the coarse stage as it was trained (cascade.* may have been edited since)
    stage = load_config(saved) if saved.is_file() else cfg.cascade_stages()[0]
    coarse_cfg = stage.model_copy(update={"train": stage.train.model_copy(update={"run_dir": dirs[0]})})
    coarse = load_models([d / MODEL_FILE for d in dirs], coarse_cfg, precision)
    if fine is None:
        fine = load_models(run_models(Path(run_dir)), cfg, precision)
    return Cascade(coarse, coarse_cfg, preprocessing_spec(coarse_cfg), fine)


def load_bundle_cascade(bundle_dir: Path, cfg: Config, fine: Any) -> Cascade:
    """A cascade bundle's two stages (``segkit export`` of a cascade run): its coarse bundle
    (``bundle.json``'s ``cascade.coarse`` folder, checked by sha256 like the bundle) and ``fine``, the
    bundle's own model.

    Raises:
        ModelError: the coarse bundle is missing or damaged, or its runtime cannot load it.
    """
    from segkit.config import COARSE_DIR
    from segkit.errors import ModelError
    from segkit.predict.bundle import bundle_config, load_bundle_model, read_bundle
    from segkit.predict.recipe import preprocessing_spec

    outer = read_bundle(Path(bundle_dir))
    sub = (outer.meta.get("cascade") or {}).get("coarse", COARSE_DIR)
    if not isinstance(sub, str) or Path(sub).is_absolute() or ".." in Path(sub).parts:
        raise ModelError(f"bundle.json names a bad coarse stage folder {sub!r}", path=outer.path,
                         hint="export the run again with segkit export RUN_DIR")
    inner = read_bundle(outer.path / sub)
    coarse_cfg = bundle_config(inner)
    return Cascade(load_bundle_model(inner), coarse_cfg, preprocessing_spec(coarse_cfg), fine)


def inference_margin(cfg: Config) -> float:
    """The margin (mm) of an inference crop: ``cascade.margin_mm`` + half of ``cascade.jitter_mm`` (the mean
    margin the fine model saw in training)."""
    return float(cfg.cascade.margin_mm + cfg.cascade.jitter_mm / 2)


def inference_box(pred: VolumePrediction, cfg: Config) -> tuple[int, int, int, int] | None:
    """The crop around a prediction's foreground, as every inference crop is taken (the coarse stage's and
    each refinement's): its 3D components of at least a tenth of the largest one's size
    (``segkit.prepare.roi.main_components``), their in-plane box + ``inference_margin``, square in mm
    (``segkit.prepare.roi.roi_box``); None when it has no foreground."""
    from segkit.prepare.roi import main_components, roi_box

    spacing = pred.geometry.slice_spacing or (1.0, 1.0)
    return roi_box(main_components(pred.labels2d > 0), spacing, inference_margin(cfg))


def predict_cascade(
    cascade: Cascade,
    volume: Volume,
    spec: Preprocessing | Geometry,
    cfg: Config,
    settings: VolumeSettings,
    progress: Progress = NULL_PROGRESS,
) -> VolumePrediction:
    """Segment a volume with a cascade (module docstring); the result is in the input's original geometry.

    Args:
        cascade: both stages (``load_cascade``).
        volume: the image volume.
        spec: the fine stage's recipe: a run's ``Preprocessing`` (the coarse stage then uses
            ``cascade.coarse_spec``), or a prepared case's ``Geometry`` (both stages repeat its recorded
            intensity recipe; its own crop, taken from the reference labels, is not used).
        cfg: the fine stage's config (``cascade`` section included).
        settings: batch size, TTA (fine stage only) and whether to keep the probabilities.
        progress: counts the fine stage's first pass over the slices (the refinement passes are not counted).

    Returns:
        A ``VolumePrediction`` whose ``crop`` is the fine stage's last box (None when it segmented the whole
        slices: the fallback, then no refinement or nothing found to refine around), ``stack``
        the fine stage's slices, ``coarse_stack`` the coarse stage's whole slices (``display_stack()``
        composes the two), ``labels2d`` the whole display slices; ``seconds`` adds "coarse" (the fine stage's
        keys sum its passes).
    """
    from segkit.predict.volume import VolumeSettings, predict_volume
    from segkit.prepare.record import Geometry

    name = volume.path.name if volume.path is not None else "volume"
    t0 = time.perf_counter()
    size = (int(cascade.coarse_cfg.prepare.size[0]), int(cascade.coarse_cfg.prepare.size[1]))
    coarse_spec = replace(spec, size=size, crop=None) if isinstance(spec, Geometry) else cascade.coarse_spec
    coarse = predict_volume(cascade.coarse, volume, coarse_spec, cascade.coarse_cfg,
                            VolumeSettings(settings.batch_size))
    coarse_s = time.perf_counter() - t0
    box = inference_box(coarse, cfg)
    if box is None:
        logger.warning("%s: the coarse stage found no foreground; the fine model segments the whole slices",
                       name)
    pred = predict_volume(cascade.fine, volume, spec, cfg, settings, progress, crop=box)
    seconds = {"coarse": coarse_s, **pred.seconds}

    def fine_pass(crop: tuple[int, int, int, int] | None) -> VolumePrediction:
        nonlocal seconds
        out = predict_volume(cascade.fine, volume, spec, cfg, settings, crop=crop)
        seconds = {k: v + out.seconds.get(k, 0.0) for k, v in seconds.items()}  # the fine keys sum the passes
        return out

    for _ in range(int(cfg.cascade.refine_passes)):  # the fine stage's own foreground: a truer box
        again = inference_box(pred, cfg)
        if again is None or again == box:
            break
        if settings.probabilities:  # one volume of probabilities in memory at a time
            pred = replace(pred, probabilities=None)
        refined = fine_pass(again)
        if not (refined.labels2d > 0).any():  # the refined crop lost everything: keep the crop before it
            logger.warning("%s: the fine stage found nothing in its refined crop %s; kept %s", name, again,
                           box if box is not None else "the whole slices")
            del refined
            if settings.probabilities:  # freed above: segment the crop before it again
                pred = fine_pass(box)
            break
        box, pred = again, refined
    return replace(pred, coarse_stack=coarse.stack, seconds=seconds)


def composite_display(
    coarse: npt.NDArray[np.uint8],
    fine: npt.NDArray[np.uint8],
    crop: tuple[int, int, int, int] | None,
    size: tuple[int, int],
) -> npt.NDArray[np.uint8]:
    """What the cascade saw, at the original slice size: the coarse stage's whole slices, with the fine
    stage's crop (at its own, finer resolution) pasted into its box.

    Args:
        coarse: (N, h, w) the coarse stage's display slices (``cascade.coarse_size``).
        fine: (N, H, W) the fine stage's slices: the crop at the model's size, or the whole slices after the
            fallback (``crop`` None).
        crop: ``(r0, r1, c0, c1)`` of the fine stage on the original slices, or None.
        size: the original slice size ``(rows, cols)``.

    Returns:
        (N, rows, cols) uint8: sharp inside the crop (the overlay PNG then shows the labels on the pixels the
        fine model segmented), the coarse stage's blur outside it.
    """
    from segkit.io.slices import resize_image

    out = np.empty((fine.shape[0], int(size[0]), int(size[1])), dtype=np.uint8)
    for i in range(fine.shape[0]):
        out[i] = resize_image(fine[i] if crop is None else coarse[i], size)
    if crop is not None:
        r0, r1, c0, c1 = crop
        for i in range(fine.shape[0]):
            out[i, r0:r1, c0:c1] = resize_image(fine[i], (r1 - r0, c1 - c0))
    return out
