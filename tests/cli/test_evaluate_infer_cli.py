"""`segkit evaluate` and `segkit infer`: happy paths on the phantom with a tiny untrained model, the one-line
errors (missing model, class-count mismatch, 2D volume), and a slow end-to-end run with a trained model.

The model is a flexunet with base_filters 4, num_layers 3 at 32x32 (the phantom slices are 64x64, so folder
inference exercises sliding windows); untrained weights are enough for shapes, files and errors.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from segkit.cli.app import app
from segkit.config import load_config

runner = CliRunner()

TINY = [
    "model.num_layers=3",
    "model.base_filters=4",
    "data.image_size=[32,32]",
    "infer.batch_size=16",
    # no XLA compilation of each command's predict function (demo.yaml turns it on): the README's quick start
    # (test_readme_commands) trains, evaluates and infers the demo with it
    "train.jit_compile=false",
]


def _sets(*items: str) -> list[str]:
    args: list[str] = []
    for s in items:
        args += ["--set", s]
    return args


def _stderr_lines(result) -> list[str]:  # noqa: ANN001 - click Result
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo_config(repo_root: Path) -> Path:
    return repo_root / "configs" / "demo.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, demo_config: Path) -> dict[str, Path]:
    """A 3-case phantom dataset and a tiny untrained model saved as run/model.keras."""
    import keras

    from segkit.models import build_model

    root = tmp_path_factory.mktemp("evinf")
    data, run = root / "data", root / "run"
    res = runner.invoke(app, ["prepare", "phantom", "--out", str(data), "--config", str(demo_config),
                              "--n", "3", "--workers", "1"])
    assert res.exit_code == 0, res.output
    sets = [*TINY, f"data.dir={data}", f"train.run_dir={run}"]
    cfg = load_config(demo_config, sets)
    keras.utils.set_random_seed(1)
    run.mkdir()
    build_model(cfg).save(run / "model.keras")
    return {"root": root, "data": data, "run": run, "config": demo_config}


def _base(setup: dict[str, Path]) -> list[str]:
    return _sets(*TINY, f"data.dir={setup['data']}", f"train.run_dir={setup['run']}")


def test_help() -> None:
    for cmd in ("evaluate", "infer"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Usage: segkit " + cmd in res.output and "--set" in res.output


def test_evaluate_writes_reports(setup: dict[str, Path]) -> None:
    out = setup["root"] / "eval"
    res = runner.invoke(app, ["evaluate", str(setup["config"]), "--out", str(out), *_base(setup)])
    assert res.exit_code == 0, res.output
    assert "foreground" in res.stdout and "dice_coef_multiclass" in res.stdout
    with open(out / "evaluation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    manifest = json.loads((setup["data"] / "dataset.json").read_text())
    test_cases = sorted(c for c, r in manifest["cases"].items() if r["split"] == "test")
    # one row per case x foreground class, background never reported
    assert sorted({(r["case_id"], r["class_name"]) for r in rows}) == sorted(
        (c, n) for c in test_cases for n in ("ventricle", "atrium", "vessel")
    )
    assert len(rows) == 3 * len(test_cases)
    summary = json.loads((out / "evaluation.json").read_text())
    # the phantom's source volumes still sit in data/raw: every slice is predicted, original labels are the
    # reference
    assert summary["reference"] == "original label volumes"
    assert "per-case reference: original label volumes" in res.stdout
    assert summary["reference_per_case"] == {c: "original label volumes" for c in test_cases}
    assert (summary["surface_distance_implementation"]
            == "scipy.ndimage.distance_transform_edt (sampling=spacing)")
    # ref voxels per case = the raw phantom label's foreground, including slices prepare did not write
    for c in test_cases:
        lbl = np.asarray(nib.load(manifest["cases"][c]["label"]).dataobj)
        for cid, name in ((1, "ventricle"), (2, "atrium"), (3, "vessel")):
            row = next(r for r in rows if r["case_id"] == c and r["class_name"] == name)
            assert int(row["ref_voxels"]) == int((lbl == cid).sum())
            assert int(row["tp"]) + int(row["fp"]) == int(row["pred_voxels"])
    assert set(summary["per_class"]) == {"ventricle", "atrium", "vessel"}
    assert set(summary["per_class"]["vessel"]["hd95_mm"]) == {"mean", "median", "std", "n", "n_nan", "n_inf"}
    assert "dice" in summary["foreground_mean"] and summary["seed_dice_coef_multiclass"]["probabilities"] > 0
    m = np.array(summary["confusion_matrix"]["matrix"])
    n_slices = len(list((setup["data"] / "test" / "images").iterdir()))
    assert m.shape == (4, 4) and m.sum() == n_slices * 32 * 32  # every pixel of every slice at model size
    for name in ("confusion_matrix.png", "boxplot_dice.png", "evaluation_slices.csv"):
        assert (out / name).stat().st_size > 0


def test_infer_volume_keeps_shape_and_affine(setup: dict[str, Path]) -> None:
    vol = sorted((setup["data"] / "raw").rglob("*image*.nii.gz"))[0]
    out = setup["root"] / "inf_vol"
    res = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(vol), "--output", str(out),
                              "--largest-component", "--tta", "--batch-size", "8", *_base(setup)])
    assert res.exit_code == 0, res.output
    segs = list(out.glob("*_seg.nii.gz"))
    assert len(segs) == 1 and list(out.glob("*_overlay.png"))
    src, seg = nib.load(str(vol)), nib.load(str(segs[0]))
    assert seg.shape == src.shape and np.allclose(seg.affine, src.affine, atol=1e-5)
    assert seg.get_data_dtype() == np.uint8


def test_infer_folder_with_truth_and_tiling(setup: dict[str, Path]) -> None:
    images = setup["data"] / "test" / "images"
    out = setup["root"] / "inf_png"
    res = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(images), "--output", str(out),
                              *_base(setup)])
    assert res.exit_code == 0, res.output
    n = len(list(images.iterdir()))
    assert "sliding-window" in res.stdout  # 64x64 slices, 32x32 model
    for sub in ("masks", "labels", "overlays", "panels"):
        assert len(list((out / sub).glob("*.png"))) == n
    stem = sorted(images.iterdir())[0].stem
    import cv2

    panel = cv2.imread(str(out / "panels" / f"{stem}.png"))
    # column titles (a 26-row dark strip), then image | truth | prediction at the image's own size
    assert panel.shape == (26 + 64, 3 * 64, 3)
    assert panel[:26].max() == 255 and np.median(panel[:26]) == 24  # white titles on the dark strip
    assert cv2.imread(str(out / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).max() <= 3


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (bytes, mtime_ns)."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_infer_refuses_output_into_input_or_ground_truth(setup: dict[str, Path]) -> None:
    test_dir = setup["data"] / "test"
    images = test_dir / "images"
    before = _snapshot(test_dir)
    cases = [(test_dir, test_dir / "masks", "the ground-truth masks folder"),  # data/test -> data/test/masks
             (images, images / "masks", "the input folder")]
    for output, offending, what in cases:
        res = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(images),
                                  "--output", str(output), "--overwrite", *_base(setup)])
        assert res.exit_code == 2, res.output
        lines = _stderr_lines(res)
        assert len(lines) == 1 and "Traceback" not in res.output
        assert lines[0].startswith(f"error: {offending}: output would write into {what}")
        assert lines[0].endswith("(hint: choose another --output)")
    assert _snapshot(test_dir) == before  # ground truth and images untouched, nothing added


@pytest.mark.parametrize("kind", ["volume", "folder"])
def test_infer_refuses_existing_outputs_unless_overwrite(setup: dict[str, Path], kind: str) -> None:
    if kind == "volume":
        src = sorted((setup["data"] / "raw").rglob("*image*.nii.gz"))[0]
        first = f"{src.name[: -len('.nii.gz')]}_seg.nii.gz"
    else:
        src = setup["data"] / "test" / "images"
        first = f"masks/{sorted(src.iterdir())[0].stem}.png"
    out = setup["root"] / f"again_{kind}"
    cmd = ["infer", str(setup["config"]), "--input", str(src), "--output", str(out), *_base(setup)]
    assert runner.invoke(app, cmd).exit_code == 0
    before = _snapshot(out)
    assert first in before
    res = runner.invoke(app, cmd)
    assert res.exit_code == 2
    lines = _stderr_lines(res)
    assert len(lines) == 1 and "Traceback" not in res.output
    assert lines[0].startswith(f"error: {out / first}: output file already exists")
    assert "--overwrite" in lines[0]
    assert _snapshot(out) == before  # untouched
    res = runner.invoke(app, [*cmd, "--overwrite"])
    assert res.exit_code == 0, res.output
    after = _snapshot(out)
    assert after.keys() == before.keys()
    assert all(after[k][1] != before[k][1] for k in after)  # every output rewritten (atomic replace)


def test_missing_model_is_one_line(setup: dict[str, Path]) -> None:
    missing = setup["root"] / "nope.keras"
    for cmd in (["evaluate", str(setup["config"])],
                ["infer", str(setup["config"]), "--input", str(setup["data"] / "test" / "images")]):
        res = runner.invoke(app, [*cmd, "--model", str(missing), *_base(setup)])
        assert res.exit_code == 2
        lines = _stderr_lines(res)
        assert len(lines) == 1 and "Traceback" not in res.output
        assert lines[0].startswith(f"error: {missing}: model file not found") and "segkit train" in lines[0]


def test_class_count_mismatch_names_both_numbers(setup: dict[str, Path]) -> None:
    res = runner.invoke(app, ["evaluate", str(setup["config"]), *_base(setup),
                              "--set", "prepare.binary=true"])
    assert res.exit_code == 2
    lines = _stderr_lines(res)
    assert len(lines) == 1
    assert "the model outputs 4 classes but the config has 2" in lines[0]


# a 4D NIfTI is one volume per phase (issue 18's cine rule): tests/data/test_series_selection.py
@pytest.mark.parametrize(("shape", "ndim"), [((16, 16), 2)])
def test_2d_volume_is_one_line(setup: dict[str, Path], shape: tuple[int, ...], ndim: int) -> None:
    bad = setup["root"] / f"bad{ndim}d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), str(bad))
    res = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(bad), "--output",
                              str(setup["root"] / "bad"), *_base(setup)])
    assert res.exit_code == 2
    lines = _stderr_lines(res)
    assert len(lines) == 1 and f"expected a 3D volume, got {ndim}D" in lines[0] and str(bad) in lines[0]


def test_infer_refuses_two_volumes_with_one_output_name(setup: dict[str, Path]) -> None:
    folder = setup["root"] / "twins"
    folder.mkdir()
    img = nib.Nifti1Image(np.zeros((16, 16, 3), np.int16), np.eye(4))
    nib.save(img, str(folder / "case1.nii"))
    nib.save(img, str(folder / "case1.nii.gz"))
    out = setup["root"] / "twins_out"
    res = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(folder), "--output", str(out),
                              *_base(setup)])
    assert res.exit_code == 2
    lines = _stderr_lines(res)
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {folder}: case1.nii and case1.nii.gz would both be written to "
                               "case1_seg.nii.gz")
    assert not out.exists()


@pytest.mark.parametrize("fault", ["full", "readonly"])
def test_infer_onto_a_full_or_read_only_disk_is_one_line(
    setup: dict[str, Path], small_disk, fault: str  # noqa: ANN001
) -> None:
    disk = small_disk("4K", readonly=fault == "readonly")
    src = sorted((setup["data"] / "raw").rglob("*image*.nii.gz"))[0]
    out = disk / "pred"
    res = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(src), "--output", str(out),
                              *_base(setup)])
    assert res.exit_code == 2, res.output
    lines = [line for line in _stderr_lines(res) if line.startswith("error:")]
    what = "no space left on the device" if fault == "full" else "the file system is read-only"
    assert len(lines) == 1 and f"cannot write: {what} (hint: " in lines[0], res.stderr
    assert lines[0].startswith(f"error: {out}") and "Traceback" not in res.output
    assert not [p for p in disk.rglob("*") if ".tmp" in p.name]


def test_tensorflow_start_up_lines_stay_off_the_terminal(setup: dict[str, Path]) -> None:
    """A real process (TensorFlow's C++ lines go to file descriptor 2, which CliRunner does not capture)."""
    import subprocess
    import sys

    missing = setup["root"] / "nope.keras"
    cmd = [sys.executable, "-m", "segkit.cli.app", "evaluate", str(setup["config"]), "--model", str(missing),
           *_base(setup)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "SEGKIT_DEBUG": "0"})
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr  # no absl / oneDNN / cuInit lines before the error
    assert lines[0].startswith(f"error: {missing}: model file not found")


