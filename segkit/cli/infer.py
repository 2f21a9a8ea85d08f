"""``segkit infer``: label volumes / masks from a trained model (a thin shell over ``segkit.infer``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from segkit.cli.common import RichProgress, handle_errors, load, out, quiet_tensorflow

_INPUT_HELP = ("A volume (NIfTI, NRRD, MHA/MHD, NPY/NPZ, HDF5), a DICOM series folder, a folder of volumes "
               "and DICOM series (one output per series or cine phase), or a folder of PNG/JPG slices.")
_FORMAT_HELP = ("Volumes: label format nifti (.nii.gz), nrrd, mha, seg.nrrd (3D Slicer segments) or "
                "dicom-seg (needs a DICOM series input).")
_GLOB_HELP = ("Folder input: only files (or DICOM series names) matching this pattern; default every volume "
              "except label-named ones (*_label*, *_seg*, labelsTr/).")

_TILT_HELP = "DICOM: resample a gantry-tilted series onto an untilted grid (refused otherwise)."


@handle_errors
def infer(
    config: Path = typer.Argument(
        ..., help="YAML config of the run, the run folder itself (train.run_dir), or a bundle folder "
        "(segkit export: runs with ONNX Runtime / LiteRT, no TensorFlow)."
    ),
    input_path: Path = typer.Option(..., "--input", "-i", help=_INPUT_HELP),
    output: Path = typer.Option(
        None, "--output", "-o", help="Output folder (default: <train.run_dir>/inference)."
    ),
    model: list[Path] = typer.Option(
        None, "--model", "-m",
        help="Model .keras file (default: <train.run_dir>/model.keras, or every fold's model of a segkit cv "
        "run); repeat it to ensemble (mean probabilities).",
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", "-b", min=1, help="Slices per model call (default: infer.batch_size)."
    ),
    tta: bool = typer.Option(
        None, "--tta/--no-tta", help="Flip test-time augmentation (default: infer.tta)."
    ),
    largest: bool = typer.Option(
        None, "--largest-component/--all-components", help="Keep the largest connected component per class."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace existing output files (refused otherwise)."
    ),
    save_probabilities: bool = typer.Option(
        False, "--save-probabilities",
        help="Volumes: also write <case>_probs.nii.gz (float32, one channel per class).",
    ),
    output_format: str = typer.Option("nifti", "--output-format", help=_FORMAT_HELP),
    glob: str = typer.Option(None, "--glob", help=_GLOB_HELP),
    resample_tilt: bool = typer.Option(False, "--resample-tilt", help=_TILT_HELP),
    video: bool = typer.Option(
        False, "--video",
        help="Volumes: also write <case>_overlay.mp4 (H.264, plays in a browser): every slice with the "
        "label overlay, its slice number and the class legend.",
    ),
    video_format: str = typer.Option(
        "mp4", "--video-format", metavar="mp4|gif", help="With --video: mp4 (small) or gif (larger)."
    ),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE",
        help="Config override KEY=VALUE, e.g. train.precision=mixed_bfloat16."
    ),
) -> None:
    """Segment volumes (-> <case>_seg.nii.gz in the input's exact geometry + overlay PNG) or slice folders.

    Volumes get exactly the preprocessing of `segkit prepare` (from the dataset's dataset.json, else the
    config). Slice folders get colour masks, indexed masks, overlays, and image|truth|prediction panels when a
    sibling masks/ folder holds ground truth. Existing outputs are refused unless --overwrite, and an --output
    that would write into the input folder or its sibling masks/ (the ground truth) is always refused.
    """
    from segkit.infer.options import InferOptions
    from segkit.infer.run import plan_inference, run_inference
    from segkit.predict.bundle import bundle_config, is_bundle, read_bundle

    bundle = read_bundle(config) if is_bundle(config) else None  # checked (sha256) before anything runs
    cfg = bundle_config(bundle, sets or ()) if bundle is not None else load(config, sets)
    # refuse bad input and unsafe or existing outputs before TensorFlow is imported and anything is written
    options = InferOptions(batch_size=batch_size, tta=tta, largest_component=largest, overwrite=overwrite,
                           save_probabilities=save_probabilities, output_format=output_format, glob=glob,
                           resample_tilt=resample_tilt)
    plan = plan_inference(cfg, input_path, output, models=model or None, options=options)
    videos = _videos(plan, video_format, overwrite) if video else {}
    if bundle is None or bundle.format == "savedmodel":  # ONNX and LiteRT bundles run without TensorFlow
        quiet_tensorflow()
    bar = RichProgress()  # one bar per volume (a new volume closes the last one)
    with bar:
        res = run_inference(plan, cfg, options=options, progress=bar, on_volume=_printer(bar, videos, cfg))
    if res.folder is not None:
        f = res.folder
        out.print(
            f"{f.n_images} images -> {plan.out_dir} (masks/, labels/, overlays/"
            + (f", panels/ for {f.n_panels} with ground truth" if f.n_panels else "")
            + ")"
        )
        if f.tiled:
            out.print(f"{f.tiled} images differ from the model input size: sliding-window inference")


def _printer(bar: RichProgress, videos: dict[str, tuple[Any, Path]], cfg: Any) -> Callable[[Any], None]:
    """``on_volume`` of ``run_inference``: close the volume's bar, print what it wrote and write its video."""

    def show(r: Any) -> None:  # segkit.infer.volume.VolumeResult
        bar.close()
        out.print(f"{r.case_id}: shape {r.shape} -> {r.seg_path}")
        if r.probs_path is not None:
            out.print(f"{r.case_id}: probabilities {r.probs_path}")
        out.print(f"{r.case_id}: overlay {r.montage_path}")
        if r.case_id in videos:
            from segkit.infer.video import write_overlay_video

            source, target = videos[r.case_id]
            v = write_overlay_video(source, r.seg_path, cfg, target)
            out.print(f"{r.case_id}: video {v.path} ({v.frames} slices)", soft_wrap=True)

    return show


def _videos(plan: Any, fmt: str, overwrite: bool) -> dict[str, tuple[Any, Path]]:
    """``{case id: (input volume, video file)}`` for ``--video``, checked before anything is written.

    Raises:
        ConfigError: a slice folder (no volumes), or an unknown format.
        DataError: a video file exists and not ``--overwrite``.
    """
    from segkit.errors import ConfigError
    from segkit.infer.video import VideoFormat, video_path
    from segkit.infer.volume import refuse_existing

    if fmt not in ("mp4", "gif"):
        raise ConfigError(f"unknown video format '{fmt}'", path="--video-format", hint="use mp4 or gif")
    if plan.kind != "volumes":
        raise ConfigError("--video makes one video per volume; this input is a folder of 2D slices",
                          path="--video", hint="the overlays/ folder holds one overlay per slice")
    suffix: VideoFormat = "gif" if fmt == "gif" else "mp4"
    videos = {v.case_id: (v, video_path(plan.out_dir / f"{v.case_id}_seg.nii.gz", suffix))
              for v in plan.volumes}
    refuse_existing([target for _, target in videos.values()], overwrite)
    return videos
