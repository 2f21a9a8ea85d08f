"""Benchmark: seconds to infer one 512x512x200 volume on CPU, end to end.

End to end = ``segkit.infer.volume.infer_volume``: load the NIfTI, repeat prepare's preprocessing
(reorientation, intensity, resize), predict every slice in batches, reassemble into the original geometry and
write ``<case>_seg.nii.gz`` + the overlay PNG. Model building / loading is reported separately.

Models (untrained weights: timing only):

- ``whole-heart``: the Whole-Heart seed architecture (configs/seed/whole-heart.yaml: flexunet 512x512x3,
  9 classes, base_filters 16, base_kernels 7, num_layers 8);
- ``demo``: configs/demo.yaml (flexunet 64x64x1, 4 classes, num_layers 4).

Each in float32 and mixed_bfloat16, batch 8. The seed's own predictor reaches 3.3 slices/s (fp32, batch 8,
2 cores) before writing PNGs; the target is >= 3x that (>= 9.9 slices/s) end to end.

``--slices N`` times a 512x512xN volume and extrapolates linearly to 200 slices (every stage is linear in the
number of slices; one warm-up batch is run first so tracing is not counted). The table says which rows were
extrapolated. The CPU may be shared with other jobs: numbers are upper bounds on an idle machine.

Usage:
    python scripts/bench_infer.py                      # whole-heart: 48 slices extrapolated; demo: 200 slices
    python scripts/bench_infer.py --slices 200         # no extrapolation (slow: minutes per row)
    python scripts/bench_infer.py --models demo --precisions float32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED_SLICES_PER_S = 3.3
TARGET_SLICES = 200


def synthetic_volume(n_slices: int, modality: str, rng: np.random.Generator) -> np.ndarray:
    """(512, 512, n) int16 volume: a body ellipse with a few bright blobs (CT HU or MR-like intensities)."""
    x, y = np.mgrid[0:512, 0:512]
    body = ((x - 256) / 220.0) ** 2 + ((y - 256) / 180.0) ** 2 < 1
    base = np.where(body, 40, -1000 if modality == "ct" else 0).astype(np.float32)
    vol = np.repeat(base[..., None], n_slices, axis=2)
    for _ in range(4):
        cx, cy, r = rng.integers(180, 330), rng.integers(180, 330), rng.integers(20, 50)
        disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        vol[disc] += 300
    vol += rng.normal(0, 20, vol.shape).astype(np.float32)
    return vol.astype(np.int16)


def bench_one(name: str, precision: str, n_slices: int, batch: int, tmp: Path) -> dict[str, object]:
    import keras
    import nibabel as nib

    from segkit.config import load_config
    from segkit.infer.options import InferOptions
    from segkit.infer.volume import infer_volume
    from segkit.models import build_model
    from segkit.predict.volume import model_inputs

    config = REPO / "configs" / ("seed/whole-heart.yaml" if name == "whole-heart" else "demo.yaml")
    cfg = load_config(config, [f"data.dir={tmp / 'no-dataset'}", f"infer.batch_size={batch}"])
    rng = np.random.default_rng(0)
    vol_path = tmp / f"bench_{name}_{n_slices}.nii.gz"
    if not vol_path.exists():
        affine = np.diag([-0.8, -0.8, 1.0, 1.0])  # LPS-like, anisotropic
        nib.save(nib.Nifti1Image(synthetic_volume(n_slices, cfg.modality, rng), affine), str(vol_path))
    t0 = time.perf_counter()
    keras.config.set_dtype_policy(precision)
    try:
        model = build_model(cfg)
    finally:
        keras.config.set_dtype_policy("float32")
    build_s = time.perf_counter() - t0
    # warm-up: trace the predict function once with a full batch (not counted)
    h, w = cfg.data.image_size
    dummy = np.zeros((batch, h, w), np.uint8)
    model.predict_on_batch(
        model_inputs(dummy, list(range(batch)), cfg.data.channels, cfg.data.context_slices)
    )
    t0 = time.perf_counter()
    res = infer_volume(model, vol_path, cfg, tmp / "out",
                       InferOptions(batch_size=batch, overwrite=True).resolve(cfg))
    total = time.perf_counter() - t0
    scale = TARGET_SLICES / n_slices
    return {
        "model": name,
        "precision": precision,
        "batch": batch,
        "slices_timed": n_slices,
        "extrapolated": n_slices != TARGET_SLICES,
        "seconds_200": total * scale,
        "slices_per_s": n_slices / total,
        "predict_slices_per_s": n_slices / res.seconds["predict"],
        "stages_200": {k: v * scale for k, v in res.seconds.items()},
        "build_s": build_s,
        "params": int(model.count_params()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=48,
                    help="slices timed for whole-heart (extrapolated to 200)")
    ap.add_argument("--demo-slices", type=int, default=200, help="slices timed for the demo model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--models", nargs="+", default=["whole-heart", "demo"], choices=["whole-heart", "demo"])
    ap.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                    choices=["float32", "mixed_bfloat16"])
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segkit-bench-") as d:
        for name in args.models:
            for precision in args.precisions:
                n = args.slices if name == "whole-heart" else args.demo_slices
                row = bench_one(name, precision, n, args.batch, Path(d))
                rows.append(row)
                print(f"{name:12s} {precision:15s} {row['seconds_200']:7.1f} s / 200 slices "
                      f"({row['slices_per_s']:.1f} slices/s end to end)", file=sys.stderr, flush=True)
    print(f"\nCPU: {os.cpu_count()} cores (shared; other jobs may have been running). "
          f"Volume 512x512x200, batch {args.batch}. Seed predictor: {SEED_SLICES_PER_S} slices/s fp32 "
          f"(target >= {3 * SEED_SLICES_PER_S:.1f} slices/s end to end).\n")
    print("| model | precision | slices timed | s / 200 slices (end to end) | slices/s end to end | "
          "slices/s predict only | x seed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        timed = f"{r['slices_timed']}" + (" (extrapolated)" if r["extrapolated"] else "")
        print(f"| {r['model']} | {r['precision']} | {timed} | {r['seconds_200']:.1f} | "
              f"{r['slices_per_s']:.1f} | {r['predict_slices_per_s']:.1f} | "
              f"{r['slices_per_s'] / SEED_SLICES_PER_S:.1f} |")
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