def test_tensorflow_chatter_filter_keeps_real_gpu_problems() -> None:
    from segkit.cli.common import tensorflow_chatter

    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see ...\n"
        "I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.\n"
        "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
        "CUDA error: UNKNOWN ERROR (303)\n"
        "E0000 00:00:1.0 1 something.cc:1] out of memory\n"
    )
    assert tensorflow_chatter(text, gpu_driver=False) == ["E0000 00:00:1.0 1 something.cc:1] out of memory"]
    kept = tensorflow_chatter(text, gpu_driver=True)
    assert len(kept) == 3 and "cuInit" in kept[1]  # with a driver loaded, a CUDA failure is news


@pytest.mark.slow
def test_end_to_end_train_evaluate_infer(setup: dict[str, Path]) -> None:
    """Train a tiny model briefly on the phantom, then evaluate and infer with it (< 60 s on 2 cores)."""
    run = setup["root"] / "trained"
    base = _sets(*TINY, f"data.dir={setup['data']}", f"train.run_dir={run}")
    train = ["train.epochs=1", "train.steps_per_epoch=2", "train.validation_steps=1", "train.batch_size=4",
             "train.epoch_change_infer.enabled=false"]
    res = runner.invoke(app, ["train", str(setup["config"]), *base, *_sets(*train)])
    assert res.exit_code == 0, res.output
    assert (run / "model.keras").is_file()
    res = runner.invoke(app, ["evaluate", str(setup["config"]), *base])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(run / "evaluation" / "evaluation.csv", newline="")))
    assert {r["class_name"] for r in rows} == {"ventricle", "atrium", "vessel"}
    summary = json.loads((run / "evaluation" / "evaluation.json").read_text())
    assert summary["volumetric"] is True and summary["n_cases"] == len({r["case_id"] for r in rows})
    vol = sorted((setup["data"] / "raw").rglob("*image*.nii.gz"))[-1]
    res = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(vol), *base])
    assert res.exit_code == 0, res.output
    seg = nib.load(str(next((run / "inference").glob("*_seg.nii.gz"))))
    src = nib.load(str(vol))
    assert seg.shape == src.shape and np.allclose(seg.affine, src.affine, atol=1e-5)


