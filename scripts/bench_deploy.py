"""Deployment benchmark and equivalence check (``make bench-deploy``): the recommended preset's left-atrial
model (flexunet, 128x128) trained by ``segkit cv`` as 3 folds of a short training on the real LA volumes of
../shared/data. The single model (fold 0) and the 3-fold ensemble (the cv folder, one averaging graph) are
exported as ONNX, LiteRT and SavedModel bundles, the single model also as int8 ONNX and LiteRT; each is run
by ``segkit infer BUNDLE`` on held-out test volumes and compared with ``segkit infer RUN_DIR`` (Keras) of the
same model(s): max |dp|, label agreement, |dDice| against the reference label per case, mean Dice; then, on
one pinned core, cold start (process start to the first label volume written: ``segkit infer`` on one
volume), steady time per volume (one process loads the model(s) once, segments the test volumes once to warm
up, then again timed volume by volume: the mean), bundle size and peak memory (max RSS of the cold process).

Usage: python scripts/bench_deploy.py [--out DIR] [--epochs N] [--cases 3] [--set KEY=VALUE ...]
(``--set`` overrides reach prepare, cv and export, e.g. a toy run: ``--epochs 1 --set prepare.size=[64,64]
--set data.image_size=[64,64] --set model.num_layers=3 --set model.base_filters=4``)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from segkit.hardware import BF16_ENV, bf16_overridden

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# float32 training and a float32 Keras reference, as the README's figures were measured: on a CPU with native
# bfloat16 (AMX, AVX512-BF16) the presets' `auto` would train and predict in bfloat16 (segkit.hardware);
# SEGKIT_BF16=1 measures that instead
if not bf16_overridden():  # unless the user asked for a precision
    os.environ[BF16_ENV] = "0"
REPO = Path(__file__).resolve().parents[1]
LA = (REPO / ".." / "shared" / "data" / "volumes" / "la2018_lge_mri").resolve()
SEGKIT = [sys.executable, "-m", "segkit.cli.app"]
FORMATS = ("onnx", "litert", "savedmodel")


def segkit(*args: str, pin: bool = False) -> tuple[float, int]:
    """Run the CLI; returns (wall seconds, max RSS in MB). Raises on failure."""
    cmd = (["taskset", "-c", "0"] if pin and shutil.which("taskset") else []) + SEGKIT + list(args)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out}\n{err}")
    return wall, int(usage.ru_maxrss / 1024)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def dices(dir_: Path, cases: list[str]) -> list[float]:
    """Dice of label 1 against the reference label, per case."""
    out = []
    for c in cases:
        seg = np.asarray(nib.load(str(dir_ / f"{c}_seg.nii.gz")).dataobj)
        truth = np.asarray(nib.load(str(LA / "labelsTr" / f"{c}.nii.gz")).dataobj) > 0
        out.append(dice(seg == 1, truth))
    return out


def compare(ref_dir: Path, dir_: Path, cases: list[str]) -> dict[str, Any]:
    """Max |dp|, the share of equal labels and |dDice| (class 1 vs the reference label) over the cases."""
    max_dp, agree = 0.0, []
    for c in cases:
        pa = np.asarray(nib.load(str(ref_dir / f"{c}_probs.nii.gz")).dataobj)
        pb = np.asarray(nib.load(str(dir_ / f"{c}_probs.nii.gz")).dataobj)
        max_dp = max(max_dp, float(np.max(np.abs(pa - pb))))
        la = np.asarray(nib.load(str(ref_dir / f"{c}_seg.nii.gz")).dataobj)
        lb = np.asarray(nib.load(str(dir_ / f"{c}_seg.nii.gz")).dataobj)
        agree.append(float(np.mean(la == lb)))
    ddice = [abs(a - b) for a, b in zip(dices(ref_dir, cases), dices(dir_, cases), strict=True)]
    return {"max_abs_dp": max_dp, "min_label_agreement": min(agree), "max_abs_ddice": max(ddice)}


def train(out: Path, epochs: int, overrides: list[str]) -> Path:
    """Prepare the LA volumes with 3 folds (test cases held out) and train them with ``segkit cv``."""
    sets = [f"data.dir={out / 'data'}", f"train.run_dir={out / 'cv'}", f"train.epochs={epochs}",
            "train.time_limit=null", "train.choose_postprocessing=false", *overrides]
    s = [a for x in sets for a in ("--set", x)]
    segkit("prepare", "left-atrial", str(LA), "--out", str(out / "data"), "--folds", "3", "--fold", "0", *s)
    segkit("cv", "left-atrial", *s)
    return out / "cv"


def bundles(run: Path, out: Path, prefix: str, int8: bool) -> dict[str, Path]:
    """``segkit export`` of ``run`` to every format (and int8 ONNX / LiteRT): row name -> bundle."""
    made = {}
    for fmt in FORMATS:
        made[f"{prefix}{fmt}"] = out / f"bundle-{prefix}{fmt}"
        segkit("export", str(run), "--format", fmt, "--out", str(made[f"{prefix}{fmt}"]))
    for fmt in ("onnx", "litert") if int8 else ():
        made[f"{prefix}{fmt}-int8"] = out / f"bundle-{prefix}{fmt}-int8"
        segkit("export", str(run), "--format", fmt, "--quantize", "int8", "--out",
               str(made[f"{prefix}{fmt}-int8"]))
    return made


def size_mb(target: Path, keras_run: bool) -> float:
    """A bundle's files, or a Keras run's model file(s) (a cv folder: its folds')."""
    if not keras_run:
        files = [p for p in target.rglob("*") if p.is_file()]
    else:
        files = list(target.glob("fold_*/model.keras")) if (target / "cv.json").is_file() \
            else [target / "model.keras"]
    return round(sum(p.stat().st_size for p in files) / 1e6, 2)


def steady_worker(target: Path, vols: Path, out: Path) -> None:
    """(In the pinned child process.) Load the model(s) once as ``segkit infer`` does, segment every
    volume of ``vols`` twice (a warm-up pass, then the timed pass: reading, preprocessing, prediction,
    post-processing and writing, each volume timed on its own) and print the timed seconds per volume as
    JSON."""
    from dataclasses import replace

    from segkit.cli.common import load
    from segkit.infer import InferOptions, infer_volume, plan_inference
    from segkit.postprocess import apply_postprocessing
    from segkit.predict.bundle import bundle_config, is_bundle, load_bundle_model, read_bundle
    from segkit.predict.models import load_models

    bundle = read_bundle(target) if is_bundle(target) else None
    cfg = bundle_config(bundle) if bundle is not None else load(target)
    plan = plan_inference(cfg, vols, out / "warm")
    cfg = apply_postprocessing(cfg, plan.postprocessing_dir, volumes=True)
    net: Any = (load_bundle_model(bundle) if bundle is not None
                else load_models(list(plan.model_paths), cfg, precision=cfg.train.precision))
    settings = InferOptions().resolve(cfg)
    seconds: list[float] = []
    for pass_dir in (out / "warm", out / "timed"):
        seconds = []
        for vol in plan.volumes:
            t = time.perf_counter()
            infer_volume(net, vol, cfg, pass_dir, replace(settings, overwrite=True))
            seconds.append(time.perf_counter() - t)
    print(json.dumps(seconds))


def steady(target: Path, vols: Path, out: Path) -> float:
    """Mean seconds per volume of the timed pass of ``steady_worker``, run on one pinned core."""
    cmd = (["taskset", "-c", "0"] if shutil.which("taskset") else []) + \
        [sys.executable, __file__, "--steady", str(target), str(vols), str(out)]
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return float(np.mean(json.loads(proc.stdout.strip().splitlines()[-1])))


def measure(name: str, target: Path, ref: str, out: Path, cases: list[str]) -> dict[str, Any]:
    """One row: equivalence with the Keras row ``ref`` on ``out/volumes``, then the pinned timings."""
    res = out / f"infer-{name}"
    vols, one = str(out / "volumes"), str(out / "one")
    segkit("infer", str(target), "--input", vols, "--output", str(res), "--save-probabilities")
    cold, rss = segkit("infer", str(target), "--input", one, "--output", str(out / f"cold-{name}"), pin=True)
    per_volume = steady(target, out / "volumes", out / f"steady-{name}")
    row: dict[str, Any] = {"runtime": name, "cold_start_s": round(cold, 2),
                           "steady_s_per_volume": round(per_volume, 2),
                           "size_mb": size_mb(target, name == ref), "peak_rss_mb": rss,
                           "mean_dice": round(float(np.mean(dices(res, cases))), 4)}
    if name != ref:
        row.update(compare(out / f"infer-{ref}", res, cases))
    return row


def main() -> None:
    if sys.argv[1:2] == ["--steady"]:  # the pinned child of steady()
        steady_worker(*(Path(a) for a in sys.argv[2:5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "bench-deploy")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    cv = train(out, args.epochs, args.sets)
    splits = json.loads((out / "data" / "splits.json").read_text())
    cases = (splits["test"] + splits["valid"])[: args.cases]
    for folder, picked in (("volumes", cases), ("one", cases[:1])):
        (out / folder).mkdir()
        for c in picked:
            shutil.copy(LA / "imagesTr" / f"{c}.nii.gz", out / folder / f"{c}.nii.gz")
    targets = [("keras", cv / "fold_0", "keras"), *[(n, p, "keras") for n, p in
                                                     bundles(cv / "fold_0", out, "", True).items()],
               ("ensemble-keras", cv, "ensemble-keras"),
               *[(n, p, "ensemble-keras") for n, p in bundles(cv, out, "ensemble-", False).items()]]
    rows = []
    for name, target, ref in targets:
        rows.append(measure(name, target, ref, out, cases))
        print(json.dumps(rows[-1]), flush=True)
    (out / "bench_deploy.json").write_text(json.dumps({"cases": cases, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
