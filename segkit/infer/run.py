"""``infer(cfg, input)``: one entry point that dispatches on its input -- a volume file (any format of
``segkit.io.volumes``), a DICOM series folder, a folder of volumes and DICOM series (each series, and each
phase of a cine series, one case; label-named files skipped unless ``InferOptions.glob``), or a folder of
PNG/JPG slices -- as ``segkit infer`` does.

Two steps, so a caller can refuse bad input before TensorFlow is imported: ``plan_inference`` checks the
input, the output folder and every output file (nothing is loaded or written), and ``run_inference`` loads the
model(s) -- the run folder's model, a cross-validation run's fold ensemble, or the given files -- applies the
run's post-processing decision and writes the outputs. ``infer`` does both.

Example:
    >>> result = infer(load_config("runs/left-atrial/config.yaml"), Path("scans/"))
    >>> [v.seg_path for v in result.volumes]
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from segkit.errors import DataError
from segkit.infer.options import InferOptions
from segkit.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from segkit.config import Config
    from segkit.infer.folder import FolderResult
    from segkit.infer.volume import VolumeResult
    from segkit.io.volumes import VolumeRef

log = logging.getLogger(__name__)

#: names that mark a file or folder as a label, skipped in a folder input unless --glob picks them
LABEL_PATTERNS = ("*_label*", "*_seg*")
LABEL_FOLDERS = ("labelsTr",)


@dataclass(frozen=True)
class InferencePlan:
    """What ``run_inference`` will do, checked: the input kind, the files, the models and the output
    folder."""

    kind: Literal["volumes", "slices"]
    input_path: Path
    volumes: tuple[VolumeRef, ...]
    out_dir: Path
    model_paths: tuple[Path, ...]
    postprocessing_dir: Path | None
    save_probabilities: bool = False
    overwrite: bool = False
    output_format: str = "nifti"
    skipped: tuple[str, ...] = ()
    bundle: Path | None = None  # a deployment bundle (segkit export) whose runtime runs instead of Keras


@dataclass
class InferenceResult:
    """What ``run_inference`` wrote: one ``VolumeResult`` per volume, or the ``FolderResult`` of a slice
    folder."""

    plan: InferencePlan
    volumes: list[VolumeResult] = field(default_factory=list)
    folder: FolderResult | None = None


def plan_inference(
    cfg: Config,
    input_path: Path,
    out_dir: Path | None = None,
    *,
    models: Sequence[Path] | None = None,
    options: InferOptions | None = None,
) -> InferencePlan:
    """Check the input and the outputs; load and write nothing.

    Args:
        cfg: the run's config (``train.run_dir`` names the run folder, or a bundle folder of
            ``segkit export``: its runtime and its pre/post-processing then apply, and the default output
            folder is ``<bundle>-inference`` beside it).
        input_path: a volume (any ``segkit.io.volumes`` format), a DICOM series folder, a folder of volumes
            and DICOM series (each series its own case), or a folder of PNG/JPG slices.
        out_dir: default ``<train.run_dir>/inference``.
        models: ``.keras`` files (several: their ensemble); default the run folder's model(s)
            (``segkit.predict.models.run_models``: a cross-validation run's folds).
        options: ``save_probabilities``, ``overwrite``, ``output_format``, ``glob`` and ``resample_tilt``
            are used here.

    Raises:
        DataError: missing input, unsupported file type, a folder with no volume or slice, two inputs that
            would write one output file, probabilities asked for slices, existing outputs without
            ``overwrite``, an output folder inside the input or its ground truth, an unknown output format,
            ``dicom-seg`` for an input that is not DICOM or with ``resample_tilt``.
        ModelError: a cross-validation run whose fold model is missing.
    """
    from segkit.infer.folder import OUTPUT_DIRS, check_output_dir, folder_outputs, list_images
    from segkit.infer.volume import refuse_existing
    from segkit.io.run_folder import INFERENCE_DIR
    from segkit.io.segmentations import OUTPUT_FORMATS
    from segkit.predict.bundle import is_bundle
    from segkit.predict.models import resolve_models

    opts = options or InferOptions()
    input_path = Path(input_path)
    if not input_path.exists():
        raise DataError("input not found", path=input_path, hint="give a volume file or a folder")
    if opts.output_format not in OUTPUT_FORMATS:
        raise DataError(f"unknown output format '{opts.output_format}'",
                        hint=f"use one of {', '.join(OUTPUT_FORMATS)}")
    volumes, skipped, images = _inputs(input_path, opts.glob)
    if opts.resample_tilt:
        volumes = [replace(v, resample_tilt=True) for v in volumes]
    if images and opts.save_probabilities:
        raise DataError("--save-probabilities writes volumes; the input is a folder of slices",
                        path=input_path, hint="give volumes, or drop --save-probabilities")
    _check_dicom_seg(volumes, opts.output_format)
    run_dir = Path(cfg.train.run_dir)
    if images and cfg.cascade.enabled:
        raise DataError("a cascade (cascade.enabled) segments volumes: its coarse stage needs the volume",
                        path=input_path, hint="give the volume files, or a config without the cascade")
    bundle = run_dir if is_bundle(run_dir) else None
    if bundle is not None and models:
        raise DataError("--model does not apply to a bundle", path=bundle, hint="drop --model")
    model_paths, pp_dir = ([], run_dir) if bundle is not None else resolve_models(run_dir, models)
    out = Path(out_dir) if out_dir is not None else run_dir / INFERENCE_DIR
    if bundle is not None and out_dir is None:  # a bundle folder holds only its listed files
        out = run_dir.parent / f"{run_dir.name}-{INFERENCE_DIR}"
    if input_path.is_dir():
        check_output_dir(input_path, out, OUTPUT_DIRS if images else ("",))
    if images:
        refuse_existing(folder_outputs(list_images(input_path), out), opts.overwrite)
    else:
        refuse_existing(_volume_outputs(volumes, out, opts, input_path), opts.overwrite)
    return InferencePlan("slices" if images else "volumes", input_path, tuple(volumes), out,
                         tuple(model_paths), pp_dir, opts.save_probabilities, opts.overwrite,
                         opts.output_format, tuple(skipped), bundle)


def _inputs(input_path: Path, glob: str | None) -> tuple[list[VolumeRef], list[str], bool]:
    """What ``plan_inference`` segments: ``(volumes, label-named files skipped, whether the input is a
    folder of PNG/JPG slices)``.

    Raises:
        DataError: an unsupported file type, or a folder with no volume and no slice.
    """
    from segkit.io.slices import IMAGE_SUFFIXES
    from segkit.io.volumes import is_volume, supported_text, volume_refs

    volumes: list[VolumeRef] = []
    skipped: list[str] = []
    images = False
    if input_path.is_file():
        if not is_volume(input_path):
            raise DataError(
                f"unsupported input file type '{''.join(input_path.suffixes)}'",
                path=input_path,
                hint=f"give a volume ({supported_text()}), or a folder of PNG/JPG slices",
            )
        volumes = volume_refs(input_path)  # a 4D NIfTI: one volume per phase
    else:
        volumes, skipped = select_volumes(input_path, glob)
        images = not volumes and any(p.suffix.lower() in IMAGE_SUFFIXES for p in input_path.iterdir())
        if not volumes and not images:
            raise DataError("the folder holds no volume and no PNG/JPG slice", path=input_path,
                            hint=f"give volumes ({supported_text()}) or PNG/JPG slices"
                            + (f"; {len(skipped)} label-named file(s) skipped, pick them with --glob"
                               if skipped else ""))
    return volumes, skipped, images


def select_volumes(folder: Path, glob: str | None) -> tuple[list[VolumeRef], list[str]]:
    """The volumes of ``folder`` to segment (``segkit.io.volumes.volume_inputs``), and the names skipped.

    A volume's names are its file name and, for one series or phase (a DICOM series, a cine phase, a phase
    of a 4D file), its case id (``s004_cine_phase02``, ``heart_phase02``). With ``glob``, only the volumes
    one of whose names matches it; without, every volume except those named like labels
    (``LABEL_PATTERNS``, or inside a ``labelsTr`` folder), logged in one line.
    """
    from segkit.io.volumes import volume_inputs

    folder = Path(folder)
    refs = volume_inputs(folder)
    names = [_names(r, folder) for r in refs]
    if glob is not None:
        return [r for r, n in zip(refs, names, strict=True) if any(fnmatch.fnmatch(x, glob) for x in n)], []
    keep, skipped = [], []
    for ref, name in zip(refs, names, strict=True):
        parts = ref.path.relative_to(folder).parts if ref.path != folder else ()
        if any(fnmatch.fnmatch(x.lower(), p) for x in name for p in LABEL_PATTERNS) or any(
                d in parts for d in LABEL_FOLDERS):
            skipped.append(name[-1])
        else:
            keep.append(ref)
    if skipped:
        log.warning("skipped %d label-named file(s): %s (pick them with --glob)", len(skipped),
                    ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    return keep, skipped


def _names(ref: VolumeRef, folder: Path) -> tuple[str, ...]:
    """The names ``--glob`` and the label patterns match: the file name (not for a series of the folder
    itself) and the case id of one series or phase."""
    own = () if ref.series_key is not None and ref.path == folder else (ref.path.name,)
    picked = (ref.case_id,) if ref.series_key is not None or ref.phase is not None else ()
    return own + picked if own + picked else (ref.path.name,)


def _check_dicom_seg(volumes: Sequence[VolumeRef], output_format: str) -> None:
    """Refuse ``dicom-seg`` for an input that is not one DICOM series (a DICOM-SEG references its source
    series; a cine joined from one series per slice position spans several), and together with
    ``resample_tilt`` (the resampled grid's slices are not the source's frames a DICOM-SEG references)."""
    from segkit.io.dicom import list_series
    from segkit.io.volumes import volume_format

    if output_format != "dicom-seg":
        return
    if any(ref.resample_tilt for ref in volumes):
        raise DataError("--output-format dicom-seg cannot be written with --resample-tilt: a DICOM-SEG "
                        "references the source's slices, not the resampled untilted grid",
                        hint="choose nifti, nrrd, mha or seg.nrrd for a resampled series")
    for ref in volumes:
        fmt = volume_format(ref.path)
        if ref.series_key is None and (fmt is None or fmt.name != "dicom"):
            raise DataError("--output-format dicom-seg needs a DICOM series as input", path=ref.path,
                            hint="give a DICOM series folder, or choose nifti/nrrd/mha/seg.nrrd")
        joined = [s.joined for s in list_series(ref.path) if ref.series_key in (None, s.key)]
        if max(joined, default=1) > 1:
            raise DataError(f"{ref.case_id} spans {max(joined)} series (a cine stored as one series per "
                            "slice position); a DICOM-SEG references one series", path=ref.path,
                            hint="choose nifti, nrrd, mha or seg.nrrd for this input")


def _volume_outputs(
    volumes: Sequence[VolumeRef], out: Path, opts: InferOptions, input_path: Path
) -> list[Path]:
    """Every file written for ``volumes`` (``volume_outputs``).

    Raises:
        DataError: two volumes would write one file.
    """
    from segkit.infer.volume import volume_outputs

    owner: dict[Path, VolumeRef] = {}  # output file -> the volume that writes it
    for v in volumes:
        for p in volume_outputs(v, out, opts.save_probabilities, opts.output_format):
            if p in owner:
                raise DataError(
                    f"{_shown(owner[p])} and {_shown(v)} would both be written to {p.name}",
                    path=input_path,
                    hint="keep one of the two files in the folder "
                         "(or infer each file on its own with --output)",
                )
            owner[p] = v
    return list(owner)


def _shown(ref: VolumeRef) -> str:
    """A volume's name in messages: its file name, or the case id of one series of a folder."""
    return ref.case_id if ref.series_key is not None else ref.path.name