# === evaluate --predictions: score any tool's label volumes ===


def test_evaluate_predictions_equals_evaluate_of_the_model(setup: dict[str, Path]) -> None:
    """segkit infer's volumes, scored by --predictions against the raw labels, give the numbers evaluate
    gives."""
    import shutil

    manifest = json.loads((setup["data"] / "dataset.json").read_text())
    test_cases = sorted(c for c, r in manifest["cases"].items() if r["split"] == "test")
    inputs, refs = setup["root"] / "sc_in", setup["root"] / "sc_ref"
    inputs.mkdir()
    refs.mkdir()
    for c in test_cases:
        shutil.copy(manifest["cases"][c]["image"], inputs)
        shutil.copy(manifest["cases"][c]["label"], refs)
    preds = setup["root"] / "sc_pred"
    assert runner.invoke(app, ["infer", str(setup["config"]), "--input", str(inputs), "--output", str(preds),
                               *_base(setup)]).exit_code == 0
    ev_model = setup["root"] / "sc_eval_model"
    assert runner.invoke(app, ["evaluate", str(setup["config"]), "--out", str(ev_model),
                               *_base(setup)]).exit_code == 0
    ev_pred = setup["root"] / "sc_eval_pred"
    res = runner.invoke(app, ["evaluate", str(setup["config"]), "--predictions", str(preds),
                              "--reference", str(refs), "--out", str(ev_pred), *_base(setup)])
    assert res.exit_code == 0, res.output
    assert f"{preds}: {len(test_cases)} cases" in res.stdout

    def rows(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
        with open(folder / "evaluation.csv", newline="") as f:
            return {(r["case_id"], r["class_name"]): r for r in csv.DictReader(f)}

    a, b = rows(ev_model), rows(ev_pred)
    assert a.keys() == b.keys() == {(c, n) for c in test_cases for n in ("ventricle", "atrium", "vessel")}
    for k in a:
        for m in ("dice", "iou", "hd95_mm", "assd_mm", "nsd", "tp", "fp", "fn", "ref_voxels"):
            assert a[k][m] == b[k][m], (k, m, a[k][m], b[k][m])


def test_evaluate_predictions_hand_computed_without_config(tmp_path: Path) -> None:
    ref = np.zeros((10, 10, 4), np.uint8)
    ref[2:6, 2:6, 1:3] = 1  # 32 voxels
    ref[7:9, 7:9, 0] = 2  # 4 voxels
    pred = np.zeros_like(ref)
    pred[3:7, 2:6, 1:3] = 1  # 24 overlapping of 32
    pred[0, 0, 3] = 3  # a label the reference lacks: a class too
    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    nib.save(nib.Nifti1Image(pred, aff), str(tmp_path / "p" / "case1_seg.nii.gz"))  # segkit infer naming
    nib.save(nib.Nifti1Image(ref, aff), str(tmp_path / "r" / "case1_label.nii.gz"))
    res = runner.invoke(app, ["evaluate", "--predictions", str(tmp_path / "p"),
                              "--reference", str(tmp_path / "r"), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "ev" / "evaluation.csv", newline="") as f:
        rows = {r["class_name"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"label_1", "label_2", "label_3"}
    assert float(rows["label_1"]["dice"]) == pytest.approx(2 * 24 / (32 + 32))
    assert float(rows["label_2"]["dice"]) == 0.0 and rows["label_2"]["hd95_mm"] == "inf"
    assert int(rows["label_3"]["fp"]) == 1 and int(rows["label_3"]["ref_voxels"]) == 0
    summary = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert summary["n_cases"] == 1 and np.array(summary["confusion_matrix"]["matrix"]).sum() == ref.size


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("unpaired", "1 prediction(s) without a reference: b_seg.nii.gz"),
        ("missing", "1 reference(s) without a prediction: b.nii.gz"),
        ("shape", "prediction and reference shapes differ: a_seg.nii.gz (8, 8, 3) vs a.nii.gz (8, 8, 4)"),
        ("affine", "prediction and reference affines differ (a_seg.nii.gz vs a.nii.gz)"),
        ("twice", "a.nii and a_seg.nii.gz both name case 'a'"),
    ],
)
def test_evaluate_predictions_refuses_bad_pairs_in_one_line(
    tmp_path: Path, layout: str, message: str
) -> None:
    p, r = tmp_path / "p", tmp_path / "r"
    p.mkdir()
    r.mkdir()
    vol = np.zeros((8, 8, 4), np.uint8)
    vol[2:5, 2:5, 1] = 1
    nib.save(nib.Nifti1Image(vol[..., :3] if layout == "shape" else vol, np.eye(4)), str(p / "a_seg.nii.gz"))
    affine = np.diag([2.0, 1, 1, 1]) if layout == "affine" else np.eye(4)
    nib.save(nib.Nifti1Image(vol, affine), str(r / "a.nii.gz"))
    if layout == "unpaired":
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(p / "b_seg.nii.gz"))
    if layout == "missing":
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(r / "b.nii.gz"))
    if layout == "twice":
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(p / "a.nii"))
    res = runner.invoke(app, ["evaluate", "--predictions", str(p), "--reference", str(r),
                              "--out", str(tmp_path / "e")])
    assert res.exit_code == 2, res.output
    lines = _stderr_lines(res)
    assert len(lines) == 1 and message in lines[0] and "(hint: " in lines[0], lines
    assert not (tmp_path / "e").exists()


