"""Training throughput bench: images/second at steady state, and the fraction of the machine's conv peak.

Cases (``--only`` picks some, comma-separated; default all):

- ``peak``: the machine's conv FLOP/s, a 3x3 Conv2D (2 x 128 x 128 x 128 -> 128 channels, ~9.7 GFLOP per
  call) forward, float32 and bfloat16, best of a few calls;
- ``wh-<precision>[-xla]``: the Whole-Heart seed architecture (``configs/seed/whole-heart.yaml`` model:
  flexunet 512x512x3, 9 classes, base_filters 16, base_kernels 7, num_layers 8, batch 2);
- ``demo-<precision>[-xla]``: the demo model (``configs/demo.yaml``, 64x64x1, 4 classes, batch 8);
- ``acdc-<precision>[-xla]``: the ACDC preset's fine stage (``configs/acdc.yaml``: flexunet 96x96x1,
  4 classes, base_filters 16, num_layers 5, group norm, batch 4), where the quality bench spends its budget;
- ``la-<precision>[-xla]``: the 128x128 presets' model (``configs/left-atrial.yaml``: flexunet 128x128x1,
  num_layers 6, group norm, batch 4);

with precision ``fp32`` (float32) or ``bf16`` (mixed_bfloat16), with or without XLA (``jit_compile``). Each
case runs in its own child process: it compiles the model exactly as ``segkit train`` does (optimizer, loss,
metrics from the registries) and runs ``fit`` on one synthetic in-memory batch repeated. The first
``--warmup`` steps (graph building, XLA compilation, allocator warm-up) are skipped; the median of the next
``--steps`` step times gives images/s. The child is killed after ``--case-budget`` seconds (``--wh-budget``
for Whole-Heart; import and build included), and the figures come from the steps it finished (an upper bound
on the step time, marked ``<=``, when only warm-up steps finished), so the whole bench stays under
~10 minutes on a 2-core CPU even where bf16 is emulated.

Fraction of peak = model forward GFLOP/image x 3 (forward + backward) x images/s / peak GFLOP/s of the same
precision.

    python scripts/bench_train.py                       # everything
    python scripts/bench_train.py --only peak,demo-fp32 --steps 20
    taskset -c 0 python scripts/bench_train.py --only acdc-fp32-xla,acdc-bf16   # one core, as bench_quality
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
    "wh": (REPO / "configs" / "seed" / "whole-heart.yaml", ["train.batch_size=2"]),
    "demo": (REPO / "configs" / "demo.yaml", []),
    # the ACDC preset's fine stage (96 x 96, batch 4): what the quality bench spends its budget on
    "acdc": (REPO / "configs" / "acdc.yaml", []),
    # the 128 x 128 presets' model (left-atrial; whole-heart, hocm and alcapa build the same network)
    "la": (REPO / "configs" / "left-atrial.yaml", []),
}


def all_cases() -> list[str]:
    cases = ["peak"]
    for model in MODELS:
        for prec in PRECISIONS:
            for xla in ("", "-xla"):
                cases.append(f"{model}-{prec}{xla}")
    return cases


def conv_peak(dtype: str, reps: int = 6) -> float:
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


def run_child(case: str, steps: int, warmup: int, out: Path) -> None:
    """In a child process: build and fit one model case, appending ``INFO``/``T0``/``STEP`` lines to
    ``out``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from segkit.config import load_config
    from segkit.losses import get_loss
    from segkit.metrics.training import get_metrics
    from segkit.models import build_model, model_summary
    from segkit.train.fit import float32_output, make_optimizer

    def emit(line: str) -> None:
        with open(out, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    if case == "peak":
        peak = {}
        for prec, dtype in (("float32", "float32"), ("mixed_bfloat16", "bfloat16")):
            try:
                peak[prec] = conv_peak(dtype)
            except Exception as e:  # noqa: BLE001 - a bench reports what the machine cannot do
                emit(f"NOTE peak {dtype} failed: {type(e).__name__}")
        emit("PEAK " + json.dumps(peak))
        return

    model_key, prec_key, *rest = case.split("-")
    xla = bool(rest)
    config, overrides = MODELS[model_key]
    cfg = load_config(config, [*overrides, f"train.precision={PRECISIONS[prec_key]}",
                               f"train.jit_compile={xla}"])
    keras.utils.set_random_seed(cfg.seed)
    keras.config.set_dtype_policy(PRECISIONS[prec_key])
    model = float32_output(build_model(cfg))
    model.compile(optimizer=make_optimizer(cfg), loss=get_loss(cfg), metrics=get_metrics(cfg),
                  jit_compile=xla)
    summary = model_summary(model)
    b = cfg.train.batch_size
    h, w = cfg.data.image_size
    c = int(model.inputs[0].shape[-1])
    rng = np.random.default_rng(0)
    x = rng.random((b, h, w, c), dtype=np.float32)
    y = np.eye(cfg.num_classes, dtype=np.float32)[rng.integers(0, cfg.num_classes, (b, h, w))]
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    emit("INFO " + json.dumps({"params": summary["params"], "gflops_per_image": summary["gflops_per_image"],
                               "batch": b, "precision": PRECISIONS[prec_key], "xla": xla}))

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            emit(f"STEP {time.perf_counter()}")

    emit(f"T0 {time.perf_counter()}")
    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, shuffle=False, callbacks=[Clock()])


