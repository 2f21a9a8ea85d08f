"""``infer(cfg, input)``: one entry point that dispatches on its input -- a volume file, a folder of volumes, or
a folder of PNG/JPG slices -- as ``segkit infer`` does.

Two steps, so a caller can refuse bad input before TensorFlow is imported: ``plan_inference`` checks the input,
the output folder and every output file (nothing is loaded or written), and ``run_inference`` loads the
model(s) -- the run folder's model, a cross-validation run's fold ensemble, or the given files -- applies the run's
post-processing decision and writes the outputs. ``infer`` does both.

Example:
    >>> result = infer(load_config("runs/left-atrial/config.yaml"), Path("scans/"))
    >>> [v.seg_path for v in result.volumes]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from segkit.errors import DataError
from segkit.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from segkit.config import Config
    from segkit.infer.folder import FolderResult
    from segkit.infer.volume import VolumeResult


@dataclass(frozen=True)
class InferencePlan:
    """What ``run_inference`` will do, checked: the input kind, the files, the models and the output folder."""

    kind: Literal["volumes", "slices"]
    input_path: Path
    volumes: tuple[Path, ...]
    out_dir: Path
    model_paths: tuple[Path, ...]
    postprocessing_dir: Path | None
    save_probabilities: bool = False
    overwrite: bool = False


@dataclass
class InferenceResult:
    """What ``run_inference`` wrote: one ``VolumeResult`` per volume, or the ``FolderResult`` of a slice folder."""

    plan: InferencePlan
    volumes: list[VolumeResult] = field(default_factory=list)
    folder: FolderResult | None = None


def plan_inference(
    cfg: Config,
    input_path: Path,
    out_dir: Path | None = None,
    *,
    models: Sequence[Path] | None = None,
    save_probabilities: bool = False,
    overwrite: bool = False,
) -> InferencePlan:
    """Check the input and the outputs; load and write nothing.

    Args:
        cfg: the run's config (``train.run_dir`` names the run folder).
        input_path: a NIfTI/NRRD volume, a folder of them, or a folder of PNG/JPG slices.
        out_dir: default ``<train.run_dir>/inference``.
        models: ``.keras`` files (several: their ensemble); default the run folder's model(s)
            (``segkit.infer.predict.run_models``: a cross-validation run's folds).
        save_probabilities: volumes only: also ``<case>_probs.nii.gz``.
        overwrite: replace existing outputs.

    Raises:
        DataError: missing input, unsupported file type, a folder with no volume or slice, two inputs that would
            write one output file, probabilities asked for slices, existing outputs without ``overwrite``, an
            output folder inside the input or its ground truth.
        ModelError: a cross-validation run whose fold model is missing.
    """
    from segkit.infer.folder import OUTPUT_DIRS, check_output_dir, folder_outputs, list_images
    from segkit.infer.predict import resolve_models
    from segkit.infer.volume import refuse_existing, volume_outputs
    from segkit.io.slices import IMAGE_SUFFIXES
    from segkit.io.volumes import volume_suffix

    input_path = Path(input_path)
    if not input_path.exists():
        raise DataError("input not found", path=input_path, hint="give a volume file or a folder")
    volumes: list[Path] = []
    images = False
    if input_path.is_file():
        if not volume_suffix(input_path):
            raise DataError(
                f"unsupported input file type '{''.join(input_path.suffixes)}'",
                path=input_path,
                hint="give a .nii/.nii.gz/.nrrd volume, or a folder of PNG/JPG slices",
            )
        volumes = [input_path]
    else:
        volumes = sorted(p for p in input_path.iterdir() if p.is_file() and volume_suffix(p))
        images = not volumes and any(p.suffix.lower() in IMAGE_SUFFIXES for p in input_path.iterdir())
        if not volumes and not images:
            raise DataError("the folder holds no volume and no PNG/JPG slice", path=input_path,
                            hint="give .nii/.nii.gz/.nrrd volumes or PNG/JPG slices")
    if images and save_probabilities:
        raise DataError("--save-probabilities writes volumes; the input is a folder of slices", path=input_path,
                        hint="give NIfTI/NRRD volumes, or drop --save-probabilities")
    run_dir = Path(cfg.train.run_dir)
    model_paths, pp_dir = resolve_models(run_dir, models)
    out = Path(out_dir) if out_dir is not None else run_dir / "inference"
    if input_path.is_dir():
        check_output_dir(input_path, out, OUTPUT_DIRS if images else ("",))
    if images:
        refuse_existing(folder_outputs(list_images(input_path), out), overwrite)
    else:
        owner: dict[Path, Path] = {}  # output file -> the volume that writes it
        for v in volumes:
            for p in volume_outputs(v, out, probabilities=save_probabilities):
                if p in owner:
                    raise DataError(
                        f"{owner[p].name} and {v.name} would both be written to {p.name}",
                        path=input_path,
                        hint="keep one of the two files in the folder (or infer each file on its own with --output)",
                    )
                owner[p] = v
        refuse_existing(list(owner), overwrite)
    return InferencePlan("slices" if images else "volumes", input_path, tuple(volumes), out, tuple(model_paths),
                         pp_dir, save_probabilities, overwrite)


def run_inference(
    plan: InferencePlan,
    cfg: Config,
    *,
    batch_size: int | None = None,
    tta: bool | None = None,
    largest_component: bool | Sequence[int] | None = None,
    progress: Progress = NULL_PROGRESS,
    on_volume: Callable[[VolumeResult], None] | None = None,
) -> InferenceResult:
    """Load the plan's model(s) and write its outputs (``infer_volume`` per volume, or ``infer_folder``).

    Args:
        plan: from ``plan_inference``.
        cfg: the config; ``infer.tta`` / ``infer.largest_component`` left null take the run's post-processing.
        batch_size, tta, largest_component: override ``cfg.infer`` when not None.
        progress: started once per volume with its slices and its file name (``infer_volume``), or once for a
            folder of slices with its images and ``"infer"`` (``infer_folder``); advanced as they are done.
        on_volume: called with each volume's result as soon as it is written.
    """
    from segkit.evaluate.postprocess import apply_postprocessing
    from segkit.infer.folder import infer_folder
    from segkit.infer.predict import load_models
    from segkit.infer.volume import infer_volume

    cfg = apply_postprocessing(cfg, plan.postprocessing_dir, volumes=plan.kind == "volumes")
    net = load_models(list(plan.model_paths), cfg, precision=cfg.train.precision)
    result = InferenceResult(plan)

    if plan.kind == "slices":
        result.folder = infer_folder(net, plan.input_path, cfg, plan.out_dir, batch_size=batch_size, tta=tta,
                                     largest_component=largest_component, overwrite=plan.overwrite,
                                     progress=progress)
        return result
    for vol in plan.volumes:
        r = infer_volume(net, vol, cfg, plan.out_dir, batch_size=batch_size, tta=tta,
                         largest_component=largest_component, overwrite=plan.overwrite,
                         save_probabilities=plan.save_probabilities, progress=progress)
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
    save_probabilities: bool = False,
    overwrite: bool = False,
    batch_size: int | None = None,
    tta: bool | None = None,
    largest_component: bool | Sequence[int] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> InferenceResult:
    """Segment a volume, a folder of volumes or a folder of slices with the run's model(s): ``plan_inference``
    then ``run_inference`` (see both for the arguments and errors)."""
    plan = plan_inference(cfg, input_path, out_dir, models=models, save_probabilities=save_probabilities,
                          overwrite=overwrite)
    return run_inference(plan, cfg, batch_size=batch_size, tta=tta, largest_component=largest_component,
                         progress=progress)


__all__ = ["InferencePlan", "InferenceResult", "infer", "plan_inference", "run_inference"]
