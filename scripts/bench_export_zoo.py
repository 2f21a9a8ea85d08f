"""Every zoo model, short-trained on the real LA volumes, exported to every format and run on held-out real
volumes (issue 20: "every other zoo model that exports is held to labels equal on >= 99.9 % of voxels, or
refused").

For each registered model: ``segkit train`` with the left-atrial preset's settings and that model (a
``--minutes`` time limit), ``segkit infer RUN_DIR`` on the test volumes with probabilities (Keras, float32),
then for each format either the refusal of ``segkit export`` or the bundle, run by ``segkit infer BUNDLE`` on
the same volumes and compared with Keras: max |dp|, the share of voxels whose label is equal (the worst
case), |dDice| against the reference label (the worst case) and the mean Dice. Writes
``<out>/export_zoo.json`` and prints a Markdown table. To keep it on one core: ``taskset -c 1 python ...``.

Usage: python scripts/bench_export_zoo.py [--out DIR] [--minutes 1.5] [--cases 3] [--models NAME ...]
       [--set KEY=VALUE ...]   (``--set`` reaches prepare and train, e.g. a toy run:
       ``--minutes 0.2 --set prepare.size=[64,64] --set data.image_size=[64,64] --set model.num_layers=3``)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deploy import FORMATS, LA, REPO, compare, dices, segkit  # noqa: E402


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | format | max abs dp | labels equal (worst case) | abs dDice (worst case) "
             "| mean Dice |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("refused"):
            lines.append(f"| `{r['model']}` | {r['format']} | refused: {r['refused']} | | | |")
        elif r["format"] == "keras":
            lines.append(f"| `{r['model']}` | Keras (reference) | — | — | — | {r['mean_dice']:.4f} |")
        else:
            lines.append(f"| `{r['model']}` | {r['format']} | {r['max_abs_dp']:.1e} | "
                         f"{100 * r['min_label_agreement']:.4f} % | {r['max_abs_ddice']:.1e} | "
                         f"{r['mean_dice']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    from segkit.config import MODEL_CATALOG
    from segkit.export import refusal
    from segkit.hardware import cpu_name

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "bench-export-zoo")
    ap.add_argument("--minutes", type=float, default=1.5, help="training time limit per model (one core)")
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=MODEL_CATALOG.names())
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    print(f"machine: {cpu_name()}; {args.minutes:g} training minutes a model", flush=True)
    base = [f"data.dir={out / 'data'}", *args.sets]
    segkit("prepare", "left-atrial", str(LA), "--out", str(out / "data"),
           *[a for x in base for a in ("--set", x)])
    splits = json.loads((out / "data" / "splits.json").read_text())
    cases = (splits["test"] + splits["valid"])[: args.cases]
    (out / "volumes").mkdir()
    for c in cases:
        shutil.copy(LA / "imagesTr" / f"{c}.nii.gz", out / "volumes" / f"{c}.nii.gz")
    rows: list[dict[str, Any]] = []
    for name in args.models:
        run = out / "runs" / name
        sets = [*base, f"train.run_dir={run}", f"model.name={name}", f"train.time_limit={args.minutes}",
                "train.epochs=1000", "train.choose_postprocessing=false",
                "train.epoch_change_infer.enabled=false"]
        segkit("train", "left-atrial", *[a for x in sets for a in ("--set", x)])
        ref = out / "infer" / name / "keras"
        segkit("infer", str(run), "--input", str(out / "volumes"), "--output", str(ref),
               "--save-probabilities")
        rows.append({"model": name, "format": "keras", "mean_dice": float(np.mean(dices(ref, cases)))})
        print(json.dumps(rows[-1]), flush=True)
        for fmt in FORMATS:
            why = refusal(name, fmt)
            if why is not None:
                rows.append({"model": name, "format": fmt, "refused": why})
                print(json.dumps(rows[-1]), flush=True)
                continue
            bundle = out / "bundles" / f"{name}-{fmt}"
            try:  # the export's own check may refuse the trained graph ("X does not export to F: ..."): a row
                segkit("export", str(run), "--format", fmt, "--out", str(bundle))
            except SystemExit as e:
                line = next((ln for ln in str(e).splitlines() if ln.startswith("error:")), "")
                if " does not export to " not in line:  # a crash is not a refusal
                    raise
                rows.append({"model": name, "format": fmt, "refused": line.removeprefix("error: ")})
                print(json.dumps(rows[-1]), flush=True)
                continue
            res = out / "infer" / name / fmt
            segkit("infer", str(bundle), "--input", str(out / "volumes"), "--output", str(res),
                   "--save-probabilities")
            rows.append({"model": name, "format": fmt, **compare(ref, res, cases),
                         "mean_dice": float(np.mean(dices(res, cases)))})
            print(json.dumps(rows[-1]), flush=True)
    (out / "export_zoo.json").write_text(json.dumps({"cases": cases, "cpu": cpu_name(),
                                                     "minutes": args.minutes, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