def bench_case(case: str, steps: int, warmup: int, budget_s: float) -> dict[str, object]:
    """Run one case in a child process killed after ``budget_s``; steady-state figures from the steps it
    finished.

    images/s = batch / median time of the timed steps (after ``warmup`` steps). When no step after the warm-up
    finished in time, the figure is an upper bound from the last finished step (marked ``<=``).
    """
    import statistics
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lines.txt"
        cmd = [sys.executable, __file__, "--child", case, "--steps", str(steps), "--warmup", str(warmup),
               "--child-out", str(out)]
        timed_out = False
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s, check=False)
            failed = proc.returncode != 0
            tail = " ".join(proc.stderr.strip().splitlines()[-1:])[:200] if failed else ""
        except subprocess.TimeoutExpired:
            timed_out, failed, tail = True, False, ""
        wall = time.perf_counter() - t
        lines = out.read_text(encoding="utf-8").splitlines() if out.is_file() else []
    row: dict[str, object] = {"case": case, "wall_s": round(wall, 1), "timed_out": timed_out}
    for line in lines:
        key, _, val = line.partition(" ")
        if key == "PEAK":
            row["peak_gflops"] = json.loads(val)
        elif key == "INFO":
            row.update(json.loads(val))
    if failed:
        row["error"] = tail
        return row
    if case == "peak":
        return row
    t0 = [float(line.split()[1]) for line in lines if line.startswith("T0 ")]
    stamps = [float(line.split()[1]) for line in lines if line.startswith("STEP ")]
    if not t0 or not stamps:
        row["error"] = f"no step finished within {budget_s:.0f} s"
        return row
    times = [b - a for a, b in zip([t0[0], *stamps[:-1]], stamps, strict=True)]
    timed = times[warmup:]
    batch = int(row["batch"])  # type: ignore[arg-type]
    if timed:
        step = statistics.median(timed)
        row["bound"] = ""
    else:  # only warm-up steps finished: their last one is an upper bound of a steady step's time
        step = times[-1]
        row["bound"] = "<="
    row.update(
        timed_steps=len(timed),
        s_per_step=round(step, 3),
        images_per_s=round(batch / step, 3),
        first_step_s=round(times[0], 1),
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated cases of: {', '.join(all_cases())}")
    p.add_argument("--steps", type=int, default=4, help="timed steps per model case (after warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps per model case")
    p.add_argument("--case-budget", type=float, default=40.0,
                   help="seconds per demo case (child process killed after it; import and build included)")
    p.add_argument("--wh-budget", type=float, default=100.0, help="seconds per Whole-Heart case")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        run_child(a.child, a.steps, a.warmup, a.child_out)
        return 0
    cases = [c.strip() for c in a.only.split(",") if c.strip()] or all_cases()
    unknown = [c for c in cases if c not in all_cases()]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; valid: {', '.join(all_cases())}")
    if any(c != "peak" for c in cases) and "peak" not in cases:
        cases.insert(0, "peak")  # the fraction of peak needs it

    t_all = time.perf_counter()
    print(f"{os.cpu_count()} CPU cores; {len(cases)} cases, <= {a.case_budget:.0f} s per demo case, "
          f"<= {a.wh_budget:.0f} s per Whole-Heart case", flush=True)
    peak: dict[str, float] = {}
    rows = []
    for case in cases:
        budget = a.wh_budget if case.startswith("wh-") else a.case_budget
        r = bench_case(case, a.steps, a.warmup, budget)
        if case == "peak":
            peak = dict(r.get("peak_gflops", {}))  # type: ignore[arg-type]
        elif "images_per_s" in r:
            pk = peak.get(str(r["precision"]))
            r["fraction_of_peak"] = (
                round(float(r["gflops_per_image"]) * 3 * float(r["images_per_s"]) / pk, 3) if pk else None
            )
        rows.append(r)
        print(json.dumps(r), flush=True)

    print()
    print("conv peak GFLOP/s (3x3 conv forward): " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()))
    print()
    print("| case | GFLOP/img fwd | batch | steps timed | s/step | images/s | % of conv peak | "
          "first step s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["case"] == "peak":
            continue
        if "images_per_s" not in r:
            print(f"| {r['case']} | {r.get('gflops_per_image', '')} | {r.get('batch', '')} | 0 | - | "
                  f"{r.get('error', 'n/a')} | - | - |")
            continue
        frac = "n/a" if r.get("fraction_of_peak") is None else f"{100 * float(r['fraction_of_peak']):.0f} %"
        gf = round(float(r["gflops_per_image"]), 2)
        print(f"| {r['case']} | {gf} | {r['batch']} | {r['timed_steps']} | {r['bound']}{r['s_per_step']} | "
              f"{'>=' if r['bound'] else ''}{r['images_per_s']} | {frac} | {r['first_step_s']} |")
    print(f"\ntotal bench time {time.perf_counter() - t_all:.0f} s", flush=True)
    if a.json is not None:
        a.json.write_text(json.dumps({"peak_gflops": peak, "cases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
