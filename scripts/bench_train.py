"""Training throughput bench: images/second at steady state, and the fraction of the machine's conv peak.

Cases (``--only`` picks some, comma-separated; default all):

- ``peak``: the machine's conv FLOP/s, a 3x3 Conv2D (2 x 128 x 128 x 128 -> 128 channels, ~9.7 GFLOP per
  call) forward, float32 and bfloat16, best of a few calls;
- ``wh-<precision>[-xla]``: the Whole-Heart seed architecture (``configs/whole-heart.yaml`` model: flexunet
  512x512x3, 9 classes, base_filters 16, base_kernels 7, num_layers 8, batch 2);
- ``demo-<precision>[-xla]``: the demo model (``configs/demo.yaml``, 64x64x1, 4 classes, batch 16);

with precision ``fp32`` (float32) or ``bf16`` (mixed_bfloat16), with or without XLA (``jit_compile``). Each
model case compiles the model exactly as ``segkit train`` does (optimizer, loss, metrics from the registries)
and runs ``fit`` on one synthetic in-memory batch repeated, skipping ``--warmup`` steps (graph building,
XLA compilation, allocator warm-up) before timing ``--steps`` steps. A case stops measuring once it has used
``--case-budget`` seconds (after at least one timed step), so the whole bench stays under ~10 minutes on a
2-core CPU even where bf16 is emulated.

Fraction of peak = model forward GFLOP/image x 3 (forward + backward) x images/s / peak GFLOP/s of the same
precision.

    python scripts/bench_train.py                       # everything
    python scripts/bench_train.py --only peak,demo-fp32 --steps 20
    python scripts/bench_train.py --json bench.json     # also write the table as JSON

Synthetic data: the input pipeline is not measured (see scripts/bench_prepare.py for data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}
MODELS = {
    # name: (config, overrides)
    "wh": (REPO / "configs" / "whole-heart.yaml", ["train.batch_size=2"]),
    "demo": (REPO / "configs" / "demo.yaml", []),
}


def all_cases() -> list[str]:
    cases = ["peak"]
    for model in MODELS:
        for prec in PRECISIONS:
            for xla in ("", "-xla"):
                cases.append(f"{model}-{prec}{xla}")
    return cases


def conv_peak(dtype: str, reps: int = 4) -> float:
    """GFLOP/s of a large 3x3 same-padded Conv2D forward in ``dtype`` (best of ``reps`` calls)."""
    import tensorflow as tf

    n, h, w, c, k = 2, 128, 128, 128, 128
    x = tf.random.normal((n, h, w, c), dtype=tf.float32)
    f = tf.random.normal((3, 3, c, k), dtype=tf.float32) * 0.05
    x, f = tf.cast(x, dtype), tf.cast(f, dtype)
    conv = tf.function(lambda a, b: tf.nn.conv2d(a, b, 1, "SAME"))
    conv(x, f).numpy()  # build + warm-up
    flop = 2.0 * n * h * w * k * 3 * 3 * c
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        conv(x, f).numpy()
        best = min(best, time.perf_counter() - t)
    return flop / best / 1e9


def bench_model(case: str, steps: int, warmup: int, budget_s: float) -> dict[str, object]:
    """Images/s of ``fit`` for one ``<model>-<precision>[-xla]`` case."""
    import keras
    import numpy as np
    import tensorflow as tf

    from segkit.config import load_config
    from segkit.losses import get_loss
    from segkit.metrics.training import get_metrics
    from segkit.models import build_model, model_summary
    from segkit.train.fit import float32_output, make_optimizer

    model_key, prec_key, *rest = case.split("-")
    xla = bool(rest)
    config, overrides = MODELS[model_key]
    cfg = load_config(config, [*overrides, f"train.precision={PRECISIONS[prec_key]}", f"train.jit_compile={xla}"])
    keras.utils.set_random_seed(cfg.seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[prec_key])
    try:
        model = float32_output(build_model(cfg))
        model.compile(optimizer=make_optimizer(cfg), loss=get_loss(cfg), metrics=get_metrics(cfg), jit_compile=xla)
    finally:
        keras.config.set_dtype_policy(previous)
    summary = model_summary(model)
    b = cfg.train.batch_size
    h, w = cfg.data.image_size
    c = int(model.inputs[0].shape[-1])
    rng = np.random.default_rng(0)
    x = rng.random((b, h, w, c), dtype=np.float32)
    y = np.eye(cfg.num_classes, dtype=np.float32)[rng.integers(0, cfg.num_classes, (b, h, w))]
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()

    stamps: list[float] = []
    t_start = time.perf_counter()

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            stamps.append(time.perf_counter())
            timed = len(stamps) - warmup
            if timed >= 1 and (timed >= steps or time.perf_counter() - t_start > budget_s):
                self.model.stop_training = True

    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    timed = stamps[warmup - 1 :] if warmup > 0 else [t0, *stamps]
    n = len(timed) - 1
    secs = timed[-1] - timed[0]
    ips = n * b / secs
    return {
        "case": case,
        "params": summary["params"],
        "gflops_per_image": round(float(summary["gflops_per_image"]), 3),
        "batch": b,
        "timed_steps": n,
        "s_per_step": round(secs / n, 3),
        "images_per_s": round(ips, 3),
        "first_steps_s": round(stamps[warmup - 1] - t0, 1) if warmup > 0 else 0.0,
        "precision": PRECISIONS[prec_key],
        "xla": xla,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated cases of: {', '.join(all_cases())}")
    p.add_argument("--steps", type=int, default=4, help="timed steps per model case (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed first steps per model case")
    p.add_argument("--case-budget", type=float, default=75.0, help="stop timing a case after this many seconds")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    cases = [c.strip() for c in a.only.split(",") if c.strip()] or all_cases()
    unknown = [c for c in cases if c not in all_cases()]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; valid: {', '.join(all_cases())}")

    import tensorflow as tf

    t_all = time.perf_counter()
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPU cores, intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}", flush=True)
    peak: dict[str, float] = {}
    if "peak" in cases or any(c != "peak" for c in cases):
        for prec, dtype in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
            try:
                peak[prec] = conv_peak(dtype)
            except Exception as e:  # noqa: BLE001 - a bench reports what the machine cannot do
                print(f"peak {dtype}: failed ({type(e).__name__}: {e})", flush=True)
        print("conv peak GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()), flush=True)

    rows = []
    for case in (c for c in cases if c != "peak"):
        try:
            r = bench_model(case, a.steps, a.warmup, a.case_budget)
        except Exception as e:  # noqa: BLE001
            print(f"{case}: failed ({type(e).__name__}: {' '.join(str(e).split())[:200]})", flush=True)
            continue
        pk = peak.get(str(r["precision"]))
        r["fraction_of_peak"] = (
            round(float(r["gflops_per_image"]) * 3 * float(r["images_per_s"]) / pk, 3) if pk else None
        )
        rows.append(r)
        print(json.dumps(r), flush=True)

    print()
    print(f"| case | GFLOP/img fwd | batch | steps timed | s/step | images/s | % of conv peak ({', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peak.items())}) | warm-up s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        frac = "n/a" if r["fraction_of_peak"] is None else f"{100 * float(r['fraction_of_peak']):.0f} %"
        print(f"| {r['case']} | {r['gflops_per_image']} | {r['batch']} | {r['timed_steps']} | {r['s_per_step']} | "
              f"{r['images_per_s']} | {frac} | {r['first_steps_s']} |")
    print(f"\ntotal bench time {time.perf_counter() - t_all:.0f} s", flush=True)
    if a.json is not None:
        a.json.write_text(json.dumps({"peak_gflops": peak, "cases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
