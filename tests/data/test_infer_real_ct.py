"""Inference on a real CT (TotalSegmentator aorta crop: LPS, non-identity affine) keeps its exact geometry."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.config import validate_config

TINY = {
    "name": "tiny-ct",
    "modality": "ct",
    "classes": [{"id": 1, "name": "aorta", "color": [255, 0, 0]},
                {"id": 2, "name": "other", "color": [0, 255, 0]}],
    "prepare": {"axis": 2, "size": [64, 64], "ct_window": [-200, 600]},
    "data": {"image_size": [32, 32], "channels": 1},
    "model": {"name": "flexunet", "base_filters": 4, "base_kernels": 3, "num_layers": 3, "dropout_rate": 0.0},
    "infer": {"batch_size": 32},
}


@pytest.mark.data
def test_real_ct_label_volume_has_exact_shape_and_affine(shared_data: Path, tmp_path: Path) -> None:
    import keras

    from segkit.infer.options import InferOptions
    from segkit.infer.volume import infer_volume
    from segkit.models import build_model
    from segkit.predict.models import load_model

    src = shared_data / "volumes" / "totalseg_aorta_ct" / "aorta_ct_image.nii.gz"
    ct = tmp_path / "aorta_ct_image.nii.gz"
    shutil.copy(src, ct)
    raw = dict(TINY, data={**TINY["data"], "dir": str(tmp_path / "no-dataset")},
               train={"run_dir": str(tmp_path / "run")})
    cfg = validate_config(raw)
    keras.utils.set_random_seed(0)
    model_path = tmp_path / "tiny.keras"
    build_model(cfg).save(model_path)

    model = load_model(model_path, cfg)
    res = infer_volume(model, ct, cfg, tmp_path / "out", InferOptions(largest_component=True).resolve(cfg))

    src_img = nib.load(str(src))
    seg = nib.load(str(res.seg_path))
    assert res.seg_path.name == "aorta_ct_image_seg.nii.gz"
    assert seg.shape == src_img.shape == (120, 126, 164)
    np.testing.assert_allclose(seg.affine, src_img.affine, atol=1e-5)
    assert nib.aff2axcodes(seg.affine) == ("L", "P", "S")
    assert seg.get_data_dtype() == np.uint8
    labels = np.asarray(seg.dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2}
    assert res.montage_path.is_file() and res.montage_path.stat().st_size > 0


@pytest.mark.data
def test_real_ct_threshold_model_lands_on_the_right_voxels(shared_data: Path, tmp_path: Path) -> None:
    """A 1x1-conv "model" that labels bright pixels must label exactly the bright voxels of the ORIGINAL
    array: any slip in reorientation, display flips or slice order would move labels away from them."""
    import keras

    from segkit.infer.volume import infer_volume
    from segkit.prepare.normalize import scale_to_uint8

    src = shared_data / "volumes" / "totalseg_aorta_ct" / "aorta_ct_image.nii.gz"
    ct = tmp_path / "ct.nii.gz"
    shutil.copy(src, ct)
    # LPS (120, 126, 164): canonical axial slices are (120, 126), displayed as (126, 120); no resize.
    raw = dict(TINY, prepare={**TINY["prepare"], "size": [126, 120]},
               data={"image_size": [126, 120], "channels": 1, "dir": str(tmp_path / "none")})
    cfg = validate_config(raw)
    inp = keras.Input((None, None, 1))
    conv = keras.layers.Conv2D(3, 1, activation="softmax")
    model = keras.Model(inp, conv(inp))
    # logits: background 0, class 1 = 100 * (x - 0.5), class 2 = -1000 -> class 1 iff uint8 value >= 128
    conv.set_weights([np.array([[[[0.0, 100.0, 0.0]]]], np.float32),
                      np.array([0.0, -50.0, -1000.0], np.float32)])
    res = infer_volume(model, ct, cfg, tmp_path / "out")
    labels = np.asarray(nib.load(str(res.seg_path)).dataobj)
    data = np.asarray(nib.load(str(src)).dataobj)
    expected = (scale_to_uint8(data, -200.0, 600.0) >= 128).astype(np.uint8)
    assert 1000 < expected.sum() < expected.size // 2  # a real, non-trivial bright structure
    np.testing.assert_array_equal(labels, expected)