def run_inference(
    plan: InferencePlan,
    cfg: Config,
    *,
    options: InferOptions | None = None,
    progress: Progress = NULL_PROGRESS,
    on_volume: Callable[[VolumeResult], None] | None = None,
) -> InferenceResult:
    """Load the plan's model(s) and write its outputs (``infer_volume`` per volume, or ``infer_folder``).

    Args:
        plan: from ``plan_inference``.
        cfg: the config; ``infer.tta`` / ``infer.largest_component`` left null take the run's post-processing.
        options: overrides of ``cfg.infer`` (batch size, TTA, component filter); the plan's ``overwrite`` and
            ``save_probabilities`` apply.
        progress: started once per volume with its slices and its file name (``infer_volume``), or once for a
            folder of slices with its images and ``"infer"`` (``infer_folder``); advanced as they are done.
        on_volume: called with each volume's result as soon as it is written.
    """
    from segkit.infer.folder import infer_folder
    from segkit.infer.volume import infer_volume
    from segkit.postprocess import apply_postprocessing
    from segkit.predict.bundle import load_bundle_model, read_bundle
    from segkit.predict.models import load_models

    cfg = apply_postprocessing(cfg, plan.postprocessing_dir, volumes=plan.kind == "volumes")
    net: Any = (load_bundle_model(read_bundle(plan.bundle)) if plan.bundle is not None
                else load_models(list(plan.model_paths), cfg, precision=cfg.train.precision))
    if cfg.cascade.enabled:  # both stages: the coarse run in <run_dir>/coarse, or the bundle's coarse/
        from segkit.predict.cascade import load_bundle_cascade, load_cascade

        net = (load_bundle_cascade(plan.bundle, cfg, fine=net) if plan.bundle is not None
               else load_cascade(Path(cfg.train.run_dir), cfg, fine=net, precision=cfg.train.precision))
    result = InferenceResult(plan)
    settings = replace(options or InferOptions(), overwrite=plan.overwrite,
                       save_probabilities=plan.save_probabilities,
                       output_format=plan.output_format).resolve(cfg)
    if plan.kind == "slices":
        result.folder = infer_folder(net, plan.input_path, cfg, plan.out_dir, settings, progress=progress)
        return result
    for vol in plan.volumes:
        r = infer_volume(net, vol, cfg, plan.out_dir, settings, progress=progress)
        result.volumes.append(r)
        if on_volume is not None:
            on_volume(r)
    return result


def infer(
    cfg: Config,
    input_path: Path,
    out_dir: Path | None = None,
    *,
    models: Sequence[Path] | None = None,
    options: InferOptions | None = None,
    progress: Progress = NULL_PROGRESS,
) -> InferenceResult:
    """Segment a volume, a folder of volumes or a folder of slices with the run's model(s): ``plan_inference``
    then ``run_inference`` (see both for the arguments and errors).

    Args:
        options: overrides of ``cfg.infer``, ``overwrite``, ``save_probabilities``, ``output_format`` and
            ``glob`` (default none, off, NIfTI, every non-label volume).
    """
    options = options or InferOptions()
    plan = plan_inference(cfg, input_path, out_dir, models=models, options=options)
    return run_inference(plan, cfg, options=options, progress=progress)


__all__ = ["InferOptions", "InferencePlan", "InferenceResult", "infer", "plan_inference", "run_inference"]
