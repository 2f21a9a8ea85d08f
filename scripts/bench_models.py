"""Model zoo bench: parameters, GFLOP and training / inference images per second of every registered model.

Each model is built with the options of the recommended presets (``configs/left-atrial.yaml``: 16 base
filters, 3x3, 6 levels, ``max_filters`` 256, GroupNorm, no dropout; ``--size`` default 128, 1 channel, 4
classes), compiled as ``segkit train`` compiles it (Adam, Dice + CE; precision and XLA as the preset's
``auto`` resolves them on this machine, ``segkit.hardware``), and timed on one
synthetic batch (``--batch``, default 4) repeated: the median of ``--steps`` training steps after ``--warmup``
steps, and the same for forward passes (inference). Each model runs in its own child process, so one model's
graphs and
memory do not slow the next. Synthetic data: the input pipeline is not measured (it is not the bottleneck:
``scripts/bench_data.py``).

    python scripts/bench_models.py                      # every model, 128 x 128
    python scripts/bench_models.py --only flexunet,u2net --steps 10 --json models.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(name: str, size: int, batch: int, steps: int, warmup: int, jit: bool = True) -> dict:
    """Build, compile and time one model in this process (precision and XLA as the preset's ``auto`` resolves
    them here, XLA off when ``jit`` is False)."""
    import keras
    import numpy as np

    from segkit.config import load_config
    from segkit.hardware import resolve_policy, visible_gpus
    from segkit.losses import get_loss
    from segkit.models import build_model, model_summary
    from segkit.train.fit import float32_output

    cfg = load_config(REPO / "configs" / "left-atrial.yaml", [
        f"model.name={name}", f"data.image_size=[{size},{size}]", f"train.batch_size={batch}",
        "classes=[{id: 1, name: a, color: [255, 0, 0]}, {id: 2, name: b, color: [0, 255, 0]},"
        " {id: 3, name: c, color: [0, 0, 255]}]",
        *([] if jit else ["train.jit_compile=false"]),
    ])
    precision, xla = resolve_policy(cfg.train.precision, cfg.train.jit_compile, visible_gpus())
    keras.config.set_dtype_policy(precision)
    model = float32_output(build_model(cfg))
    summary = model_summary(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_loss(cfg), jit_compile=xla)
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 1), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (batch, size, size))]

    def timed(fn) -> float:  # noqa: ANN001
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    train_s = timed(lambda: model.train_on_batch(x, y))
    infer_s = timed(lambda: model.predict_on_batch(x))
    return {
        "model": name,
        "params": summary["params"],
        "gflops_per_image": summary["gflops_per_image"],
        "train_images_per_s": batch / train_s,
        "infer_images_per_s": batch / infer_s,
        "size": size,
        "batch": batch,
        "jit_compile": xla,
        "precision": precision,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--only", default="", help="comma-separated model names (default: every registered model)"
    )
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--no-jit", action="store_true", help="compile without XLA (the preset compiles with it)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        row = measure(args.child, args.size, args.batch, args.steps, args.warmup, jit=not args.no_jit)
        print(json.dumps(row))
        return 0
    from segkit.hardware import cpu_name
    from segkit.models import MODELS

    names = [n for n in args.only.split(",") if n] or MODELS.names()
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores; {args.size}x{args.size}, batch {args.batch}",
        flush=True,
    )
    rows = []
    for name in names:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--size",
            str(args.size),
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            *(["--no-jit"] if args.no_jit else []),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{name}: failed: {res.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"{name}: train {r['train_images_per_s']:.1f} img/s, infer {r['infer_images_per_s']:.1f} img/s",
            flush=True,
        )
    print(
        "\n| model | params | GFLOP / image | train images/s | inference images/s |"
        "\n|---|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| `{r['model']}` | {r['params']:,} | {r['gflops_per_image']:.2f} | "
            f"{r['train_images_per_s']:.1f} | {r['infer_images_per_s']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
