"""``run_plan``: a dataset folder -> ``fingerprint.json`` and a commented ``config.yaml`` (``segkit plan``).

Steps: find the layout ``segkit prepare`` reads (``segkit.plan.layout``), fingerprint every labelled case
(``segkit.plan.fingerprint``), plan the geometry, size the model (``segkit.models.model_summary``'s GFLOP per
image at the planned window), plan every key (``segkit.plan.rules``), validate the config
(``segkit.config.validate_config``, the same validator as every config) and only then write both files,
each atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segkit.config import Config, validate_config
from segkit.errors import DataError
from segkit.io.atomic import write_json, write_text
from segkit.plan.fingerprint import fingerprint_cases
from segkit.plan.layout import Layout, detect_layout, find_cases
from segkit.plan.render import render_config
from segkit.plan.rules import (
    Geometry,
    PlanOptions,
    cascade_comment,
    plan_entries,
    plan_geometry,
    slab_count,
)
from segkit.progress import NULL_PROGRESS, Progress

FINGERPRINT = "fingerprint.json"
CONFIG = "config.yaml"


@dataclass
class PlanResult:
    """What ``run_plan`` wrote and decided.

    Attributes:
        fingerprint_path, config_path: the two files written.
        config: the planned, validated config.
        geometry: the planned axis, spacing, window and levels.
        gflops: the model's forward GFLOP per image at the window.
        prepare_command: the ``segkit prepare`` command line for the planned config.
        problems: files ``segkit prepare``'s pairing left out (one line each).
    """

    fingerprint_path: Path
    config_path: Path
    config: Config
    geometry: Geometry
    gflops: float
    prepare_command: str
    problems: list[str] = field(default_factory=list)


def dataset_name(data: Path) -> str:
    """A config name from the dataset folder's name (letters, digits, ``-``, ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", Path(data).resolve().name).strip("-") or "dataset"


def model_gflops(raw: dict[str, Any]) -> float:
    """Forward GFLOP per image of the model a raw config describes (``segkit.models.model_summary``)."""
    from segkit.models import build_model, model_summary

    return float(model_summary(build_model(validate_config(raw)))["gflops_per_image"])


def _raw(entries: list[tuple[str, Any, str]]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value, _ in entries:
        head, _, tail = key.partition(".")
        if tail:
            raw.setdefault(head, {})[tail] = value
        else:
            raw[head] = value
    return raw


def _slabs(entries: list[tuple[str, Any, str]]) -> int | None:
    return next((int(v) for k, v, _ in entries if k == "prepare.slabs"), None)


def run_plan(data: Path, out: Path, options: PlanOptions, layout: Layout | None = None,
             progress: Progress = NULL_PROGRESS) -> PlanResult:
    """Fingerprint ``data`` and plan a config for it into ``out`` (see the module docstring).

    Args:
        data: the raw dataset folder (a layout ``segkit prepare`` reads).
        out: the folder receiving ``fingerprint.json`` and ``config.yaml`` (created).
        options: name, budget, cores and the preset whose tuned recipe is kept.
        layout: the source and globs; ``None``: ``detect_layout``.
        progress: one unit per case fingerprinted.

    Raises:
        DataError: no known layout, no labelled case (``segkit.plan.layout.find_cases``), one too short to cut
            into blocks (``segkit.plan.rules.slab_count``), an unreadable case.
        ConfigError: the planned config does not validate (a bug in the rules), or an unknown preset.
    """
    layout = layout or detect_layout(data)
    found = find_cases(data, layout)
    fp = fingerprint_cases(found.cases, progress, root=Path(data))
    geo = plan_geometry(fp)
    try:  # one labelled volume too short for blocks: refused here, naming it below DATA
        slab_count(fp, geo.axis)
    except DataError as e:
        raise DataError(e.message, path=Path(data) / fp["cases"][0]["image"], hint=e.hint) from None
    sizing = plan_entries(fp, geo, 1.0, options)
    gflops = model_gflops(_raw(sizing))
    entries = plan_entries(fp, geo, gflops, options)
    config_path = Path(out) / CONFIG
    command = layout.prepare_command(Path(data), config_path)
    header = [
        f"segkit plan {data} --budget {options.budget_minutes:g}: planned from fingerprint.json "
        f"({fp['summary']['cases']} case{'s' if fp['summary']['cases'] != 1 else ''}); every choice has its "
        "reason beside it.",
        f"Prepare: {command}",
        f"Train:   segkit train {config_path}",
        cascade_comment(geo),
        *([f"One labelled volume: cut into {n} blocks of slices (prepare.slabs); validation and test "
           "scores are within this one patient, not patient-wise."] if (n := _slabs(entries)) else []),
    ]
    text = render_config(entries, header)
    cfg = validate_config(yaml.safe_load(text), source=config_path)
    fp["plan"] = {"source": layout.source, "image_glob": layout.options.image_glob,
                  "label_glob": layout.options.label_glob, "problems": found.problems,
                  "gflops_per_image": round(gflops, 4), "foreground_share_of_slice": round(geo.fg_share, 4),
                  "cascade": geo.coarse_size is not None,
                  "crop_share_of_slice": round(geo.crop_share, 4), "slabs": _slabs(entries)}
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / FINGERPRINT, fp)
    write_text(config_path, text)
    return PlanResult(Path(out) / FINGERPRINT, config_path, cfg, geo, gflops, command, found.problems)
