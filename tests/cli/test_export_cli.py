"""`segkit export` and `segkit infer BUNDLE`: ONNX / LiteRT bundles of a run folder and of a cross-validation
folder give the Keras run's labels and probabilities, run with TensorFlow and Keras unimportable, and a
tampered, unknown-version or incomplete bundle is refused with one line (exit 2).

The model is an untrained flexunet (base_filters 4, num_layers 3) at 64x64 on 3 phantom volumes; the run's
``postprocessing.json`` turns on flip TTA and the largest-component filter, so the bundle must carry and apply
them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from segkit.cli.app import app
from segkit.config import load_config

runner = CliRunner()

TINY = ["model.num_layers=3", "model.base_filters=4", "data.image_size=[64,64]", "infer.batch_size=16"]

# Runs the CLI with every import of TensorFlow, Keras or tf2onnx failing.
NO_TF = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "tf_keras"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from segkit.cli.app import app
app(sys.argv[1:], prog_name="segkit")
"""


def _sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def _run(root: Path, cfg, name: str, seed: int) -> Path:  # noqa: ANN001 - segkit.config.Config
    import keras

    from segkit.models import build_model

    run = root / name
    run.mkdir(parents=True)
    keras.utils.set_random_seed(seed)
    build_model(cfg).save(run / "model.keras")
    return run


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> dict[str, Path]:
    """Phantom data; a run folder (config.yaml, model.keras, postprocessing.json); a 2-fold cv folder."""
    root = tmp_path_factory.mktemp("export")
    data = root / "data"
    res = runner.invoke(app, ["prepare", "phantom", "--out", str(data), "--config",
                              str(repo_root / "configs" / "demo.yaml"), "--n", "3", "--workers", "1"])
    assert res.exit_code == 0, res.output
    cfg = load_config(repo_root / "configs" / "demo.yaml", [*TINY, f"data.dir={data}"])
    run = _run(root, cfg, "run", 1)
    (run / "config.yaml").write_text(cfg.to_yaml())
    (run / "postprocessing.json").write_text(json.dumps({"tta": True, "largest_component": [1]}))
    cv = root / "cv"
    for k in range(2):
        _run(cv, cfg, f"fold_{k}", 10 + k)
    (cv / "config.yaml").write_text(cfg.to_yaml())
    (cv / "cv.json").write_text(json.dumps({"folds": ["fold_0", "fold_1"]}))
    volumes = root / "volumes"
    volumes.mkdir()
    for p in sorted((data / "raw").rglob("*image*.nii.gz")):
        shutil.copy(p, volumes / p.name)
    assert len(list(volumes.iterdir())) == 3
    return {"root": root, "run": run, "cv": cv, "volumes": volumes}


