"""Deployment benchmark and equivalence check (``make bench-deploy``): a short-trained left-atrial model (the
recommended preset's flexunet, 128x128) on the real LA volumes of ../shared/data, exported as ONNX, LiteRT and
SavedModel bundles, each run by ``segkit infer BUNDLE`` on the test volumes and compared with
``segkit infer RUN_DIR`` (Keras): max |dp|, label agreement, Dice against the reference per case; then, on one
pinned core, cold start (process start to the first label volume written: ``segkit infer`` on one volume),
steady time per volume, bundle size and peak memory (max RSS of the process).

Usage: python scripts/bench_deploy.py [--out DIR] [--epochs N] [--cases 3]
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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


def compare(ref_dir: Path, dir_: Path, cases: list[str]) -> dict[str, Any]:
    """Max |dp|, the share of equal labels and |dDice| (class 1 vs the reference label) over the cases."""
    max_dp, agree, ddice = 0.0, [], []
    for c in cases:
        pa = np.asarray(nib.load(str(ref_dir / f"{c}_probs.nii.gz")).dataobj)
        pb = np.asarray(nib.load(str(dir_ / f"{c}_probs.nii.gz")).dataobj)
        max_dp = max(max_dp, float(np.max(np.abs(pa - pb))))
        la = np.asarray(nib.load(str(ref_dir / f"{c}_seg.nii.gz")).dataobj)
        lb = np.asarray(nib.load(str(dir_ / f"{c}_seg.nii.gz")).dataobj)
        agree.append(float(np.mean(la == lb)))
        truth = np.asarray(nib.load(str(LA / "labelsTr" / f"{c}.nii.gz")).dataobj) > 0
        ddice.append(abs(dice(la == 1, truth) - dice(lb == 1, truth)))
    return {"max_abs_dp": max_dp, "min_label_agreement": min(agree), "max_abs_ddice": max(ddice)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "bench-deploy")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cases", type=int, default=3)
    args = ap.parse_args()
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    sets = [f"data.dir={out / 'data'}", f"train.run_dir={out / 'run'}", f"train.epochs={args.epochs}",
            "train.time_limit=null", "train.choose_postprocessing=false"]
    s = [a for x in sets for a in ("--set", x)]
    segkit("prepare", "left-atrial", str(LA), "--out", str(out / "data"), *s)
    segkit("train", "left-atrial", *s)
    splits = json.loads((out / "data" / "splits.json").read_text())
    cases = (splits["test"] + splits["valid"])[: args.cases]
    vols = out / "volumes"
    vols.mkdir()
    for c in cases:
        shutil.copy(LA / "imagesTr" / f"{c}.nii.gz", vols / f"{c}.nii.gz")
    one = out / "one"
    one.mkdir()
    shutil.copy(vols / f"{cases[0]}.nii.gz", one / f"{cases[0]}.nii.gz")
    targets = {"keras": out / "run"}
    for fmt in FORMATS:
        segkit("export", str(out / "run"), "--format", fmt, "--out", str(out / f"bundle-{fmt}"))
        targets[fmt] = out / f"bundle-{fmt}"
    rows = []
    for name, target in targets.items():
        res = out / f"infer-{name}"
        segkit("infer", str(target), "--input", str(vols), "--output", str(res), "--save-probabilities")
        cold, rss = segkit("infer", str(target), "--input", str(one), "--output", str(out / f"cold-{name}"),
                           pin=True)
        full, _ = segkit("infer", str(target), "--input", str(vols), "--output", str(out / f"steady-{name}"),
                         pin=True)
        size = sum(p.stat().st_size for p in Path(target).rglob("*") if p.is_file()) if name != "keras" \
            else (target / "model.keras").stat().st_size
        row = {"runtime": name, "cold_start_s": round(cold, 2),
               "steady_s_per_volume": round((full - cold) / max(1, len(cases) - 1), 2),
               "size_mb": round(size / 1e6, 2), "peak_rss_mb": rss}
        if name != "keras":
            row.update(compare(out / "infer-keras", res, cases))
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "bench_deploy.json").write_text(json.dumps({"cases": cases, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
