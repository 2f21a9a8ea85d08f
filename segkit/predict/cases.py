"""Prepared volume cases read back from their source files, for scoring in the original geometry.

``segkit evaluate`` and the post-processing choice (``segkit.postprocess.choice``) score the volume cases of a
split whose source image and label files still exist: every slice is predicted (``predict_volume`` with the
case's recorded ``Geometry``) and compared with the ORIGINAL label volume mapped to class ids exactly as
``prepare`` mapped it (the dataset's recorded ``prepare`` section, ``labels_config``).

Example:
    >>> cases = dataset_cases(cfg, "valid")
    >>> case = read_source_case("c1", cases.with_sources["c1"], cases.label_cfg)
    >>> case.reference.shape == case.image.data.shape
    True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from segkit.config import Config
    from segkit.io.volumes import Volume
    from segkit.prepare.record import CaseRecord, Geometry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetCases:
    """The cases of one split of a prepared dataset, as ``dataset.json`` records them.

    Attributes:
        manifest: the loaded ``dataset.json`` (``None`` without one: the seed datasets).
        records: every case of ``dataset.json`` by id (empty without one).
        split: the cases of the split (``segkit.data.pipeline.cases_of_split``).
        with_sources: the split's volume cases whose source image and label files both exist.
        label_cfg: the config with the dataset's recorded ``prepare`` section (``labels_config``) when some
            case has its sources, else the config itself.
    """

    manifest: Mapping[str, Any] | None
    records: dict[str, CaseRecord]
    split: dict[str, CaseRecord]
    with_sources: dict[str, CaseRecord]
    label_cfg: Config


@dataclass(frozen=True)
class SourceCase:
    """One volume case read from its source files: the image and its reference in class ids."""

    case_id: str
    image: Volume
    reference: npt.NDArray[np.uint8]
    geometry: Geometry


def sources_exist(record: CaseRecord) -> bool:
    """True for a volume case record whose source image and label files both exist."""
    files = record.volume_files()
    return files is not None and files[0].is_file() and files[1].is_file()


def labels_config(cfg: Config, manifest: Mapping[str, Any], path: Path | None = None) -> Config:
    """``cfg`` with the dataset's recorded ``prepare`` section, so labels map exactly as ``prepare`` mapped
    them.

    Args:
        cfg: the config.
        manifest: the loaded ``dataset.json``.
        path: its file, named in errors.

    Raises:
        DataError: dataset.json's ``prepare`` section is missing or not a valid prepare section.
    """
    from segkit.prepare.record import Preprocessing

    return cfg.model_copy(update={"prepare": Preprocessing.from_json(manifest, path).prepare})


def dataset_cases(cfg: Config, split: str) -> DatasetCases:
    """The case records of ``split`` in ``<data.dir>/dataset.json``, and which of them still have their
    sources.

    Raises:
        DataError: an unreadable ``dataset.json``, a bad ``prepare`` section in it, or (under ``data.fold``)
            a bad ``splits.json``.
    """
    from segkit.data.pipeline import cases_of_split
    from segkit.prepare.manifest import MANIFEST_FILE, load_manifest
    from segkit.prepare.record import case_records

    data_dir = Path(cfg.data.dir)
    manifest_path = data_dir / MANIFEST_FILE
    manifest = load_manifest(data_dir) if manifest_path.is_file() else None
    records = case_records(manifest, manifest_path) if manifest is not None else {}
    in_split = cases_of_split(cfg, records, split) if records else {}
    with_sources = {c: r for c, r in in_split.items() if sources_exist(r)}
    label_cfg = labels_config(cfg, manifest, manifest_path) if with_sources and manifest is not None else cfg
    return DatasetCases(manifest, records, in_split, with_sources, label_cfg)


def read_source_case(case_id: str, record: CaseRecord, label_cfg: Config) -> SourceCase | None:
    """The source image and reference (class ids, mapped with ``label_cfg.prepare``) of one volume case.

    Returns:
        The case, or None (with a warning) when it has no source files or they no longer have the recorded
        shape (a ``prepare.slabs`` block: or are too short for its block).

    Raises:
        DataError: an unreadable source file or unexpected label values.
    """
    from segkit.io.volumes import TooFewSlicesError, load_volume
    from segkit.prepare.slicing import map_labels

    refs = record.volume_refs()
    if refs is None:  # not a volume case with both source files (the caller checked sources_exist)
        return None
    shape = record.geometry.shape
    try:
        image = load_volume(refs[0])  # the series or phase --series picked, if any (its block, if a slab)
        label = load_volume(refs[1])
    except TooFewSlicesError as e:  # the file is shorter than when its blocks were cut
        logger.warning("case %s: source files changed (%s): using the written slices", case_id, e.one_line())
        return None
    if image.data.shape != shape or label.data.shape != shape:
        logger.warning(
            "case %s: source files changed (shapes %s / %s, dataset.json says %s): using the written slices",
            case_id, image.data.shape, label.data.shape, shape,
        )
        return None
    reference = map_labels(label.data, label_cfg, label.path)
    return SourceCase(case_id, image, reference, record.geometry)