def _export(run: Path, fmt: str, out: Path) -> Path:
    res = runner.invoke(app, ["export", str(run), "--format", fmt, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{fmt} bundle" in res.output and str(out) in " ".join(res.output.split())
    return out


def _infer_no_tf(bundle: Path, volumes: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run([sys.executable, "-c", NO_TF, "infer", str(bundle), "--input", str(volumes),
                           "--output", str(out), "--save-probabilities"],
                          capture_output=True, text=True, env=env, timeout=120)


def _compare(keras_out: Path, bundle_out: Path) -> None:
    segs = sorted(keras_out.glob("*_seg.nii.gz"))
    assert len(segs) == 3
    for seg in segs:
        a, b = nib.load(str(seg)), nib.load(str(bundle_out / seg.name))
        assert np.allclose(a.affine, b.affine) and a.shape == b.shape
        la, lb = np.asarray(a.dataobj), np.asarray(b.dataobj)
        assert np.mean(la == lb) >= 0.9999
        pa = np.asarray(nib.load(str(seg.with_name(seg.name.replace("_seg", "_probs")))).dataobj)
        pb = np.asarray(nib.load(str(bundle_out / seg.name.replace("_seg", "_probs"))).dataobj)
        assert np.max(np.abs(pa - pb)) <= 1e-3
        assert (bundle_out / seg.name.replace("_seg.nii.gz", "_overlay.png")).is_file()


@pytest.fixture(scope="module")
def keras_outputs(setup: dict[str, Path]) -> dict[str, Path]:
    outs = {}
    for name in ("run", "cv"):
        out = setup["root"] / f"keras-{name}"
        res = runner.invoke(app, ["infer", str(setup[name]), "--input", str(setup["volumes"]), "--output",
                                  str(out), "--save-probabilities"])
        assert res.exit_code == 0, res.output
        outs[name] = out
    return outs


@pytest.mark.parametrize(("name", "fmt"),
                         [("run", "onnx"), ("run", "litert"), ("cv", "onnx"), ("cv", "litert")])
def test_bundle_infers_like_keras_without_tensorflow(
    setup: dict[str, Path], keras_outputs: dict[str, Path], name: str, fmt: str
) -> None:
    bundle = _export(setup[name], fmt, setup["root"] / f"bundle-{name}-{fmt}")
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["format"] == fmt and meta["format_version"] == 1 and meta["model"]["name"] == "flexunet"
    assert meta["model"]["input_shape"] == [None, 64, 64, 1]
    assert meta["model"]["output_shape"] == [None, 64, 64, 4]
    assert [c["name"] for c in meta["classes"]] == ["background", "ventricle", "atrium", "vessel"]
    assert meta["classes"][0]["concept"] is None and meta["classes"][1]["concept"] == {  # demo.yaml's concept
        "category": {"code": "91723000", "scheme": "SCT", "meaning": "Anatomical Structure"},
        "type": {"code": "21814001", "scheme": "SCT", "meaning": "Ventricle"}}
    assert meta["ensemble"]["members"] == (["model.keras"] if name == "run"
                                           else ["fold_0/model.keras", "fold_1/model.keras"])
    assert meta["export_check"]["max_abs_diff"] < 1e-3
    assert set(meta["files"]) >= {meta["model"]["file"], "preprocessing.json"}
    if name == "run":
        assert meta["postprocessing"]["tta"] is True and (bundle / "postprocessing.json").is_file()
    out = setup["root"] / f"out-{name}-{fmt}"
    res = _infer_no_tf(bundle, setup["volumes"], out)
    assert res.returncode == 0, res.stderr[-2000:]
    _compare(keras_outputs[name], out)


def test_a_runtime_only_install_names_the_module_it_lacks(setup: dict[str, Path], shared_data: Path) -> None:
    """A runtime-only install (requirements-runtime.txt) has no pydicom: a DICOM input is refused with one
    line naming the module and the pip command, exit 2, nothing written."""
    bundle = setup["root"] / "bundle-run-onnx"
    if not bundle.is_dir():
        _export(setup["run"], "onnx", bundle)
    script = NO_TF.replace(
        '            raise ImportError("blocked: " + name)',
        '            raise ImportError("blocked: " + name)\n'
        '        if name.split(".")[0] == "pydicom":\n'
        '            raise ModuleNotFoundError(f"No module named {name!r}", name=name)')
    assert script != NO_TF
    out = setup["root"] / "never-dicom"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    res = subprocess.run([sys.executable, "-c", script, "infer", str(bundle), "--input",
                          str(shared_data / "dicom" / "siemens"), "--output", str(out)],
                         capture_output=True, text=True, env=env, timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert "needs the Python module 'pydicom'" in lines[0] and "pip install pydicom" in lines[0]
    assert not out.exists()


def test_runtime_requirements_match_pyproject(repo_root: Path) -> None:
    """Every line of requirements-runtime.txt is pyproject's requirement for that package, and the runtime
    file names no TensorFlow, Keras or converter."""
    import re

    block = (repo_root / "pyproject.toml").read_text().split("dependencies = [", 1)[1].split("\n]", 1)[0]
    deps = re.findall(r'^\s*"([^"]+)"', block, flags=re.M)  # no tomllib: Python 3.10 is supported
    assert len(deps) > 20
    by_name = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d.replace(" ", "") for d in deps}
    lines = [ln.strip() for ln in (repo_root / "requirements-runtime.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert {"onnxruntime", "nibabel", "numpy"} <= {re.split(r"[<>=]", ln, maxsplit=1)[0] for ln in lines}
    for line in lines:
        name = re.split(r"[<>=!~ ]", line, maxsplit=1)[0].lower()
        assert by_name.get(name) == line, f"{line} differs from pyproject's {by_name.get(name)}"
        assert name not in {"tensorflow", "keras", "tf2onnx", "onnx", "tensorboard"}


def test_bad_bundles_are_refused(setup: dict[str, Path]) -> None:
    good = setup["root"] / "bundle-run-onnx"
    if not good.is_dir():
        _export(setup["run"], "onnx", good)
    cases = {
        "tampered": lambda b: (b / "model.onnx").write_bytes((b / "model.onnx").read_bytes()[:-1] + b"\0"),
        "version": lambda b: (b / "bundle.json").write_text(
            json.dumps({**json.loads((b / "bundle.json").read_text()), "format_version": 99})),
        "missing": lambda b: (b / "preprocessing.json").unlink(),
        "extra": lambda b: (b / "evil.py").write_text("raise SystemExit"),
    }
    expect = {"tampered": "model.onnx does not match its sha256",
              "version": "unknown bundle format version 99",
              "missing": "a bundle member is missing: preprocessing.json",
              "extra": "not listed in bundle.json"}
    for case, spoil in cases.items():
        bad = setup["root"] / f"bad-{case}"
        shutil.copytree(good, bad)
        spoil(bad)
        res = runner.invoke(app, ["infer", str(bad), "--input", str(setup["volumes"]), "--output",
                                  str(setup["root"] / f"never-{case}")])
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and expect[case] in lines[0], (case, res.output)
        assert not (setup["root"] / f"never-{case}").exists()


def test_refused_model_and_format(tmp_path: Path, setup: dict[str, Path]) -> None:
    run = tmp_path / "swin"
    run.mkdir()
    cfg = load_config(setup["run"] / "config.yaml", ["model.name=swinunet"])
    (run / "config.yaml").write_text(cfg.to_yaml())
    res = runner.invoke(app, ["export", str(run), "--format", "onnx"])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1
    assert "swinunet does not export to onnx" in lines[0] and "savedmodel" in lines[0]
    assert not (run / "export-onnx").exists()
    res = runner.invoke(app, ["export", str(setup["run"]), "--format", "torchscript"])
    assert res.exit_code == 2 and "unknown export format 'torchscript'" in res.stderr


def test_export_help_shows_the_layout() -> None:
    res = runner.invoke(app, ["export", "--help"])
    assert res.exit_code == 0 and "bundle.json" in res.output and "preprocessing.json" in res.output


@pytest.mark.parametrize("fmt", ["litert", "onnx"])
def test_int8_bundle_reports_its_dice_cost(setup: dict[str, Path], fmt: str) -> None:
    bundle = setup["root"] / f"bundle-int8-{fmt}"
    res = runner.invoke(app, ["export", str(setup["run"]), "--format", fmt, "--quantize", "int8",
                              "--out", str(bundle)])
    assert res.exit_code == 0, res.output
    assert "int8 Dice on" in res.output and "prepared valid slices" in res.output
    meta = json.loads((bundle / "bundle.json").read_text())
    q = meta["model"]["quantization"]
    assert q["dice_cost"] == pytest.approx(q["dice_float32"] - q["dice_int8"], abs=2e-4)
    assert 0 < q["slices"] <= 128 and 0.0 <= q["dice_int8"] <= 1.0
    vols = q["volumes"]  # the phantom's validation case, read from its source files
    assert vols["cases"] and vols["worst_case"] in vols["cases"] and vols["rule"] == 0.01
    for c in vols["cases"].values():
        assert c["dice_cost"] == pytest.approx(c["dice_float32"] - c["dice_int8"], abs=2e-4)
        assert 0.0 <= c["dice_int8"] <= 1.0
    assert vols["max_dice_cost"] == max(c["dice_cost"] for c in vols["cases"].values())
    assert f"whole validation volume(s): worst {vols['worst_case']}" in " ".join(res.output.split())
    assert ("ONNX Runtime static quantization, QDQ" in q["kind"]) == (fmt == "onnx")
    assert sorted(meta["files"]) == [meta["model"]["file"], "postprocessing.json", "preprocessing.json"]
    if fmt == "onnx":  # QDQ: int8 weights dequantized before the convolutions
        import onnx

        ops = {n.op_type for n in onnx.load(str(bundle / "model.onnx")).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    out = setup["root"] / f"out-int8-{fmt}"
    res = runner.invoke(app, ["infer", str(bundle), "--input", str(setup["volumes"]), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert len(list(out.glob("*_seg.nii.gz"))) == 3


def test_int8_is_refused_for_savedmodel(setup: dict[str, Path]) -> None:
    res = runner.invoke(app, ["export", str(setup["run"]), "--format", "savedmodel", "--quantize", "int8"])
    assert res.exit_code == 2 and "--quantize int8 is not available for --format savedmodel" in res.stderr
    assert not (setup["run"] / "export-savedmodel").exists()
