"""``segkit infer``: label volumes / masks from a trained model (a thin shell over ``segkit.infer``)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

from segkit.cli.common import handle_errors, load, out, progress, quiet_tensorflow


@handle_errors
def infer(
    config: Path = typer.Argument(..., help="YAML config of the run, or the run folder itself (train.run_dir)."),
    input_path: Path = typer.Option(..., "--input", "-i", help="A NIfTI/NRRD volume, a folder of them, or a folder of PNG/JPG slices."),
    output: Path = typer.Option(None, "--output", "-o", help="Output folder (default: <train.run_dir>/inference)."),
    model: list[Path] = typer.Option(
        None, "--model", "-m",
        help="Model .keras file (default: <train.run_dir>/model.keras, or every fold's model of a segkit cv run); "
        "repeat it to ensemble (mean probabilities).",
    ),
    batch_size: int = typer.Option(None, "--batch-size", "-b", min=1, help="Slices per model call (default: infer.batch_size)."),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Flip test-time augmentation (default: infer.tta)."),
    largest: bool = typer.Option(
        None, "--largest-component/--all-components", help="Keep the largest connected component per class."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (refused otherwise)."),
    save_probabilities: bool = typer.Option(
        False, "--save-probabilities", help="Volumes: also write <case>_probs.nii.gz (float32, one channel per class)."
    ),
    sets: list[str] = typer.Option(None, "--set", help="Config override KEY=VALUE, e.g. train.precision=mixed_bfloat16."),
) -> None:
    """Segment volumes (-> <case>_seg.nii.gz in the input's exact geometry + overlay PNG) or slice folders.

    Volumes get exactly the preprocessing of `segkit prepare` (from the dataset's dataset.json, else the config).
    Slice folders get colour masks, indexed masks, overlays, and image|truth|prediction panels when a
    sibling masks/ folder holds ground truth. Existing outputs are refused unless --overwrite, and an --output
    that would write into the input folder or its sibling masks/ (the ground truth) is always refused.
    """
    from segkit.errors import DataError
    from segkit.infer.folder import OUTPUT_DIRS, check_output_dir, folder_outputs, infer_folder, list_images
    from segkit.infer.predict import load_models
    from segkit.infer.volume import infer_volume, refuse_existing, volume_outputs
    from segkit.io.slices import IMAGE_SUFFIXES
    from segkit.io.volumes import volume_suffix

    cfg = load(config, sets)
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
    from segkit.infer.predict import run_models

    model_paths = list(model) if model else run_models(run_dir)  # a cross-validation run: its fold models
    out_dir = output if output is not None else run_dir / "inference"
    # refuse unsafe or existing outputs before the model is loaded and anything is written
    if input_path.is_dir():
        check_output_dir(input_path, out_dir, OUTPUT_DIRS if images else ("",))
    if images:
        refuse_existing(folder_outputs(list_images(input_path), out_dir), overwrite)
    else:
        owner: dict[Path, Path] = {}  # output file -> the volume that writes it
        for v in volumes:
            for p in volume_outputs(v, out_dir, probabilities=save_probabilities):
                if p in owner:
                    raise DataError(
                        f"{owner[p].name} and {v.name} would both be written to {p.name}",
                        path=input_path,
                        hint="keep one of the two files in the folder (or infer each file on its own with --output)",
                    )
                owner[p] = v
        refuse_existing(list(owner), overwrite)
    from segkit.evaluate.postprocess import apply_postprocessing

    quiet_tensorflow()

    # the run folder's decision (a cross-validation run's was made for its ensemble); for models given with
    # --model: a single model's own folder, while an ensemble's members decided for themselves (the config decides)
    pp_dir = run_dir if not model else (model_paths[0].parent if len(model_paths) == 1 else None)
    cfg = apply_postprocessing(cfg, pp_dir, volumes=not images)
    net = load_models(model_paths, cfg, precision=cfg.train.precision)
    opts: dict[str, Any] = {"batch_size": batch_size, "tta": tta, "largest_component": largest,
                            "overwrite": overwrite}
    if images:
        with ExitStack() as stack:
            res = infer_folder(net, input_path, cfg, out_dir, **_bar(stack, "infer"), **opts)
        out.print(
            f"{res.n_images} images -> {out_dir} (masks/, labels/, overlays/"
            + (f", panels/ for {res.n_panels} with ground truth" if res.n_panels else "")
            + ")"
        )
        if res.tiled:
            out.print(f"{res.tiled} images differ from the model input size: sliding-window inference")
        return
    for vol in volumes:
        with ExitStack() as stack:
            r = infer_volume(net, vol, cfg, out_dir, **_bar(stack, vol.name), **opts,
                             save_probabilities=save_probabilities)
        out.print(f"{r.case_id}: shape {r.shape} -> {r.seg_path}")
        if r.probs_path is not None:
            out.print(f"{r.case_id}: probabilities {r.probs_path}")
        out.print(f"{r.case_id}: overlay {r.montage_path}")


def _bar(stack: ExitStack, name: str) -> dict[str, Any]:
    """``progress`` / ``on_start`` callbacks that open a rich progress bar (inside ``stack``) on the first call."""
    state: dict[str, Any] = {}

    def on_start(total: int) -> None:
        state["advance"] = stack.enter_context(progress(name, total))

    def on_progress(n: int) -> None:
        state["advance"](n)

    return {"progress": on_progress, "on_start": on_start}
