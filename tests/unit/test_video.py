"""Issue 21: overlay videos (one frame per slice, slice number and legend) and labelled overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from segkit.config import load_config
from segkit.infer.video import label_picture, legend_strip, write_overlay_video

SHARED = Path(__file__).resolve().parents[2] / "../shared/data"
LA = SHARED / "volumes/la2018_lge_mri"


def _frames_of(path: Path) -> int:
    import imageio_ffmpeg

    return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])


def test_real_la_volume_video_has_one_frame_per_slice(tmp_path: Path) -> None:
    import nibabel as nib

    cfg = load_config("left-atrial")
    image, label = LA / "imagesTr/la_100.nii.gz", LA / "labelsTr/la_100.nii.gz"
    slices = nib.load(str(image)).shape[cfg.prepare.axis]
    mp4 = write_overlay_video(image, label, cfg, tmp_path / "la_100_overlay.mp4")
    assert mp4.frames == slices == _frames_of(mp4.path)
    head = mp4.path.read_bytes()[:64]
    assert b"ftyp" in head  # an MP4 container, moov atom first (+faststart) so a browser can start at once
    import subprocess

    import imageio_ffmpeg

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(mp4.path)],
                           capture_output=True, text=True)
    assert "Video: h264" in probe.stderr and "yuv420p" in probe.stderr


def test_gif_frames_and_labels(tmp_path: Path) -> None:
    import nibabel as nib
    from PIL import Image

    cfg = load_config("demo")
    img = np.zeros((32, 32, 5), np.float32)
    img[8:24, 8:24] = 100.0
    lab = np.zeros((32, 32, 5), np.uint8)
    lab[10:20, 10:20, 1:4] = 2
    nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / "c_image.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "c_seg.nii.gz")
    gif = write_overlay_video(tmp_path / "c_image.nii.gz", tmp_path / "c_seg.nii.gz", cfg,
                              tmp_path / "c_overlay.gif")
    with Image.open(gif.path) as im:
        assert getattr(im, "n_frames", 1) == 5 == gif.frames
        first = np.asarray(im.convert("RGB"))
    assert min(first.shape[:2]) >= 384  # enlarged to a readable size, legend strip below
    strip = legend_strip(first.shape[1], cfg.effective_classes)
    assert first.shape[0] == 384 + strip.shape[0]
    for c in cfg.effective_classes:  # every class colour appears in the legend
        assert (np.abs(strip.astype(int) - np.array(c.color)).sum(-1) <= 3).any(), c.name


def test_caption_is_drawn_top_left() -> None:
    plain = np.full((100, 200, 3), 128, np.uint8)
    out = label_picture(plain, "slice 3/9")
    assert out.shape == plain.shape
    changed = np.argwhere((out != plain).any(-1))
    assert changed[:, 0].max() < 40 and changed[:, 1].max() < 120  # only the corner


@pytest.mark.slow  # builds a model and runs segkit infer (~15 s)
def test_infer_video_from_the_cli(tmp_path: Path, repo_root: Path) -> None:
    from segkit.cli.app import app
    from segkit.config import validate_config
    from segkit.models import build_model

    runner = CliRunner()
    demo = repo_root / "configs/demo.yaml"
    data = tmp_path / "data"
    res = runner.invoke(app, ["prepare", "phantom", "--out", str(data), "--config", str(demo), "--n", "3",
                              "--workers", "1"])
    assert res.exit_code == 0, res.output
    raw = sorted((data / "raw").glob("*_image.nii.gz"))[0]
    cfg = load_config(demo, ["model.num_layers=2", "model.base_filters=4"])
    model = build_model(validate_config(cfg.to_yaml_data()))
    model.save(tmp_path / "m.keras")
    args = ["infer", str(demo), "--input", str(raw), "--model", str(tmp_path / "m.keras"),
            "--output", str(tmp_path / "out"), "--video", "--set", "model.num_layers=2",
            "--set", "model.base_filters=4", "--set", f"data.dir={data}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (res.stdout, res.stderr)
    case = raw.name[: -len("_image.nii.gz")] + "_image"
    video = tmp_path / "out" / f"{case}_overlay.mp4"
    import nibabel as nib

    assert _frames_of(video) == nib.load(str(raw)).shape[cfg.prepare.axis]
    assert f"video {video} (40 slices)" in res.stdout
    again = runner.invoke(app, args)  # refused before anything is written
    assert again.exit_code == 2 and "already exists" in again.output


def test_enlarge_caps_the_long_side() -> None:
    from segkit.infer.video import MAX_SIDE, enlarge

    small = enlarge(np.zeros((64, 48, 3), np.uint8))  # short side 48 -> x8 (384 px); long side 512
    assert small.shape == (512, 384, 3)
    strip = enlarge(np.zeros((4, 256, 3), np.uint8))  # a slice across a 4-slice series: x4, not x96
    assert strip.shape == (16, MAX_SIDE, 3)


def test_video_of_a_real_dicom_series_across_its_slices(tmp_path: Path) -> None:
    """A 4-slice sagittal DICOM series cut along the preset's axis gives 256 thin frames: they must still
    encode (the enlarged frame once was 24,608 px long and ffmpeg refused it)."""
    import nibabel as nib

    from segkit.io.volumes import VolumeRef, load_volume

    ref = VolumeRef(SHARED / "dicom/siemens")
    vol = load_volume(ref)
    seg = tmp_path / "siemens_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(vol.data.shape, np.uint8), vol.affine), str(seg))
    cfg = load_config("demo")
    mp4 = write_overlay_video(ref, seg, cfg, tmp_path / "siemens_overlay.mp4")
    ras_shape = nib.orientations.apply_orientation(
        np.zeros(vol.data.shape), nib.orientations.io_orientation(vol.affine)).shape
    assert mp4.frames == ras_shape[cfg.prepare.axis] == _frames_of(mp4.path)
