"""Choose finished runs' post-processing again with the current rule, and score the test volumes with the
choice each run made when it was trained ("before") and with the new one ("after"), side by side.

The new choice is made as ``segkit train`` makes it: on the run's validation volumes
(``segkit.postprocess.choose_postprocessing``), never on the test volumes. "Before" is what
``segkit evaluate`` applies to the run (``apply_postprocessing``: the config's own ``infer`` settings, else
its ``postprocessing.json``). The run's files are not touched: the new choice goes to
``<out>/<name>/postprocessing.json``. One model per run (a ``segkit cv`` run is refused).

Usage (a folder is a run folder, with ``config.yaml`` and ``model.keras``, or a ``bench_quality.py`` result
folder holding one in ``run/``)::

    python scripts/rescore_postprocessing.py /work/bq/acdc80-plan-s27 /work/bq/acdc80-plan-s27-seed7 \\
        --out /work/pp-rescore

It writes ``<out>/<name>/rescore.json`` (and ``<out>/<name>/{before,after}/``: ``segkit evaluate``'s reports)
and prints a Markdown table of every run in ``<out>`` (mean foreground Dice, per class, HD95, the choice;
volumes that changed), so folders can be scored by several processes (one per core) into one ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import score_rows  # noqa: E402 - the bench's own scoring, so the figures compare

from segkit.io.atomic import write_json  # noqa: E402 - bench_quality put the repository on sys.path

RESULT = "rescore.json"


def run_folder(folder: Path) -> Path:
    """The run folder of ``folder``: itself when it has ``config.yaml``, else its ``run/``."""
    for cand in (folder, folder / "run"):
        if (cand / "config.yaml").is_file():
            if not (cand / "model.keras").is_file():
                raise SystemExit(f"{cand}: no model.keras (a segkit cv run? this script scores one model)")
            return cand
    raise SystemExit(f"{folder}: no config.yaml here or in run/ (give a run folder or a bench result folder)")


def run_name(folder: Path) -> str:
    """The name of ``folder``'s results in ``--out``: a bench result folder's name for its ``run/``."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "run" else folder.name


def rescore(folder: Path, out: Path) -> dict[str, Any]:
    """Score ``folder``'s test volumes with its recorded choice and with a choice made again on validation."""
    from segkit.config import load_config
    from segkit.evaluate.run import evaluate_model
    from segkit.postprocess import apply_postprocessing, choose_postprocessing

    run = run_folder(folder)
    cfg = load_config(run / "config.yaml")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"run_dir": run})})
    classes = [c.name for c in cfg.effective_classes]
    name = run_name(folder)
    old = apply_postprocessing(cfg, run).infer
    new = choose_postprocessing(cfg, write=False)
    if new is None:
        raise SystemExit(f"{folder}: no validation volume with its source files to choose on")
    (out / name).mkdir(parents=True, exist_ok=True)
    write_json(out / name / "postprocessing.json", new.to_json())
    result: dict[str, Any] = {"run": str(run)}
    for when, tta, lcc in (("before", bool(old.tta), old.largest_component),
                           ("after", new.tta, new.largest_component)):
        lcc = lcc if isinstance(lcc, bool) else list(lcc)
        infer = cfg.infer.model_copy(update={"tta": tta, "largest_component": lcc})
        ev = evaluate_model(cfg.model_copy(update={"infer": infer}), split="test", out_dir=out / name / when)
        result[when] = {"tta": tta, "largest_component": lcc, **score_rows(ev.rows, classes)}
    before, after = result["before"]["per_case"], result["after"]["per_case"]
    result["changed"] = sorted(c for c in after if after[c] != before.get(c))
    return result


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| run | choice before → after | mean fg Dice before → after | per class after | "
             "HD95 (mm) before → after | volumes changed |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        b, a = r["before"], r["after"]

        def choice(x: dict[str, Any]) -> str:
            lcc = x["largest_component"]
            what = ("every class" if lcc is True else ", ".join(str(c) for c in lcc)) if lcc else ""
            return ("TTA, " if x["tta"] else "") + (f"LCC [{what}]" if what else "no LCC")

        hd = " → ".join(f"{x['mean_hd95_mm']:.2f}" if x["mean_hd95_mm"] is not None else "n/a"
                        for x in (b, a))
        pcd = " / ".join(f"{d:.3f}" for d in a["per_class_dice"].values())
        lines.append(f"| {name} | {choice(b)} → {choice(a)} | {b['mean_fg_dice']:.3f} → "
                     f"{a['mean_fg_dice']:.3f} | {pcd} | {hd} | {', '.join(r['changed']) or 'none'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="run folders or bench_quality result folders")
    ap.add_argument("--out", type=Path, required=True, help="where the reports and rescore.json go")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [run_name(f) for f in args.folders]
    if len(set(names)) < len(names):
        raise SystemExit(f"two folders share a name in --out: {names}")
    for folder, name in zip(args.folders, names, strict=True):
        result = rescore(folder, args.out)
        write_json(args.out / name / RESULT, result)
        b, a = result["before"]["mean_fg_dice"], result["after"]["mean_fg_dice"]
        print(f"[{name}] {b:.4f} -> {a:.4f}", flush=True)
    print(table({p.parent.name: json.loads(p.read_text()) for p in sorted(args.out.glob(f"*/{RESULT}"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
