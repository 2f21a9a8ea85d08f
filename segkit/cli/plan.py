"""``segkit plan``: a dataset folder -> ``fingerprint.json`` + a commented config (a thin shell over
``segkit.plan.run_plan``)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import typer

from segkit.cli.common import RichProgress, err, handle_errors, out, quiet_tensorflow

_EPILOG = (
    "Examples:\n\n\b\n"
    "  segkit plan ../shared/data/volumes/la2018_lge_mri --preset-like left-atrial --budget 20\n"
    "  segkit plan ../shared/data/volumes/acdc_cine_mri --preset-like acdc --out plans/acdc\n"
    "  segkit plan ../shared/data/volumes/acdc_cine_mri --image-glob '*_frame01_image.nii.gz' "
    "--label-glob '*_frame01_label.nii.gz' --out plans/acdc-frame01\n"
    "  segkit plan ../shared/data/volumes/totalseg_aorta_ct --image-glob '*_ct_image.nii.gz' "
    "--label-glob '*_ct_lumen_label.nii.gz' --preset-like hocm --name aorta   # one volume: 5 blocks"
)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@handle_errors
def plan(
    data: Path = typer.Argument(..., help="Raw dataset folder: imagesTr/ + labelsTr/, or <case>_image + "
                                "<case>_label volumes (any format segkit reads); else give --image-glob and "
                                "--label-glob."),
    out_dir: Path = typer.Option(None, "--out", "-o", help="Folder for fingerprint.json and config.yaml "
                                 "[default: plans/<name of DATA>]."),
    budget: float = typer.Option(20.0, "--budget", min=0.1, help="Training wall-clock minutes "
                                 "(train.time_limit); sizes epochs and batch."),
    preset_like: str = typer.Option("left-atrial", "--preset-like", help="Preset whose tuned recipe (model, "
                                    "loss, schedule, augmentation, split) and class names are kept."),
    cores: int = typer.Option(None, "--cores", min=1, help="CPU cores training will use [default: this "
                              "process's]."),
    name: str = typer.Option(None, "--name", help="Config name (data/<name>, runs/<name>) [default: DATA's "
                             "folder name]."),
    image_glob: str = typer.Option(None, "--image-glob", help="Image pattern with one '*' = case id (as "
                                   "segkit prepare nifti)."),
    label_glob: str = typer.Option(None, "--label-glob", help="Label pattern with one '*' = case id."),
) -> None:
    """Fingerprint a labelled volume dataset and plan a config for it (nnU-Net-style self-configuration).

    Writes OUT/fingerprint.json (per case and summarised: spacings, shapes, orientation, modality guess,
    foreground boxes, foreground intensity statistics, class frequencies) and OUT/config.yaml (target
    spacing, window, levels, batch and epochs for the budget, normalisation, 2D/2.5D, cascade; a comment on
    every choice). The config passes `segkit config check` and trains as written after `segkit prepare`
    (the command is in its header). A dataset of one labelled volume is planned as blocks of its slices
    (prepare.slabs; 5, fewer when it is short): one to validate, one to test, the others to train; its
    scores are within one patient.
    """
    from segkit.plan import PlanOptions, dataset_name, run_plan
    from segkit.plan.layout import detect_layout, find_cases

    layout = detect_layout(data, image_glob, label_glob)  # a bad folder fails before TensorFlow loads,
    find_cases(data, layout)  # and so does one without a labelled case
    quiet_tensorflow()
    options = PlanOptions(name or dataset_name(data), budget, cores or _cores(), preset_like)
    folder = out_dir or Path("plans") / options.name
    with RichProgress() as bar:
        result = run_plan(data, folder, options, layout, progress=bar)
    for line in result.problems:
        err.print(f"left out: {line}", highlight=False, soft_wrap=True)
    cfg, geo = result.config, result.geometry
    out.print(f"{cfg.name}: {len(cfg.classes)} classes, {cfg.modality}; slices along axis {geo.axis} "
              f"at {geo.spacing[0]:g} x {geo.spacing[1]:g} mm; "
              + (f"cascade: coarse {geo.coarse_size[0]}x{geo.coarse_size[1]} whole slices, fine crop "
                 if geo.coarse_size else "window ")
              + f"{geo.size[0]}x{geo.size[1]}, "
              f"{geo.num_layers} levels, {result.gflops:.2f} GFLOP an image; batch {cfg.train.batch_size}, "
              f"{cfg.train.epochs} epochs in {cfg.train.time_limit:g} min", highlight=False, soft_wrap=True)
    out.print(f"wrote {result.fingerprint_path} and {result.config_path}", highlight=False, soft_wrap=True)
    out.print(f"next: {result.prepare_command}", highlight=False, soft_wrap=True)


plan.__doc__ = inspect.cleandoc(plan.__doc__ or "") + "\n\n" + _EPILOG