# === ensembles and probability maps ===


def test_ensemble_is_the_mean_of_its_members(setup: dict[str, Path]) -> None:
    import keras

    from segkit.models import build_model
    from segkit.predict.models import load_model, load_models

    cfg = load_config(setup["config"], [*TINY, f"data.dir={setup['data']}", f"train.run_dir={setup['run']}"])
    keras.utils.set_random_seed(7)
    other = setup["root"] / "other.keras"
    build_model(cfg).save(other)
    paths = [setup["run"] / "model.keras", other]
    ens = load_models(paths, cfg)
    x = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
    members = [load_model(p, cfg).predict_on_batch(x) for p in paths]
    np.testing.assert_allclose(ens.predict_on_batch(x), (members[0] + members[1]) / 2, atol=1e-6)
    assert not np.allclose(members[0], members[1])  # two different models, so the test can fail


def test_infer_ensemble_with_probability_maps(setup: dict[str, Path]) -> None:
    import keras

    from segkit.models import build_model

    cfg = load_config(setup["config"], [*TINY, f"data.dir={setup['data']}", f"train.run_dir={setup['run']}"])
    keras.utils.set_random_seed(11)
    second = setup["root"] / "second.keras"
    build_model(cfg).save(second)
    vol = sorted((setup["data"] / "raw").rglob("*image*.nii.gz"))[0]
    out = setup["root"] / "ens"
    res = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(vol), "--output", str(out),
                              "--model", str(setup["run"] / "model.keras"), "--model", str(second),
                              "--save-probabilities", *_base(setup)])
    assert res.exit_code == 0, res.output
    probs_file = next(out.glob("*_probs.nii.gz"))
    seg_file = next(out.glob("*_seg.nii.gz"))
    src, probs, seg = nib.load(str(vol)), nib.load(str(probs_file)), nib.load(str(seg_file))
    assert probs.shape == (*src.shape, 4) and np.allclose(probs.affine, src.affine, atol=1e-5)
    p = np.asarray(probs.dataobj, dtype=np.float64)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-4)  # a distribution per voxel
    assert (p.argmax(-1) == np.asarray(seg.dataobj)).mean() > 0.999  # the labels are its argmax (ties aside)
    again = runner.invoke(app, ["infer", str(setup["config"]), "--input", str(vol), "--output", str(out),
                                "--save-probabilities", *_base(setup)])
    # probabilities count as output
    assert again.exit_code == 2 and "output file already exists" in again.stderr
