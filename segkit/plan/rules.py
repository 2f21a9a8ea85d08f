"""The planning rules of ``segkit plan``: a dataset fingerprint (``segkit.plan.fingerprint``) and a training
budget -> every choice of a config, each with the reason written beside it.

Data-driven choices (nnU-Net's rules where they fit a 2D, CPU-bound toolkit):

- ``modality``: the fingerprint's guess (DICOM Modality, else HU-like intensities);
- ``prepare.axis``: the canonical axis of the coarsest spacing when the volumes are anisotropic (largest over
  smallest spacing > ``ANISOTROPY``; nnU-Net's 2D rule: slice across the coarse axis), else axial (2);
- ``prepare.spacing``: the median in-plane spacing (nnU-Net's target spacing), written in mm;
- ``data.image_size`` (the training window, ``data.patches: true``): the largest in-plane foreground bounding
  box at that spacing plus ``MARGIN`` on each side, no larger than the median slice (windows cropped from a
  full field of view lost 0.16 Dice on ACDC: false positives far from the heart; a small box makes the plan a
  cascade instead, below); each side rounded to the nearest multiple of ``2**(num_layers - 1)``;
- ``model.num_layers``: as many levels as keep the bottleneck's shorter side at 4-8 pixels;
- ``train.batch_size`` and ``train.epochs`` for the budget: images the budget trains = budget seconds x
  ``CPU_GFLOPS`` per core x cores / (3 x the model's forward GFLOP per image; forward + backward ~ 3 x
  forward); batch 4 (the presets' measured choice) unless that leaves fewer than ``MIN_STEPS`` steps (2) or
  more than ``MAX_STEPS`` (8); epochs = images / training slices a epoch;
- normalisation: CT -> ``prepare.ct_window`` = the foreground's pooled 0.5 / 99.5 percentiles (clip, then
  scale); MR -> ``prepare.mr_percentiles`` [0.5, 99.5] of each volume (segkit's per-volume scaling);
- ``data.context_slices``: 0 (2D): 2.5D context was measured and dropped on LA (README), and across a coarse
  axis neighbouring slices are far apart;
- the cascade: when the foreground box covers less than ``CASCADE_BELOW`` of the field of view and the
  fine crop (below) less than ``CASCADE_CROP_BELOW`` of the slice, a cascade
  (``cascade.enabled``): the fine stage's square crop (``prepare.size``, no ``prepare.spacing``) is the
  median case's foreground box (its longer side) + ``CASCADE_MARGIN_MM`` + ``CASCADE_JITTER_MM`` / 2 a side
  at the target spacing: every case's own crop is resized to it, so the median case keeps its resolution (the
  largest box would set it by an outlier: 243 mm among ACDC-80's hearts); the coarse stage sees the median
  slice / ``COARSE_FACTOR``; a header comment says which and why;
- one labelled volume: ``prepare.slabs`` cuts it into ``SLABS`` blocks of slices along the slicing axis
  (fewer when it is short, never fewer than 3 of ``MIN_SLAB_SLICES``), ``SLAB_GAP_MM`` apart, one to
  validate, one to test, the others to train (``slab_count``): the only held-out slices one volume has;
  the scores are within one patient, and the config's header says so;
- ``prepare.split``: the preset's ratios (2 cases: one to train, one to validate), by patient
  (``group_by``) with the preset's own pattern when it matches every case id, else with the
  ``<patient>_<part>`` guess when every id reads so, some patient holds several cases and none more than
  ``MAX_PARTS`` (``patient_grouping``); either only with at least one patient a split.

Every other choice (model family, filters, kernels, normalisation layers, loss, optimiser, schedule,
checkpoint, augmentation) is the tuned recipe of the preset named by
``PlanOptions.preset_like``, copied with its reason: the rules above do not know better than those
measurements.
"""

from __future__ import annotations

import colorsys
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit.config import Config, load_config
from segkit.errors import DataError
from segkit.hardware import resolve_policy
from segkit.io.volumes import Slab

