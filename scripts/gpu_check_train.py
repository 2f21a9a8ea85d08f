"""The measuring half of ``scripts/gpu_check.sh``: train one config and record its speed and memory, or write
the summary of all runs.

    python scripts/gpu_check_train.py train CONFIG --set KEY=VALUE ... --json OUT.json --label demo
    python scripts/gpu_check_train.py summary OUT_DIR          # OUT_DIR/summary.md and summary.json

``train`` runs ``segkit.train.train_model`` (a fresh run: ``--overwrite``) in this process and writes:

- ``images_per_s``: training images per second at steady state, the median over epochs of (steps between the
  epoch's first and last batch x global batch) / the seconds between them (the first step of each epoch, which
  holds graph building and XLA compilation in epoch 1, is left out; validation is not counted);
- ``gpu_peak_mib``: the peak memory TensorFlow's allocator held on each GPU
  (``tf.config.experimental.get_memory_info(...)["peak"]``); the shell script adds the peak ``memory.used``
  that ``nvidia-smi`` saw (with ``TF_FORCE_GPU_ALLOW_GROWTH=true``, so that it is not the whole card);
- the precision, the device in words, replicas (``MirroredStrategy`` when > 1), epochs, training seconds.

``summary`` reads every ``*.train.json`` and ``*.eval.json`` (``segkit evaluate``'s ``evaluation.json``,
copied by the shell script) and ``card.txt`` in OUT_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def steady_images_per_s(batches: list[tuple[int, int, float]], global_batch: int) -> float | None:
    """Median over epochs of steps x ``global_batch`` / seconds between an epoch's first and last batch event
    (``batches``: (epoch, step, elapsed_s)); None when no epoch had two batch events."""
    rates = []
    for epoch in sorted({e for e, _, _ in batches}):
        ev = [(s, t) for e, s, t in batches if e == epoch]
        (s0, t0), (s1, t1) = ev[0], ev[-1]
        if s1 > s0 and t1 > t0:
            rates.append((s1 - s0) * global_batch / (t1 - t0))
    return statistics.median(rates) if rates else None


def _gpu_peaks() -> dict[str, float]:
    import tensorflow as tf

    peaks = {}
    for i, _ in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            peaks[f"GPU:{i}"] = round(tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"] / 2**20, 1)
        except (ValueError, RuntimeError):
            pass
    return peaks


def train(args: argparse.Namespace) -> int:
    from segkit.config import load_config
    from segkit.train import train_model

    cfg = load_config(args.config, args.sets or [])
    batches: list[tuple[int, int, float]] = []
    info: dict[str, Any] = {}

    def progress(ev: Any) -> None:
        if ev.kind == "start":
            info.update(ev.info)
        elif ev.kind == "batch":
            batches.append((ev.epoch, ev.step, ev.elapsed_s))

    result = train_model(cfg, overwrite=True, progress=progress)
    record = {
        "label": args.label,
        "config": str(args.config),
        "sets": args.sets or [],
        "model": cfg.model.name,
        "image_size": list(cfg.data.image_size),
        "global_batch": cfg.train.batch_size,
        "replicas": info.get("replicas"),
        "precision": result.precision,
        "device": result.device,
        "epochs_done": result.epochs_done,
        "train_time_s": round(result.train_time_s, 1),
        "stop_reason": result.stop_reason,
        "images_per_s": steady_images_per_s(batches, cfg.train.batch_size),
        "gpu_peak_mib": _gpu_peaks(),
    }
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    ips = record["images_per_s"]
    print(f"[{args.label}] {result.device}, {result.precision}, {record['replicas']} replica(s): "
          f"{'n/a' if ips is None else f'{ips:.1f}'} images/s, {result.epochs_done} epochs in "
          f"{result.train_time_s:.0f} s; TF peak memory "
          + (", ".join(f"{d} {v:.0f} MiB" for d, v in record["gpu_peak_mib"].items()) or "n/a (no GPU)"),
          flush=True)
    return 0


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(v, spec)


def summary(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    card = (out / "card.txt").read_text(encoding="utf-8").strip() if (out / "card.txt").is_file() else "?"
    rows = []
    for tj in sorted(out.glob("*.train.json")):
        label = tj.name[: -len(".train.json")]
        run = json.loads(tj.read_text(encoding="utf-8"))
        ev_path = out / f"{label}.eval.json"
        ev = json.loads(ev_path.read_text(encoding="utf-8")) if ev_path.is_file() else {}
        smi = out / f"{label}.smi_peak_mib"
        run["nvidia_smi_peak_mib"] = smi.read_text().strip() if smi.is_file() else None
        run["test_fg_dice"] = (ev.get("foreground_mean") or {}).get("dice")
        run["test_cases"] = ev.get("n_cases")
        rows.append(run)
    lines = [f"# gpu_check: {card}", "",
             "| run | precision | replicas | global batch | images/s | TF peak MiB | nvidia-smi peak MiB "
             "| epochs | train s | test fg Dice (cases) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tf_peak = max(r["gpu_peak_mib"].values()) if r["gpu_peak_mib"] else None
        smi_peak = r["nvidia_smi_peak_mib"] or "n/a"
        lines.append(f"| {r['label']} | {r['precision']} | {r['replicas']} | {r['global_batch']} "
                     f"| {_fmt(r['images_per_s'])} | {_fmt(tf_peak, '.0f')} | {smi_peak} "
                     f"| {r['epochs_done']} | {r['train_time_s']} | {_fmt(r['test_fg_dice'], '.3f')} "
                     f"({r['test_cases']}) |")
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps({"card": card, "runs": rows}, indent=1) + "\n",
                                      encoding="utf-8")
    print("\n".join(lines), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one config and record images/s and memory")
    t.add_argument("config", type=Path)
    t.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE")
    t.add_argument("--json", required=True, type=Path)
    t.add_argument("--label", required=True)
    s = sub.add_parser("summary", help="write OUT_DIR/summary.md and summary.json")
    s.add_argument("out_dir", type=Path)
    args = ap.parse_args(argv)
    return train(args) if args.cmd == "train" else summary(args)


if __name__ == "__main__":
    raise SystemExit(main())
