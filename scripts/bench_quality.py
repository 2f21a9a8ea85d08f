"""Real-data quality benchmark: held-out 3D Dice / HD95 per patient after a fixed training time.

For each dataset and recipe (``--datasets``, ``--recipes``) the bench

1. prepares the dataset with the recipe's ``prepare`` section and the bench's fixed patient split (below),
2. trains with ``train.time_limit = --minutes`` on this machine (both cores unless ``--cores`` pins it),
3. lets training choose its post-processing on the validation patients (``postprocessing.json``),
4. evaluates on the held-out test patients with ``segkit.evaluate`` -- whole original volumes, per case x
   class Dice and HD95 in mm, false positives on every slice counted,

and writes ``<out>/<dataset>-<recipe>/result.json``. Finished pairs are skipped on a rerun (delete the folder
to redo one). At the end it prints a Markdown table and writes ``<out>/quality.md``, ``<out>/quality.json``
and ``<out>/quality.png`` (validation Dice per epoch against training minutes, and the final held-out Dice).

Datasets (``../shared/data/volumes``; SOURCES.md in each folder):

- ``la``: 2018 Atrial Segmentation Challenge LGE-MRI, 16 patients, left atrium. Split (seed 42, ratios
  0.625 / 0.125 / 0.25): test ``la_100 la_102 la_103 la_110``, valid ``la_109 la_113``, train the other 10.
- ``acdc80``: ACDC cine MRI, 80 patients x 2 phases (``acdc_cine_mri_80``), split by patient (seed 42,
  0.7 / 0.1 / 0.2): test 16 patients (002 029 030 041 042 047 053 054 057 072 079 086 088 089 090 094),
  valid 8 (004 009 010 013 035 061 069 073), train the other 56: issue 19's 64 / 16 patients.
- ``acdc80-roi``: the same patients, each volume cut in-plane to its reference label's box + 10 px a side
  (squared), at 128 x 128, one model (no cascade): the oracle upper bound of a locate-then-segment cascade (a
  perfect first stage).
- ``acdc80-cascade``: the same patients, the first cascade measured (the then whole-slice preset's 6-level net
  on fine 128 x 128 crops, coarse 64 x 64 whole slices with 20 % of the time; the preset's cascade is since
  ``acdc80`` itself).
- ``acdc80-whole``: the same patients, the previous ACDC preset: whole slices at 192 x 192, 6 levels, no
  cascade (the baseline the preset's cascade was measured against).
- ``aorta``: the TotalSegmentator aorta CT (ONE volume, 1.5 mm iso; true / false lumen, labels that are a
  model's output), ``plan`` recipe only: planned as 5 blocks of its axial slices 10 mm apart
  (``prepare.slabs``), test ``aorta_slab1``, valid ``aorta_slab5``, train the other 3. Scores are within one
  patient, not patient-wise.
- ``acdc``: ACDC cine MRI, 10 patients x 2 phases, RV / MYO / LV, split by PATIENT (``group_by``; seed 42,
  0.6 / 0.1 / 0.3): test ``patient007 patient008 patient024`` (6 volumes), valid ``patient002``, train 6
  patients.

The split is checked against these lists, so a change in the split code cannot move the benchmark silently.

Recipes:

- ``recommended``: ``configs/<preset>.yaml`` (``left-atrial``, ``acdc``), segkit's recipe;
- ``plan``: the config ``segkit plan`` writes for the dataset (``--budget`` = ``--minutes``, ``--cores`` = the
  cores this process may use, ``--preset-like`` the dataset's preset), with the bench's split;
- ``seed``: the seed experiments' settings, ``configs/seed/left-atrial.yaml`` for LA and
  ``configs/seed/whole-heart.yaml`` (the multi-class cardiac MRI seed) for ACDC, with the dataset's classes,
  at 128 x 128 input and at most 6 levels (the seed's 512 x 512 x 8 levels would not finish one epoch in the
  budget; the issue that asked for this bench measured the seed recipe the same way).

    python scripts/bench_quality.py                          # both datasets, both recipes, 20 minutes each
    python scripts/bench_quality.py --datasets la --recipes recommended --minutes 10 --tag try1
    python scripts/bench_quality.py --quick                  # smoke run: 2 minutes, a few patients
    python scripts/bench_quality.py --datasets la --recipes recommended --minutes 10 --models unet3plus u2net
    # 3-fold CV + ensemble:
    python scripts/bench_quality.py --datasets la --recipes recommended --minutes 10 --cv 3
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data" / "volumes").resolve()
sys.path.insert(0, str(REPO))

DATASETS: dict[str, dict[str, Any]] = {
    "la": {
        "title": "Left atrium, LGE-MRI (2018 challenge, 16 patients)",
        "preset": "left-atrial",
        "seed_preset": "left-atrial",
        "source": "left-atrial",
        "src": SHARED / "la2018_lge_mri",
        "globs": (None, None),
        "split": {"train": 0.625, "valid": 0.125, "test": 0.25},
        "test": ["la_100", "la_102", "la_103", "la_110"],
        "valid": ["la_109", "la_113"],
    },
    "acdc": {
        "title": "ACDC cine MRI (10 patients x 2 phases): RV, MYO, LV",
        "preset": "acdc",
        "seed_preset": "whole-heart",
        "source": "nifti",
        "src": SHARED / "acdc_cine_mri",
        "globs": ("*_image.nii.gz", "*_label.nii.gz"),
        "split": {"train": 0.6, "valid": 0.1, "test": 0.3, "group_by": r"^(patient\d+)_"},
        "test": ["patient007_frame01", "patient007_frame02", "patient008_frame01", "patient008_frame02",
                 "patient024_frame01", "patient024_frame02"],
        "valid": ["patient002_frame01", "patient002_frame02"],
    },
}
DATASETS["acdc80"] = {  # the acdc entry (preset, source, globs) on the 80-patient folder and its own split
    **DATASETS["acdc"],
    "title": "ACDC cine MRI (80 patients x 2 phases): RV, MYO, LV; 64 patients train + valid, 16 test",
    "src": SHARED / "acdc_cine_mri_80",
    "split": {"train": 0.7, "valid": 0.1, "test": 0.2, "group_by": r"^(patient\d+)_"},
    "test": [f"patient{p:03d}_frame0{f}" for p in (2, 29, 30, 41, 42, 47, 53, 54, 57, 72, 79, 86, 88, 89,
                                                       90, 94) for f in (1, 2)],
    "valid": [f"patient{p:03d}_frame0{f}" for p in (4, 9, 10, 13, 35, 61, 69, 73) for f in (1, 2)],
}
# The oracle upper bound of a locate-then-segment cascade (issue 19): the same 80 patients, each volume cut
# in-plane to its reference label's box (all slices) + ORACLE_MARGIN px a side, squared (66-182 px, median
# 91), then resized to 128 x 128 (about 1.4x up on the median case: the heart larger and of similar size in
# every case) instead of the whole field of view squeezed into 192 x 192. Training and test crops come
# from the reference labels: a perfect first stage. Dice inside the crop is the whole volume's Dice (nothing
# outside it is foreground in the reference, and nothing outside it is predicted).
ORACLE_MARGIN = 10
DATASETS["acdc80-roi"] = {
    **DATASETS["acdc80"], "crop_margin": ORACLE_MARGIN, "size": [128, 128], "cascade": {"enabled": False},
    "num_layers": 6,  # as measured (the ACDC preset of the day: 6 levels)
    "title": "ACDC 80 patients, oracle heart crop (reference-label box + 10 px), 128 x 128"}
# The cascade itself (issue 19): the same 80 patients at full field of view; a coarse model on whole slices
# at 64 x 64 finds the heart, the fine model segments a crop around it at 128 x 128 (training crops: the
# reference box + 10 mm, jittered by up to 10 mm; inference crops: the coarse foreground's box + 15 mm).
# Both stages share the time limit (the coarse one 20 %).
DATASETS["acdc80-cascade"] = {
    **DATASETS["acdc80"], "size": [128, 128], "num_layers": 6,  # as measured (the preset of the day)
    "cascade": {"enabled": True, "coarse_size": [64, 64], "coarse_share": 0.2, "margin_mm": 10.0,
                "jitter_mm": 10.0},
    "title": "ACDC 80 patients, cascade: coarse 64 x 64 whole slices -> fine 128 x 128 heart crop"}
# The ACDC preset before it became the cascade (2026-12-06): whole slices at 192 x 192, 6 levels; the
# baseline of the README's two-seed comparison, to rerun it side by side with the preset of the day.
DATASETS["acdc80-whole"] = {
    **DATASETS["acdc80"], "size": [192, 192], "num_layers": 6, "cascade": {"enabled": False},
    "title": "ACDC 80 patients, the previous preset: whole slices at 192 x 192, 6 levels"}
DATASETS["aorta"] = {
    "title": "Aorta CT, true / false lumen (ONE volume as 5 blocks of slices: within-patient scores)",
    "preset": "hocm",  # --preset-like: the cardiac CT recipe; the set has no preset of its own
    "source": "nifti",
    "src": SHARED / "totalseg_aorta_ct",
    "globs": ("*_ct_image.nii.gz", "*_ct_lumen_label.nii.gz"),
    "split": {"train": 3, "valid": 1, "test": 1},
    "test": ["aorta_slab1"],
    "valid": ["aorta_slab5"],
    "plan_only": True,
}
RECIPES = ("recommended", "seed", "plan")
#: a dataset entry's own settings laid over the recipe (recipe_config); the plan recipe plans them itself
OWN_SETTINGS = ("crop_margin", "size", "cascade", "num_layers")
SEED_SIZE = [128, 128]
SEED_MAX_LEVELS = 6


def recipe_config(dataset: str, recipe: str, workdir: Path, minutes: float, quick: bool,
                  presets: Path = REPO / "configs", model: str | None = None) -> Any:
    """The validated config of one (dataset, recipe) run (``presets``: folder of the recommended configs;
    ``model``: another registered architecture with the recipe's other settings)."""
    from segkit.config import load_config, validate_config

    ds = DATASETS[dataset]
    own = load_config(Path(presets) / f"{ds['preset']}.yaml")
    if ds.get("plan_only") and recipe != "plan":
        raise SystemExit(f"{dataset} has no preset of its own: only --recipes plan")
    if recipe == "recommended":
        raw = own.model_dump(mode="json")
    elif recipe == "seed":
        raw = load_config(REPO / "configs" / "seed" / f"{ds['seed_preset']}.yaml").model_dump(mode="json")
        raw["classes"] = [c.model_dump(mode="json") for c in own.classes]
        raw["name"], raw["modality"] = own.name, own.modality
        raw["prepare"]["size"] = raw["data"]["image_size"] = SEED_SIZE
        raw["model"]["num_layers"] = min(int(raw["model"]["num_layers"]), SEED_MAX_LEVELS)
        raw["evaluate"] = own.evaluate.model_dump(mode="json")
    elif recipe == "plan":  # segkit plan's config for the dataset, planned for this budget and these cores
        from segkit.plan import PlanOptions, run_plan
        from segkit.plan.layout import detect_layout

        if any(k in ds for k in OWN_SETTINGS) or quick:
            raise SystemExit(f"the plan recipe plans the whole source itself, not {dataset}'s own settings "
                             "(crops, sizes, cascade) or a --quick subset")

        opts = PlanOptions(name=own.name, budget_minutes=minutes, cores=len(os.sched_getaffinity(0)),
                           preset_like=ds["preset"])
        layout = detect_layout(Path(ds["src"]), *ds["globs"])
        raw = run_plan(Path(ds["src"]), workdir / "plan", opts, layout).config.model_dump(mode="json")
    else:
        raise SystemExit(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    if model:
        raw["model"]["name"] = model
    if ds.get("size"):
        raw["prepare"]["size"] = raw["data"]["image_size"] = list(ds["size"])
    if ds.get("cascade"):
        raw["cascade"] = dict(ds["cascade"])
    if ds.get("num_layers"):
        raw["model"]["num_layers"] = int(ds["num_layers"])
    raw["prepare"]["split"] = dict(ds["split"])
    raw["data"]["dir"] = str(workdir / "data")
    raw["train"]["run_dir"] = str(workdir / "run")
    raw["train"]["time_limit"] = minutes
    raw["train"]["epochs"] = max(int(raw["train"]["epochs"]), 1000)  # the time limit ends the run
    raw["evaluate"]["split"] = "test"
    raw["evaluate"]["output_dir"] = str(workdir / "evaluation")
    if quick:
        raw["train"]["epoch_change_infer"] = {"enabled": False}
    return validate_config(raw)


def quick_source(dataset: str, tmp: Path) -> Path:
    """A folder of symlinks to the test + valid + four training cases (smoke runs)."""
    ds = DATASETS[dataset]
    keep = set(ds["test"]) | set(ds["valid"])
    src = Path(ds["src"])
    files = sorted(p for p in src.rglob("*.nii.gz"))
    extra = 0
    for f in files:
        case = f.name.replace(".nii.gz", "").replace("_image", "").replace("_label", "")
        if case not in keep and extra < 4 and "label" not in f.name and "labelsTr" not in str(f):
            keep.add(case)
            extra += 1
    for f in files:
        case = f.name.replace(".nii.gz", "").replace("_image", "").replace("_label", "")
        if case in keep:
            dst = tmp / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                dst.symlink_to(f)
    return tmp


def crop_source(src: Path, dst: Path, margin: int) -> Path:
    """``dst``: every ``*_image`` / ``*_label`` pair of ``src`` cut in-plane (axes 0, 1) to the label's
    foreground box over all slices + ``margin`` voxels a side, widened to a square within the image (the
    affine follows the cut: nibabel's slicer). Written once; an existing ``dst`` is reused."""
    import nibabel as nib

    done = dst / ".complete"
    if done.is_file():
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    for image in sorted(src.glob("*_image.nii.gz")):
        label = image.with_name(image.name.replace("_image", "_label"))
        img, lab = nib.load(str(image)), nib.load(str(label))
        fg = np.asarray(lab.dataobj) > 0
        box = []
        for ax in (0, 1):
            idx = np.nonzero(fg.any(axis=tuple(a for a in range(3) if a != ax)))[0]
            box.append([int(idx[0]) - margin, int(idx[-1]) + 1 + margin])
        side = max(b - a for a, b in box)
        for ax, (a, b) in enumerate(box):
            n = img.shape[ax]
            a -= (side - (b - a)) // 2
            a = max(0, min(a, n - side)) if side <= n else 0
            box[ax] = [a, min(n, a + side)]
        (x0, x1), (y0, y1) = box
        nib.save(img.slicer[x0:x1, y0:y1, :], str(dst / image.name))
        nib.save(lab.slicer[x0:x1, y0:y1, :], str(dst / label.name))
    done.write_text("")
    return dst


def check_split(dataset: str, data_dir: Path, quick: bool, cv: bool = False) -> dict[str, Any]:
    splits = json.loads((data_dir / "splits.json").read_text())
    ds = DATASETS[dataset]
    if not quick and (splits["test"] != ds["test"] or (splits["valid"] != ds["valid"] and not cv)):
        raise SystemExit(f"{dataset}: the split moved: test {splits['test']} valid {splits['valid']} "
                         f"(expected test {ds['test']} valid {ds['valid']})")
    return splits


def run_one(dataset: str, recipe: str, out: Path, minutes: float, quick: bool, tag: str,
            presets: Path = REPO / "configs", model: str | None = None,
            cv: int | None = None, seed: int | None = None) -> dict[str, Any]:
    from segkit.config import COARSE_DIR
    from segkit.evaluate.run import evaluate_model
    from segkit.io.run_folder import CONFIG_FILE
    from segkit.prepare import PrepareOptions, SourceOptions, run_prepare
    from segkit.train import train_model

    name = f"{dataset}-{recipe}" + (f"-{tag}" if tag else "") + (f"-seed{seed}" if seed is not None else "")
    workdir = out / name
    result_path = workdir / "result.json"
    if result_path.is_file():
        done = load_result(result_path)
        done_seed = done.get("seed", done.get("config", {}).get("seed"))
        if seed is not None and done_seed != seed:
            raise SystemExit(f"[{name}] {result_path} was trained with seed {done_seed}, not --seed {seed}: "
                             "give another --tag")
        print(f"[{name}] done before: {result_path}", flush=True)
        return done
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = recipe_config(dataset, recipe, workdir, minutes, quick, presets, model)
    if cv:  # the same test patients; the other patients in cv folds (valid ratio unused)
        raw = cfg.model_dump(mode="json")
        raw["prepare"]["split"]["folds"] = cv
        from segkit.config import validate_config

        cfg = validate_config(raw)
    # --seed: training's seed (weights, shuffling, augmentation); prepare and the split keep the recipe's
    train_cfg = cfg if seed is None else cfg.model_copy(update={"seed": seed})
    run_dir = Path(cfg.train.run_dir)
    saved = [p for p in (run_dir / CONFIG_FILE, run_dir / COARSE_DIR / CONFIG_FILE) if p.is_file()]
    if saved:  # an interrupted run (a cascade may have stopped in its coarse stage): resumed below
        import yaml

        saved_seed = (yaml.safe_load(saved[0].read_text()) or {}).get("seed")
        if saved_seed != train_cfg.seed:
            raise SystemExit(f"[{name}] {saved[0]} was trained with seed {saved_seed}, not {train_cfg.seed}: "
                             "give another --tag")
    ds = DATASETS[dataset]
    src = quick_source(dataset, workdir / "src") if quick else Path(ds["src"])
    if ds.get("crop_margin") is not None:
        src = crop_source(src, workdir / "src-crop", int(ds["crop_margin"]))
    t0 = time.perf_counter()
    globs = SourceOptions(image_glob=ds["globs"][0], label_glob=ds["globs"][1])
    report = run_prepare(ds["source"], src, Path(cfg.data.dir), cfg,
                         PrepareOptions(workers=2, source_options=globs))
    if report.failures:
        raise SystemExit(f"[{name}] prepare failed: {report.failures[0]}")
    prepare_s = time.perf_counter() - t0
    splits = check_split(dataset, Path(cfg.data.dir), quick, cv=bool(cv))
    cfg = train_cfg
    print(f"[{name}] prepared in {prepare_s:.0f} s; training {minutes:g} min"
          + (f" x {cv} folds" if cv else "") + " ...", flush=True)
    t0 = time.perf_counter()
    cv_summary = None
    if cv:
        from segkit.cv import cv_table, run_cv

        cvr = run_cv(cfg)
        cv_summary = cvr.summary
        print(cv_table(cv_summary), flush=True)
        runs = cv_summary["runs"]
        tr = SimpleNamespace(epochs_done=sum(r["epochs_done"] for r in runs),
                             train_time_s=sum(r["train_time_s"] for r in runs),
                             stop_reason=runs[0]["stop_reason"], best_value=None, monitor="", history=[])
    else:
        tr = train_model(cfg, resume=bool(saved), overwrite=not saved)
    train_wall = time.perf_counter() - t0
    print(f"[{name}] {tr.epochs_done} epochs in {tr.train_time_s / 60:.1f} min ({tr.stop_reason}); "
          f"best {tr.monitor} {tr.best_value}", flush=True)
    t0 = time.perf_counter()
    ev = evaluate_model(cfg)
    eval_s = time.perf_counter() - t0
    scores = score_rows(ev.rows, [c.name for c in cfg.effective_classes])
    pp = json.loads((Path(cfg.train.run_dir) / "postprocessing.json").read_text()) \
        if (Path(cfg.train.run_dir) / "postprocessing.json").is_file() else None
    history = [{"time_s": r.get("time_s"), "val_fg_dice": r.get("val_fg_dice")} for r in tr.history]
    result = {
        "dataset": dataset,
        "recipe": recipe,
        "tag": tag,
        "run": name,
        "minutes": minutes,
        "seed": cfg.seed,
        "model": cfg.model.name,
        "params": None,
        "epochs": tr.epochs_done,
        "train_time_s": tr.train_time_s,
        "train_wall_s": train_wall,
        "prepare_s": prepare_s,
        "evaluate_s": eval_s,
        "stop_reason": tr.stop_reason,
        # a cascade: the coarse stage's share (the other training fields are the fine stage's)
        "coarse": ({"epochs": tr.coarse.epochs_done, "train_time_s": tr.coarse.train_time_s,
                    "wall_s": tr.coarse.wall_s, "best_val_fg_dice": tr.coarse.best_value}
                   if getattr(tr, "coarse", None) is not None else None),
        "best_val_fg_dice": tr.best_value,
        "postprocessing": pp,
        "test_cases": splits["test"],
        **scores,
        "history": history,
        "cv": cv_summary,
        "config": cfg.model_dump(mode="json"),
    }
    from segkit.io.atomic import write_json

    write_json(result_path, result)
    print(f"[{name}] held-out mean fg Dice {result['mean_fg_dice']:.4f} +- {result['sd_fg_dice']:.4f}, "
          f"HD95 {result['mean_hd95_mm']} mm", flush=True)
    return result


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def _zero(v: float | None) -> float:
    """A Dice that is undefined (empty prediction and reference) cannot occur for a class present in every
    test volume; should it, it counts as 0 rather than vanish from the mean."""
    return 0.0 if v is None else v


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def score_rows(rows: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    """The bench's scores of ``segkit evaluate``'s rows: ``per_case`` (Dice and HD95 per class), the mean and
    sd over cases of the mean foreground Dice (an undefined Dice, empty reference and prediction, counts 0),
    the mean HD95 and the per-class mean Dice."""
    per_case: dict[str, dict[str, dict[str, float | None]]] = {}
    for row in rows:
        per_case.setdefault(row["case_id"], {})[row["class_name"]] = {
            "dice": _num(row.get("dice")), "hd95": _num(row.get("hd95_mm"))}
    fg = [float(np.mean([_zero(v[c]["dice"]) for c in classes])) for v in per_case.values()]
    hd = [_nanmean([_nan(v[c]["hd95"]) for c in classes]) for v in per_case.values()]
    return {
        "per_case": per_case,
        "mean_fg_dice": float(np.mean(fg)),
        "sd_fg_dice": float(np.std(fg)),
        "mean_hd95_mm": _nanmean(hd) if not all(math.isnan(h) for h in hd) else None,
        "per_class_dice": {
            c: float(np.mean([_zero(v[c]["dice"]) for v in per_case.values()])) for c in classes
        },
    }


def load_result(path: Path) -> dict[str, Any]:
    """A run's ``result.json``; ``run`` (its folder's name) filled in for results written before it was
    recorded."""
    return {"run": path.parent.name, **json.loads(path.read_text())}


def run_label(r: dict[str, Any]) -> str:
    """``recipe (tag, seed N)`` of a result in the table and the plot; the seed only for a run trained with
    ``--seed`` (its folder ends in ``-seedN``), so two seeds of one tag are told apart."""
    extra = [r["tag"]] if r.get("tag") else []
    if str(r.get("run", "")).endswith(f"-seed{r.get('seed')}"):
        extra.append(f"seed {r['seed']}")
    return r["recipe"] + (f" ({', '.join(extra)})" if extra else "")


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| dataset | recipe | epochs in budget | held-out patients' volumes | mean fg Dice ± sd | "
             "per class Dice | mean HD95 (mm) | post-processing |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        pcd = ", ".join(f"{c} {d:.3f}" for c, d in r["per_class_dice"].items())
        pp = r.get("postprocessing") or {}
        ppt = ("TTA" if pp.get("tta") else "no TTA") + (f", LCC {pp.get('largest_component')}"
                                                       if pp.get("largest_component") else "")
        hd = f"{r['mean_hd95_mm']:.2f}" if r.get("mean_hd95_mm") is not None else "n/a"
        name = run_label(r)
        co = r.get("coarse")
        epochs = (f"{r['epochs']} ({r['train_time_s'] / 60:.1f} min)" if not co else
                  f"coarse {co['epochs']} ({co['train_time_s'] / 60:.1f} min) + fine {r['epochs']} "
                  f"({r['train_time_s'] / 60:.1f} min)")
        lines.append(f"| {r['dataset']} | {name} | {epochs} | "
                     f"{len(r['per_case'])} | {r['mean_fg_dice']:.3f} ± {r['sd_fg_dice']:.3f} | {pcd} | "
                     f"{hd} | {ppt} |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in results})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for r in [r for r in results if r["dataset"] == ds]:
            name = run_label(r)
            xs = [(h["time_s"] or 0) / 60 for h in r["history"]]
            ys = [h["val_fg_dice"] if h["val_fg_dice"] is not None else float("nan") for h in r["history"]]
            line, = ax.plot(xs, ys, "-o", markersize=3, label=f"{name}: validation (2D, per epoch)")
            ax.plot([r["train_time_s"] / 60], [r["mean_fg_dice"]], "*", markersize=14, color=line.get_color(),
                    label=f"{name}: held-out 3D Dice {r['mean_fg_dice']:.3f}")
        ax.set_title(DATASETS[ds]["title"], fontsize=10)
        ax.set_xlabel("training minutes (this CPU)")
        ax.set_ylabel("foreground Dice")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["la", "acdc"], choices=list(DATASETS))
    ap.add_argument("--recipes", nargs="+", default=["recommended", "seed"], choices=list(RECIPES))
    ap.add_argument("--minutes", type=float, default=20.0, help="train.time_limit of every run (default 20)")
    ap.add_argument("--out", type=Path, default=REPO / "bench-quality", help="work and result folder")
    ap.add_argument("--tag", default="", help="suffix of the run folders (to keep variants apart)")
    ap.add_argument("--presets", type=Path, default=REPO / "configs",
                    help="folder holding the recommended configs (left-atrial.yaml, acdc.yaml); "
                         "for trying variants")
    ap.add_argument("--models", nargs="+", default=[None], metavar="NAME",
                    help="train these registered models instead of the recipe's "
                         "(one run each, tagged by name; the model table of the README)")
    ap.add_argument("--cv", type=int, default=None, metavar="K",
                    help="cross-validation: K folds of the non-test patients "
                         "(segkit cv, --minutes per fold), then the fold ensemble on the same test patients")
    ap.add_argument("--seed", type=int, default=None,
                    help="train with this seed (weights, shuffling, augmentation) on data prepared and split "
                         "with the recipe's own seed: a second seed of the same comparison (run folders get "
                         "-seedN)")
    ap.add_argument("--cores", default=None, help="pin to these CPU ids, e.g. 0 or 0,1 (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 minutes, test + valid + 4 training cases")
    args = ap.parse_args(argv)
    if args.cores:
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    minutes = 2.0 if args.quick and args.minutes == 20.0 else args.minutes
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from segkit.hardware import cpu_name

    print(f"$ python {' '.join(shlex.quote(a) for a in sys.argv)}", flush=True)
    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} core(s) used; {platform.platform()}",
          flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run_one(d, r, args.out, minutes, args.quick,
                       "-".join(t for t in (m, f"cv{args.cv}" if args.cv else "", args.tag) if t),
                       args.presets, m, args.cv, args.seed)
               for d in args.datasets for r in args.recipes for m in args.models]
    # every result in the folder (earlier invocations too) goes into the table
    everything = [load_result(p) for p in sorted(args.out.glob("*/result.json"))]
    md = table(everything)
    print(md)
    from segkit.io.atomic import write_json, write_text

    write_text(args.out / "quality.md", md + "\n")
    write_json(args.out / "quality.json", [{k: v for k, v in r.items() if k != "config"} for r in everything])
    plot(everything, args.out / "quality.png")
    print(f"wrote {args.out / 'quality.md'}, {args.out / 'quality.png'}", flush=True)
    return 0 if results else 1


import numpy as np  # noqa: E402 - after the sys.path/env setup above

if __name__ == "__main__":
    raise SystemExit(main())