ANISOTROPY = 3.0
"""Largest over smallest spacing above which volumes are sliced across their coarsest axis."""
MARGIN = 0.1
"""Share of the foreground box added on each side of the training window."""
CASCADE_BELOW = 0.25
"""Foreground box area / slice area below which the plan is a cascade (locate, then segment a crop)."""
CASCADE_CROP_BELOW = 0.4
"""... and the fine stage's square crop (the box + margins) a share of the median slice below which: above it,
the crop cuts away little background for the fine stage to be kept from, while the coarse stage still takes
``COARSE_SHARE`` of the budget at 1 / ``COARSE_FACTOR`` of the resolution (ACDC's crop: 15 % of the slice; the
aorta CT's: 62 %, whose coarse stage saw 32 x 32 pixels of 6 mm: validation Dice 0.35; README)."""
CASCADE_MARGIN_MM = 10.0
CASCADE_JITTER_MM = 10.0
"""The cascade's crop margin and training jitter (mm): the ACDC bench's (README)."""
SLABS = 5
"""Blocks one labelled volume is cut into (``prepare.slabs``): 3 to train, 1 to validate, 1 to test."""
SLAB_GAP_MM = 10.0
"""Thickness left out between two blocks: neighbouring slices 1-2 mm apart are near copies of each other."""
MIN_SLAB_SLICES = 8
"""The fewest slices a block may hold."""
COARSE_SHARE = 0.3
"""The coarse stage's share of the time limit (``cascade.coarse_share``)."""
COARSE_FACTOR = 4
"""The coarse stage's whole slice: the median slice at the target spacing / this, per side."""
CPU_GFLOPS = 43.0
"""Training throughput of one CPU core in forward GFLOP x 3 per second, measured: the previous ACDC preset
(4.01 forward GFLOP per 192^2 whole slice, ``model_summary``) trained an epoch of 1,187 slices in ~5.5 minutes
on one core (issue 19): 1187 x 3 x 4.01 / 330 s = 43.3; the cascade preset's fine net (0.85 GFLOP per 96^2
crop) 17.5 images/s in ``train_on_batch`` on one Xeon core: 44.6."""
BF16_SPEEDUP = 1.7
"""How much faster training runs where the preset's ``auto`` resolves to bfloat16 without XLA (a CPU with
native bfloat16, ``segkit.hardware``), measured: on a Xeon with AMX the ACDC cascade's fine epoch took 81-83 s
against 141-142 s in float32 + XLA, side by side (README, "bfloat16 on a CPU with AMX"), the 128^2 net's step
2.2x; on an AMD EPYC Zen 4 (AVX512-BF16) the fine net's step 1.7x, the 128^2 net's 1.3x
(``segkit.hardware``)."""
TRAIN_FLOP_FACTOR = 3.0
"""Training FLOP per image / forward FLOP (forward, then the backward pass ~ twice the forward)."""
BATCH = 4
MIN_STEPS = 250
MAX_STEPS = 25_000
DEFAULT_PRESET = "left-atrial"

Entry = tuple[str, Any, str]
"""One planned key: dotted key, value, the reason (the YAML comment)."""


@dataclass(frozen=True)
class PlanOptions:
    """What ``segkit plan`` plans for besides the data.

    Attributes:
        name: the config's ``name`` (also ``data/<name>`` and ``runs/<name>``).
        budget_minutes: wall-clock training minutes (``train.time_limit``).
        cores: CPU cores training will use.
        preset_like: the preset whose tuned recipe (and class names, when the class count matches) is kept.
    """

    name: str
    budget_minutes: float = 20.0
    cores: int = 1
    preset_like: str = DEFAULT_PRESET


@dataclass(frozen=True)
class Geometry:
    """The in-plane geometry planned: slicing axis, target spacing (rows, columns; mm), training window (a
    cascade: the fine stage's crop), levels, the foreground box share of the field of view, the reason, and a
    cascade's coarse whole-slice size."""

    axis: int
    spacing: tuple[float, float]
    size: tuple[int, int]
    num_layers: int
    fg_share: float
    reason: str
    coarse_size: tuple[int, int] | None = None  # a cascade: the coarse stage's whole-slice size
    crop_share: float = 0.0  # the cascade's square crop (box + margins) would cover this of the median slice


