"""Where a trained cascade fails on its test volumes: the coarse stage's crop, or the fine stage inside it.

For every test volume of a cascade run (``segkit train`` with ``cascade.enabled``; a folder is a run folder
or a ``bench_quality.py`` result folder holding one in ``run/``), the two stages are run as ``segkit
evaluate`` runs them (no TTA, no component filter) and compared with the reference, in the display slices at
the original size:

- **box**: the fine stage's final crop ``(r0, r1, c0, c1)`` on the display slices, after
  ``cascade.refine_passes`` (None: the fine stage segmented whole slices); without TTA, so where the run's
  post-processing chose flip TTA, evaluate's refined crop may differ slightly; **coarse_box**: the coarse
  stage's crop, the first one the fine stage segmented (None: the coarse stage found nothing);
- **crop**: the share of the reference foreground inside the fine stage's crop (``inside``); where the
  reference's box centre lies in the crop (``offset``: the larger of the row and column offsets, as a share of
  the crop's side: 0 = centred, 0.5 = on its edge); the reference box's side against the crop's (``fill``);
  **coarse_crop**: the same numbers for the coarse stage's crop (a low ``fill`` there and a normal one in
  ``crop``: the refinement corrected the coarse stage's scale);
- **coarse**: the coarse stage's Dice per class (whole slices, at its own coarse resolution, resized back);
- **fine**: the cascade's Dice per class, and, per class, the share of its reference voxels that it called
  background (``missed``) or another class (``confused``).

A volume whose crop holds the whole heart and is centred but whose fine Dice collapses is the fine stage's
failure; an off-centre or cut crop is the coarse stage's.

Usage::

    python scripts/diagnose_cascade.py /work/bq/acdc80-recommended-s31 [--cases patient047_frame02 ...] \\
        [--out diag.json]

It prints a Markdown table (one row per volume, worst fine Dice first) and writes ``--out`` (JSON) if given.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_folder(folder: Path) -> Path:
    """``folder`` itself when it holds ``config.yaml``, else its ``run/``."""
    for cand in (folder, folder / "run"):
        if (cand / "config.yaml").is_file():
            return cand
    raise SystemExit(f"{folder}: no config.yaml here or in run/ (give a run folder or a bench result folder)")


def display_stack(volume: npt.NDArray, affine: npt.ArrayLike, axis: int) -> npt.NDArray:
    """(N, h, w) display slices of an (X, Y, Z) volume, as ``prepare`` orders and orients them."""
    from segkit.geometry import to_canonical
    from segkit.prepare.slicing import display_slices

    ras = to_canonical(np.asarray(volume), affine, copy=False)[0]
    n = ras.shape[axis]
    return np.stack([s.copy() for _, s in display_slices(ras, axis, range(n))])


def dice(pred: npt.NDArray[np.bool_], ref: npt.NDArray[np.bool_]) -> float | None:
    """``segkit.metrics.overlap.dice`` (evaluate's rule), None (JSON null) where the reference is empty."""
    from segkit.metrics.overlap import dice as overlap_dice

    d = overlap_dice(pred, ref)
    return None if math.isnan(d) else d


def crop_numbers(ref: npt.NDArray, box: tuple[int, int, int, int] | None) -> dict[str, float | None]:
    """``inside``, ``offset`` and ``fill`` of the crop ``box`` against the reference display stack."""
    from segkit.prepare.roi import foreground_box

    fg = ref > 0
    ref_box = foreground_box(fg)
    if box is None or ref_box is None:
        return {"inside": None, "offset": None, "fill": None}
    r0, r1, c0, c1 = box
    a0, a1, b0, b1 = ref_box
    inside = fg[:, r0:r1, c0:c1].sum() / fg.sum()
    off = max(abs((a0 + a1) / 2 - (r0 + r1) / 2) / (r1 - r0), abs((b0 + b1) / 2 - (c0 + c1) / 2) / (c1 - c0))
    fill = max((a1 - a0) / (r1 - r0), (b1 - b0) / (c1 - c0))
    return {"inside": float(inside), "offset": float(off), "fill": float(fill)}


def diagnose(folder: Path, only: list[str] | None) -> dict[str, Any]:
    """The crop, coarse and fine numbers of every test volume of one cascade run."""
    from segkit.config import load_config
    from segkit.predict.cascade import inference_box, load_cascade
    from segkit.predict.cases import dataset_cases, read_source_case
    from segkit.predict.volume import VolumeSettings, predict_volume

    run = run_folder(folder)
    cfg = load_config(run / "config.yaml")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"run_dir": run})})
    if not cfg.cascade.enabled:
        raise SystemExit(f"{run}: not a cascade run (cascade.enabled is false)")
    cascade = load_cascade(run, cfg, precision=cfg.train.precision)  # as segkit evaluate loads it
    cases = dataset_cases(cfg, "test")
    unknown = sorted(set(only or ()) - set(cases.split))
    if unknown:
        raise SystemExit(f"{run}: not test volumes of this run: {', '.join(unknown)} "
                         f"(test volumes: {', '.join(sorted(cases.split))})")
    names = [(c.id, c.name) for c in cfg.effective_classes]
    settings = VolumeSettings(int(cfg.infer.batch_size))
    size = (int(cascade.coarse_cfg.prepare.size[0]), int(cascade.coarse_cfg.prepare.size[1]))
    out: dict[str, Any] = {}
    for case_id, record in sorted(cases.with_sources.items()):
        if only and case_id not in only:
            continue
        case = read_source_case(case_id, record, cases.label_cfg)
        if case is None:  # read_source_case warned: the source files changed since prepare
            continue
        geo = case.geometry
        coarse = predict_volume(cascade.coarse, case.image, replace(geo, size=size, crop=None),
                                cascade.coarse_cfg, settings)
        coarse_box = inference_box(coarse, cfg)  # the cascade's first crop
        fine = predict_volume(cascade, case.image, geo, cfg, settings)  # both stages, refinement included
        box = fine.crop
        ref2d = display_stack(case.reference, case.image.affine, geo.axis)
        row: dict[str, Any] = {"box": None if box is None else [int(v) for v in box],
                               "coarse_box": None if coarse_box is None else [int(v) for v in coarse_box],
                               "crop": crop_numbers(ref2d, box),
                               "coarse_crop": crop_numbers(ref2d, coarse_box), "coarse": {}, "fine": {}}
        for cid, name in names:
            row["coarse"][name] = dice(coarse.labels2d == cid, ref2d == cid)
            ref_c = case.reference == cid
            n = int(ref_c.sum())
            pred_at = fine.labels[ref_c]
            row["fine"][name] = {
                "dice": dice(fine.labels == cid, ref_c),
                "pred_voxels": int((fine.labels == cid).sum()),
                "missed": None if n == 0 else float((pred_at == 0).sum() / n),
                "confused": None if n == 0 else float(((pred_at != 0) & (pred_at != cid)).sum() / n),
            }
        out[case_id] = row
        print(f"{case_id}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return out


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def fine_cell(v: dict[str, float | None]) -> str:
    return f"{fmt(v['dice'])} ({fmt(v['missed'])} / {fmt(v['confused'])})"


def table(rows: dict[str, Any]) -> str:
    """Markdown, the worst volume (lowest fine Dice of any class) first."""
    names = list(next(iter(rows.values()))["fine"]) if rows else []

    def worst(r: dict[str, Any]) -> float:
        return min((v["dice"] for v in r["fine"].values() if v["dice"] is not None), default=1.0)

    head = ["volume", "inside", "offset", "fill", "coarse crop's fill", *[f"coarse {n}" for n in names],
            *[f"fine {n} (missed / confused)" for n in names]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case_id, r in sorted(rows.items(), key=lambda kv: worst(kv[1])):
        c = r["crop"]
        cells = [case_id, fmt(c["inside"]), fmt(c["offset"]), fmt(c["fill"]), fmt(r["coarse_crop"]["fill"]),
                 *[fmt(r["coarse"][n]) for n in names],
                 *[fine_cell(r["fine"][n]) for n in names]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="a cascade run folder, or a bench_quality result folder")
    ap.add_argument("--cases", nargs="+", default=None, help="only these test volumes (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers here (JSON)")
    args = ap.parse_args(argv)
    rows = diagnose(args.folder, args.cases)
    if args.out is not None:
        from segkit.io.atomic import write_json

        write_json(args.out, {"run": str(run_folder(args.folder)), "cases": rows})
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
