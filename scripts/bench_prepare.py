"""Benchmark ``segkit prepare``: slices/second and peak memory on synthetic 512 x 512 x 300 CT volumes.

Runs ``run_prepare`` (source ``hocm``, preset ``configs/seed/hocm.yaml``: 512 x 512 output, every slice kept)
in a fresh subprocess per setting so that peak memory is measured cleanly:

- 1 worker on 1 volume (the case runs in the process itself);
- 2 workers on 2 volumes (one per worker, both busy).

Peak memory is ``ru_maxrss`` of the run's main process and, separately, the largest ``ru_maxrss`` that a
worker process reports for itself after its case (workers are forkserver children, so the parent's
``RUSAGE_CHILDREN`` would not see them). With 1 worker the case runs in the main process. The target is
>= 100 slices/s per core for 512^2 image + mask pairs.

Usage:
    .venv/bin/python scripts/bench_prepare.py [--slices 300] [--workdir /tmp/segkit-bench] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_ct(path_img: Path, path_lbl: Path, shape: tuple[int, int, int], seed: int) -> None:
    """A CT-like int16 volume in HU (body ellipse, 3 ellipsoid organs, noise) + uint8 label, uncompressed
    NIfTI."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    body2d = (xx / 0.9) ** 2 + (yy / 0.7) ** 2 <= 1
    img = np.full(shape, -1000, np.int16)
    img[body2d] = 40
    lbl = np.zeros(shape, np.uint8)
    for cls, (cx, cy, cz, rx, ry, rz, hu) in enumerate(
        [
            (-0.2, 0.0, 0.0, 0.3, 0.25, 0.6, 300),
            (0.25, 0.1, 0.1, 0.2, 0.2, 0.4, 200),
            (0.0, -0.35, 0.0, 0.08, 0.08, 0.9, 400),
        ],
        start=1,
    ):
        zz = ((z - cz) / rz) ** 2
        for k in np.flatnonzero(zz <= 1):  # slab by slab keeps temporaries small
            m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1 - zz[k]
            lbl[:, :, k][m] = cls
            img[:, :, k][m] = hu
    img += rng.normal(0, 20, shape).astype(np.int16)
    affine = np.diag([-0.35, -0.35, 0.5, 1.0])
    nib.save(nib.Nifti1Image(img, affine), str(path_img))
    nib.save(nib.Nifti1Image(lbl, affine), str(path_lbl))


def run_one(raw: Path, out: Path, workers: int, compression: int) -> None:
    """Child mode: prepare ``raw`` into ``out`` and print one JSON line with timing and memory."""
    from segkit.config import load_config
    from segkit.prepare.run import PrepareOptions, run_prepare

    cfg = load_config(REPO / "configs" / "seed" / "hocm.yaml", [
        "prepare.empty_slices=keep",  # write every slice: 300 pairs per volume
        "prepare.split={train: 1, valid: 0, test: 0}",  # 1-2 volumes: all in train
        f"prepare.png_compression={compression}",
    ])
    t0 = time.perf_counter()
    report = run_prepare("hocm", raw, out, cfg, PrepareOptions(workers=workers, overwrite=True))
    wall = time.perf_counter() - t0
    if report.failures:
        raise SystemExit("\n".join(report.failures))
    slices = sum(s["slices"] for s in report.summary.values())
    kib = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss is KiB on Linux, bytes on macOS
    print(json.dumps({
        "workers": workers,
        "png": compression,
        "cases": len(report.done),
        "slices": slices,
        "wall_s": wall,
        "cpu_s": report.cpu_s,
        "main_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 1024,
        "worker_rss_mib": report.peak_rss_mib,  # ru_maxrss reported by each worker process itself
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=300, help="z size of each volume")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/segkit-bench"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--one", nargs=4, metavar=("RAW", "OUT", "WORKERS", "PNG"), help=argparse.SUPPRESS)
    ap.add_argument("--make", nargs=3, metavar=("RAW", "N", "SLICES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_one(Path(args.one[0]), Path(args.one[1]), int(args.one[2]), int(args.one[3]))
        return
    if args.make:
        raw, n, z = Path(args.make[0]), int(args.make[1]), int(args.make[2])
        for i in range(n):
            make_ct(raw / f"{i + 1}_image.nii", raw / f"{i + 1}_label.nii", (512, 512, z), seed=i)
        return
    shape = (512, 512, args.slices)
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    for workers, png in ((1, 1), (2, 1), (1, 0), (2, 0)):
        raw = work / f"raw{workers}"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if not raw.exists():
            raw.mkdir(parents=True)
            # Volumes are made in their own process: Linux carries a parent's peak RSS into ru_maxrss of a
            # child across fork + exec, so this process must stay small for the measured child to read true
            # figures.
            subprocess.run([sys.executable, __file__, "--make", str(raw), str(workers), str(args.slices)],
                           check=True, env=env)
        cmd = [sys.executable, __file__, "--one", str(raw), str(work / f"out{workers}"), str(workers),
               str(png)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        if res.returncode != 0:
            raise SystemExit(res.stderr or res.stdout)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    load1, load5, _ = os.getloadavg()
    print(f"segkit prepare benchmark: {shape[0]}x{shape[1]}x{shape[2]} int16 CT volume(s), "
          "512x512 image+mask PNG pairs")
    print(f"machine: {os.cpu_count()} cores, load average {load1:.2f} (1 min) {load5:.2f} (5 min)")
    print(f"{'png lvl':>7} {'workers':>7} {'volumes':>7} {'slices':>6} {'wall s':>7} {'slices/s':>8} "
          f"{'per core':>8} {'CPU s':>6} {'slices/CPU-s':>12} {'main MiB':>8} {'worker MiB':>10}")
    for r in rows:
        sps = r["slices"] / r["wall_s"]
        print(f"{r['png']:>7} {r['workers']:>7} {r['cases']:>7} {r['slices']:>6} {r['wall_s']:>7.2f} "
              f"{sps:>8.1f} {sps / r['workers']:>8.1f} {r['cpu_s']:>6.1f} {r['slices'] / r['cpu_s']:>12.1f} "
              f"{r['main_rss_mib']:>8.0f} {r['worker_rss_mib']:>10.0f}")
    print("per core = slices/s / workers (wall clock, depends on load); slices/CPU-s = slices per CPU second "
          "spent in the cases (load-independent upper bound per core)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