def _display(values: list[float], axis: int) -> tuple[float, float]:
    """(rows, columns) of a display slice along canonical ``axis`` (``segkit.prepare.slicing`` convention)."""
    inplane = [values[a] for a in range(3) if a != axis]
    return inplane[1], inplane[0]


def slicing_axis(summary: dict[str, Any]) -> tuple[int, str]:
    """The slicing axis and why (see the module docstring)."""
    sp = summary["spacing"]["median"]
    if max(sp) / min(sp) > ANISOTROPY:
        axis = max(range(3), key=lambda a: (sp[a], a))
        return axis, (f"anisotropic {sp[0]:g} x {sp[1]:g} x {sp[2]:g} mm: slices across the coarsest axis "
                      "(nnU-Net's 2D rule)")
    return 2, f"near-isotropic {sp[0]:g} x {sp[1]:g} x {sp[2]:g} mm: axial, as the presets"


def levels_for(side: float) -> int:
    """Resolution levels whose bottleneck keeps the shorter side ``side`` at 4-8 pixels (2..8 levels)."""
    return max(2, min(8, 1 + int(math.floor(math.log2(max(side, 8) / 4)))))


def round_to(n: float, div: int) -> int:
    """``n`` rounded to the nearest multiple of ``div`` (at least ``div``)."""
    return max(div, int(round(n / div)) * div)


