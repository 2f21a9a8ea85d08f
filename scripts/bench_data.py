"""Benchmark the training data pipeline: peak RSS vs dataset size, and augmentation throughput.

Peak RSS: a synthetic dataset of N 512x512 slices (one real-looking PNG pair, hard-linked N times, so disk
and set-up cost stay tiny) is streamed through ``make_dataset(cfg, "train", training=True)`` for a number of
batches in a fresh child process per N; the child reports its peak RSS (``ru_maxrss``). Memory must not grow
with N (target < 4 GB at 10,000 slices).

Augmentation throughput: samples/s of ``Augmenter`` at 512x512x3 on one CPU core (affinity pinned, OpenCV
single-threaded), for the whole-heart preset and with every transform at p=0.5.

Usage:
    python scripts/bench_data.py                    # 1,000 vs 10,000 slices, 200 batches; throughput
    python scripts/bench_data.py --sizes 1000 10000 --batches 200 --batch-size 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZE = 512


def make_synthetic(root: Path, n: int) -> None:
    """N hard-linked copies of one 512x512 image/mask pair under root/train (cases of 100 slices)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((SIZE, SIZE), np.uint8)
    for k, (cx, cy, r) in enumerate(
        [(200, 220, 60), (320, 260, 50), (260, 360, 30), (180, 330, 25)], start=1
    ):
        cv2.circle(labels, (cx, cy), r, k, -1)
    image = np.clip(40 + 40 * labels + rng.normal(0, 10, labels.shape), 0, 255).astype(np.uint8)
    colours = np.array([(0, 0, 0), (255, 0, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)], np.uint8)
    src = root / "_src"
    src.mkdir(parents=True)
    cv2.imwrite(str(src / "i.png"), image)
    cv2.imwrite(str(src / "m.png"), colours[labels][..., ::-1])
    for sub in ("images", "masks"):
        (root / "train" / sub).mkdir(parents=True)
    for j in range(n):
        stem = f"{j // 100:05d}_{j % 100:04d}"
        os.link(src / "i.png", root / "train" / "images" / f"{stem}.png")
        os.link(src / "m.png", root / "train" / "masks" / f"{stem}.png")


def child(n: int, batches: int, batch_size: int) -> dict[str, float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from segkit.config import load_config
    from segkit.data.pipeline import make_dataset

    with tempfile.TemporaryDirectory(prefix="segkit-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_synthetic(root, n)
        setup_s = time.perf_counter() - t0
        cfg = load_config(
            REPO / "configs" / "seed" / "whole-heart.yaml",
            [f"data.dir={root}", f"train.batch_size={batch_size}"],
        )
        ds = make_dataset(cfg, "train", training=True)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        seen = 0
        while seen < batches:
            for _x, _y in ds:
                seen += 1
                if seen >= batches:
                    break
        dt = time.perf_counter() - t0
    return {
        "slices": n,
        "batches": seen,
        "batch_size": batch_size,
        "setup_s": round(setup_s, 1),
        "seconds": round(dt, 1),
        "samples_per_s": round(seen * batch_size / dt, 1),
        "rss_before_iter_mb": round(rss0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def augment_throughput(seconds: float = 5.0) -> dict[str, float]:
    """Samples/s of the augmenter at 512x512x3 on one core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    from segkit.config import load_config
    from segkit.data.augment import Augmenter

    every = [
        f"augment.{k}.p=0.5"
        for k in (
            "hflip", "vflip", "rotate90", "rotate", "scale", "shear", "elastic", "grid_distortion",
            "optical_distortion", "brightness", "contrast", "gamma", "noise", "blur",
        )
    ]
    rng = np.random.default_rng(0)
    image = rng.random((SIZE, SIZE, 3), dtype=np.float32)
    mask = rng.integers(0, 9, (SIZE, SIZE)).astype(np.uint8)
    result = {}
    for name, overrides in (("whole-heart preset", []), ("14 transforms p=0.5 (all but shift)", every)):
        aug = Augmenter(load_config(REPO / "configs" / "seed" / "whole-heart.yaml", overrides))
        aug(image, mask, epoch=0, index=0)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            aug(image, mask, epoch=0, index=n)
            n += 1
        result[name] = round(n / (time.perf_counter() - t0), 1)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--throughput", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.batches, args.batch_size)))
        return
    if args.throughput:
        print(json.dumps(augment_throughput()))
        return
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--batches", str(args.batches),
               "--batch-size", str(args.batch_size)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    tp = subprocess.run([sys.executable, __file__, "--throughput"],
                        capture_output=True, text=True, check=True)
    print("augmentation samples/s at 512x512x3 on 1 core:", tp.stdout.strip())
    growth = rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    print(f"peak RSS: {rows[0]['peak_rss_mb']} MB at {rows[0]['slices']} slices, "
          f"{rows[-1]['peak_rss_mb']} MB at {rows[-1]['slices']} slices "
          f"(difference {growth:+d} MB; target < 4096 MB)")


if __name__ == "__main__":
    main()