def plan_geometry(fp: dict[str, Any]) -> Geometry:
    """Axis, target spacing, training window and levels of a fingerprint (``{"summary", "cases"}``)."""
    summary, cases = fp["summary"], fp["cases"]
    axis, _ = slicing_axis(summary)
    spacing = _display(summary["spacing"]["median"], axis)
    fov = [_display([n * s for n, s in zip(c["shape"], c["spacing"], strict=True)], axis) for c in cases]
    box = [_display(c["foreground"]["bbox_mm"], axis) for c in cases]
    shares = sorted((b[0] * b[1]) / (f[0] * f[1]) for b, f in zip(box, fov, strict=True))
    share = shares[len(shares) // 2]
    slice_px = [sorted(f[i] / spacing[i] for f in fov)[len(fov) // 2] for i in (0, 1)]
    box_px = [max(b[i] for b in box) * (1 + 2 * MARGIN) / spacing[i] for i in (0, 1)]
    median_side = sorted(max(b) for b in box)[len(box) // 2]
    crop_mm = median_side + 2 * (CASCADE_MARGIN_MM + CASCADE_JITTER_MM / 2)
    crops = sorted(min(1.0, crop_mm * crop_mm / (f[0] * f[1])) for f in fov)
    crop_share = crops[len(crops) // 2]
    if share < CASCADE_BELOW and crop_share < CASCADE_CROP_BELOW:  # a cascade: a square crop around the box
        side = crop_mm / min(spacing)
        num_layers = levels_for(side)
        div = 2 ** (num_layers - 1)
        size = (round_to(side, div),) * 2
        coarse = tuple(round_to(p / COARSE_FACTOR, div) for p in slice_px)
        margin = CASCADE_MARGIN_MM + CASCADE_JITTER_MM / 2
        why = (f"a cascade's crop at the median case's scale: its foreground box's longer side + "
               f"{margin:g} mm a side ({crop_mm:.0f} mm, {side:.0f} px at {min(spacing):g} mm), square, "
               f"because the box is {share:.0%} of the field of view (< {CASCADE_BELOW:.0%}); rounded to "
               f"multiples of {div} ({num_layers - 1} poolings)")
        return Geometry(axis, (round(spacing[0], 4), round(spacing[1], 4)), size, num_layers, share, why,
                        (int(coarse[0]), int(coarse[1])), crop_share)
    raw = [min(b, s) for b, s in zip(box_px, slice_px, strict=True)]
    why = (f"the largest foreground box + {MARGIN:.0%} a side ({box_px[0]:.0f} x {box_px[1]:.0f} px), "
           f"at most the median slice ({slice_px[0]:.0f} x {slice_px[1]:.0f} px)")
    num_layers = levels_for(min(raw))
    div = 2 ** (num_layers - 1)
    size = (round_to(raw[0], div), round_to(raw[1], div))
    return Geometry(axis, (round(spacing[0], 4), round(spacing[1], 4)), size, num_layers, share,
                    f"{why}; rounded to multiples of {div} ({num_layers - 1} poolings)", None, crop_share)


def train_slices(fp: dict[str, Any], axis: int, train_share: float, empty_fraction: float) -> float:
    """Slices one epoch trains on: per case the slices across the foreground box plus ``empty_fraction`` of
    the others, times the share of cases in the train split."""
    per_case = [c["foreground"]["bbox_vox"][axis] + empty_fraction * (c["shape"][axis]
                - c["foreground"]["bbox_vox"][axis]) for c in fp["cases"]]
    return max(1.0, sum(per_case) * train_share)


def budget_plan(gflops: float, slices: float, options: PlanOptions, share: float = 1.0,
                bf16: bool = False) -> list[Entry]:
    """``train.batch_size``, ``train.epochs`` and ``train.time_limit`` for the budget (module docstring);
    ``share``: the part of it the planned model trains in (a cascade's fine stage: ``1 - COARSE_SHARE``);
    ``bf16``: the config trains in bfloat16 on this CPU (``BF16_SPEEDUP`` times the throughput)."""
    seconds = options.budget_minutes * 60 * share
    speed = CPU_GFLOPS * (BF16_SPEEDUP if bf16 else 1.0)
    images = seconds * speed * options.cores / (TRAIN_FLOP_FACTOR * gflops)
    batch, why = BATCH, "the presets' measured choice: more optimizer steps per CPU-minute than 16 (README)"
    if images / BATCH < MIN_STEPS:
        batch, why = 2, f"batch 4 would leave {images / BATCH:.0f} steps (< {MIN_STEPS}) in the budget"
    elif images / BATCH > MAX_STEPS:
        batch, why = 8, f"batch 4 would take {images / BATCH:.0f} steps (> {MAX_STEPS}): the budget affords 8"
    epochs = max(1, int(images // slices))
    part = f" x {share:g} (the fine stage)" if share != 1 else ""
    half = f" x {BF16_SPEEDUP:g} (bfloat16 on this CPU, segkit.plan.rules.BF16_SPEEDUP)" if bf16 else ""
    how = (f"{options.budget_minutes:g} min{part} x {options.cores} core(s) x {CPU_GFLOPS:g} GFLOP/s a core "
           f"(measured, segkit.plan.rules.CPU_GFLOPS){half} / ({TRAIN_FLOP_FACTOR:g} x {gflops:.2f} GFLOP an "
           "image) "
           f"= {images:.0f} images; / {slices:.0f} training slices an epoch")
    return [
        ("train.epochs", epochs, f"{how}; the poly schedule anneals to zero here"),
        ("train.batch_size", batch, why),
        ("train.time_limit", options.budget_minutes, "the budget (--budget): the run stops at the last epoch "
                                                     "boundary that fits"),
    ]


def class_entries(fp: dict[str, Any], preset: Config) -> list[Entry]:
    """``classes`` and ``prepare.label_map``: one class per foreground label value found, named after the
    preset's classes when their number matches, else ``class_<value>``."""
    values = [int(v) for v in fp["summary"]["classes"] if v != "0"]
    named = len(values) == len(preset.classes)
    classes = []
    for i, v in enumerate(values, start=1):
        spec = preset.classes[i - 1] if named else None
        color = list(spec.color) if spec else _color(i)
        classes.append({"id": i, "name": spec.name if spec else f"class_{v}", "color": color})
    why = "one class per label value found" + (f", named as in the preset {preset.name}" if named else "")
    out: list[Entry] = [("classes", classes, why)]
    if values != list(range(1, len(values) + 1)):
        out.append(("prepare.label_map", {v: i for i, v in enumerate(values, start=1)},
                    "label values with gaps -> class ids 1..N"))
    return out


def _color(i: int) -> list[int]:
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 0.95)
    return [max(1, int(r * 255)), int(g * 255), int(b * 255)]


PATIENT_PART = r"^(.+)_[^_]+$"
"""The guessed ``<patient>_<part>`` case id (``patient001_frame01``): the patient is all before the last
``_``."""
MAX_PARTS = 4
"""Cases a guessed patient may hold at most: more (``siteA_001`` .. ``siteA_010``: 10 'parts' of 'siteA')
reads as a site or a cohort, not one patient's scans."""


def _groups(ids: list[str], pattern: str) -> dict[str, int] | None:
    """Cases per patient named by ``pattern``'s group (``re.search``, as ``segkit.prepare.split``), or
    ``None`` when some id does not match."""
    counts: dict[str, int] = {}
    for i in ids:
        m = re.search(pattern, i)
        if m is None or not m.group(1):
            return None
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def patient_grouping(ids: list[str], preset: Config, splits: int) -> tuple[str | None, str]:
    """The ``group_by`` for ``ids`` and why, or ``(None, "")``: the preset's own ``group_by`` when it
    matches every id, else the ``<patient>_<part>`` guess (``PATIENT_PART``) when it matches every id, some
    patient has several parts and none more than ``MAX_PARTS``; either only with at least ``splits``
    patients (each split with a positive ratio needs one)."""
    own = preset.prepare.split.group_by
    if own and (groups := _groups(ids, own)) is not None and len(groups) >= splits:
        return own, f"split by patient with the preset's group_by: {len(ids)} cases of {len(groups)} patients"
    groups = _groups(ids, PATIENT_PART)
    if groups is None or len(groups) in (1, len(ids)) or len(groups) < splits \
            or max(groups.values()) > MAX_PARTS:
        return None, ""
    return PATIENT_PART, (f"{len(ids)} cases of {len(groups)} patients (<patient>_<part>, at most "
                          f"{MAX_PARTS} parts each): split by patient")


def slab_count(fp: dict[str, Any], axis: int) -> int | None:
    """The blocks (``prepare.slabs``) a dataset of one labelled volume is cut into along canonical ``axis``:
    ``SLABS``, or fewer (at least 3) so that each holds ``MIN_SLAB_SLICES`` slices after the gaps; ``None``
    for two cases or more.

    Raises:
        DataError: the volume is too short for 3 blocks (one line naming it; hint: add a labelled case).
    """
    if len(fp["cases"]) != 1:
        return None
    case = fp["cases"][0]
    n, step = int(case["shape"][axis]), float(case["spacing"][axis])
    gap = Slab.gap_slices(SLAB_GAP_MM, step)
    for count in range(SLABS, 2, -1):
        if n - (count - 1) * gap >= count * MIN_SLAB_SLICES:
            return count
    raise DataError(
        f"1 labelled case ({case['case_id']}) of {n} slices along axis {axis}: too few to cut into 3 "
        f"blocks of {MIN_SLAB_SLICES} slices {SLAB_GAP_MM:g} mm apart (train, validate, test)",
        path=Path(case["image"]), hint="add a labelled case")


def slab_entries(count: int, case_id: str) -> list[Entry]:
    """``prepare.slabs`` and ``prepare.slab_gap_mm`` for one labelled volume (``slab_count``)."""
    return [("prepare.slabs", count, f"one labelled volume ({case_id}): cut into {count} blocks of slices, "
             f"each a case {case_id}_slab<k>, so that validation and test slices are not trained on; the "
             "scores are within one patient, not patient-wise"),
            ("prepare.slab_gap_mm", SLAB_GAP_MM,
             "left out between two blocks: neighbouring slices are near copies")]


def split_entry(fp: dict[str, Any], preset: Config, slabs: int | None = None) -> Entry:
    """``prepare.split``: the preset's ratios (3 cases or more; 2 cases: one to train, one to validate; one
    volume cut into ``slabs`` blocks: one to validate, one to test, the others to train), grouped by patient
    where ``patient_grouping`` finds patients."""
    ids = [c["case_id"] for c in fp["cases"]]
    split: dict[str, Any] = {k: getattr(preset.prepare.split, k) for k in ("train", "valid", "test")}
    why = f"the ratios of the preset {preset.name}"
    if slabs is not None:
        return ("prepare.split", {"train": slabs - 2, "valid": 1, "test": 1},
                f"the {slabs} blocks of the one volume: 1 to validate, 1 to test, {slabs - 2} to train, "
                "drawn by seed")
    if len(ids) == 2:
        split, why = {"train": 1, "valid": 1, "test": 0}, "2 cases: one to train, one to validate"
    group_by, grouped = patient_grouping(ids, preset, sum(1 for v in split.values() if v > 0))
    if group_by is not None:
        split["group_by"] = group_by
        why += f"; {grouped}"
    return ("prepare.split", split, why)


def normalisation_entries(fp: dict[str, Any]) -> list[Entry]:
    """``modality`` and its intensity normalisation into the 8-bit slices ``prepare`` writes."""
    summary = fp["summary"]
    eight_bit = ("slices are stored as 8-bit PNG and read as uint8 / 255: a z-score is an affine map of the "
                 "clipped range, which the first convolution absorbs, so clip-and-scale to 0..255 stands "
                 "for it at 1/256 of the range a step")
    if summary["modality"] == "ct":
        fg = summary["foreground_intensity"]
        window = [float(math.floor(fg["p00_5"])), float(math.ceil(fg["p99_5"]))]
        return [
            ("modality", "ct", summary["modality_reason"]),
            ("prepare.ct_window", window, "CT: clip to the foreground's pooled 0.5 / 99.5 percentiles "
             f"(nnU-Net), then scale; {eight_bit}"),
        ]
    return [
        ("modality", "mr", summary["modality_reason"]),
        ("prepare.mr_percentiles", [0.5, 99.5], f"MR: per-volume 0.5 / 99.5 percentile scaling; {eight_bit}"),
    ]


_KEPT = {
    "model": ("name", "base_filters", "base_kernels", "max_filters", "dropout_rate", "norm", "block"),
    "loss": ("name",),
    "train": ("learning_rate", "clipvalue", "schedule", "warmup_epochs", "model_checkpoint", "early_stopping",
              "epoch_change_infer", "jit_compile"),
    "augment": ("hflip", "rotate", "scale", "shift", "brightness", "contrast"),
    "prepare": ("empty_slices", "empty_fraction"),
}
"""The keys of the tuned recipe copied from the preset (``PlanOptions.preset_like``)."""


def preset_entries(preset: Config) -> list[Entry]:
    """The preset's tuned choices (``_KEPT``), each with the reason: the preset's measured recipe."""
    data = preset.to_yaml_data()
    out: list[Entry] = []
    for section, keys in _KEPT.items():
        for key in keys:
            value = data[section][key]
            if isinstance(value, dict):
                default = type(getattr(getattr(preset, section), key))().model_dump(mode="json")
                value = {k: v for k, v in value.items() if v != default.get(k)} or {"p": value.get("p", 0)}
            out.append((f"{section}.{key}", value, f"kept from the preset {preset.name} (its tuned recipe)"))
    return out


def plan_entries(fp: dict[str, Any], geo: Geometry, gflops: float, options: PlanOptions) -> list[Entry]:
    """Every planned key of the config, with its reason (the module docstring)."""
    preset = load_config(options.preset_like)
    _, axis_why = slicing_axis(fp["summary"])
    slabs = slab_count(fp, geo.axis)
    split = split_entry(fp, preset, slabs)
    share = split[1]["train"] / sum(split[1][k] for k in ("train", "valid", "test"))
    slices = train_slices(fp, geo.axis, share, preset.prepare.empty_fraction)
    sp = geo.spacing
    nsd = float(math.ceil(max(sp)))
    pools = geo.num_layers - 1
    coarse = max(fp["summary"]["spacing"]["median"]) / min(sp) > ANISOTROPY
    entries: list[Entry] = [
        ("name", options.name, "the dataset folder's name"),
        ("seed", preset.seed, f"as the preset {preset.name}"),
        *normalisation_entries(fp),
        *class_entries(fp, preset),
        ("prepare.axis", geo.axis, axis_why),
        *(_cascade_entries(geo) if geo.coarse_size is not None else [
            ("prepare.spacing", list(sp), "the median in-plane spacing (nnU-Net's target spacing), mm"),
            ("prepare.size", list(geo.size), "2D-slice sources only (volumes are resampled to the spacing)"),
        ]),
        split,
        *(slab_entries(slabs, fp["cases"][0]["case_id"]) if slabs is not None else []),
        ("data.dir", f"data/{options.name}", "where segkit prepare writes the slices"),
        ("data.image_size", list(geo.size), geo.reason),
        ("data.channels", 1, "gray slices"),
        ("data.patches", False, "the cascade's crops are resized to prepare.size") if geo.coarse_size else
        ("data.patches", True, "train on windows of the slices at their prepared size (millimetres kept, no "
         "stretch); inference slides the same window"),
        ("data.context_slices", 0, "2D: 2.5D context was measured on LA and dropped (+0.003 Dice, 50 % "
         "dearer epochs; README)" + ("; neighbouring slices are far apart across this coarse axis" if coarse
                                     else "")),
        ("model.num_layers", geo.num_layers, f"{pools} poolings leave a {geo.size[0] >> pools} x "
         f"{geo.size[1] >> pools} px bottleneck (4-8)"),
        *preset_entries(preset),
        *budget_plan(gflops, slices, options, 1 - COARSE_SHARE if geo.coarse_size is not None else 1.0,
                     _trains_bf16_here(preset)),
        ("train.run_dir", f"runs/{options.name}", "the run folder"),
        ("evaluate.nsd_tolerance_mm", nsd, "one target pixel, rounded up to whole mm"),
    ]
    return entries


def _trains_bf16_here(preset: Config) -> bool:
    """Whether the planned config (the preset's precision and XLA keys) trains in bfloat16 on this machine's
    CPU (``auto`` on a CPU with native bfloat16)."""
    return resolve_policy(preset.train.precision, preset.train.jit_compile, gpus=0)[0] == "mixed_bfloat16"


def _cascade_entries(geo: Geometry) -> list[Entry]:
    """A cascade's keys (``geo.coarse_size`` set): crops resized to ``prepare.size``, coarse whole slices."""
    assert geo.coarse_size is not None
    return [
        ("prepare.size", list(geo.size), "the fine stage's crop, resized to this (a cascade takes no "
         "prepare.spacing)"),
        ("cascade.enabled", True, f"the foreground box is {geo.fg_share:.0%} of the field of view (< "
         f"{CASCADE_BELOW:.0%}): a coarse model finds it, the fine model segments a crop around it; on ACDC "
         "(80 patients, 2,400 CPU-s) the cascade was measured against the whole slice (README)"),
        ("cascade.coarse_size", list(geo.coarse_size),
         f"the median slice at the target spacing / {COARSE_FACTOR}"),
        ("cascade.margin_mm", CASCADE_MARGIN_MM, "the ACDC bench's crop margin"),
        ("cascade.jitter_mm", CASCADE_JITTER_MM, "the ACDC bench's training jitter"),
        ("cascade.coarse_share", COARSE_SHARE, "on ACDC-80 a fifth of 2,400 CPU-s gave the coarse stage 3 "
         "epochs with its validation Dice still rising fast (0.59, 0.73, 0.77): a bit more than that"),
    ]


def cascade_comment(geo: Geometry) -> str:
    """The cascade decision, with the reason (a header line of the config)."""
    if geo.coarse_size is not None:
        return (f"cascade: true -- the foreground box covers {geo.fg_share:.0%} of the field of view "
                f"(< {CASCADE_BELOW:.0%}): coarse {geo.coarse_size[0]}x{geo.coarse_size[1]} whole slices, "
                f"fine {geo.size[0]}x{geo.size[1]} crops")
    if geo.fg_share < CASCADE_BELOW:
        return (f"cascade: false -- the foreground box covers {geo.fg_share:.0%} of the field of view, but "
                f"its crop with margins would cover {geo.crop_share:.0%} of the slice "
                f"(>= {CASCADE_CROP_BELOW:.0%}): little background to crop away for a coarse stage's cost")
    return (f"cascade: false -- the foreground box covers {geo.fg_share:.0%} of the field of view "
            f"(>= {CASCADE_BELOW:.0%}: one model sees enough of it)")
