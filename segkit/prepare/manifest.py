"""``DIR/dataset.json``: the manifest of a prepared dataset, written last as its commit marker.

A dataset folder counts as complete only when ``dataset.json`` exists; it is written atomically after every
slice, ``splits.json`` and the summary. It records the classes, modality, the prepare recipe, and per case the
source files with sha256 checksums and everything needed to put predicted slices back into the original
volume geometry (see the schema in the team brief / README). The per-case entries and the recipe are typed in
``segkit.prepare.record`` (``case_records``, ``Preprocessing.from_json``), which alone reads and writes them.

Example:
    >>> manifest = load_manifest(Path("demo/data"))
    >>> case_records(manifest, Path("demo/data/dataset.json"))["case000"].split
    'train'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segkit import __version__
from segkit.config import Config
from segkit.errors import DataError
from segkit.io.atomic import write_json

MANIFEST_FILE = "dataset.json"
_REQUIRED = ("segkit_version", "name", "source", "modality", "fingerprint", "classes", "prepare", "cases")


def config_fingerprint(cfg: Config, source: str) -> str:
    """sha256 deciding whether an existing output folder may be reused (rerun or another shard).

    Combines ``cfg.prepare_fingerprint()`` (classes, modality, prepare section incl. split) with the seed
    (it decides the split and the empty slices kept) and the source name.
    """
    blob = json.dumps(
        {"prepare": cfg.prepare_fingerprint(), "seed": cfg.seed, "source": source}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def build_manifest(cfg: Config, source: str, cases: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``dataset.json`` dict.

    Args:
        cfg: the resolved config.
        source: source adapter name (``hvsmr``, ``phantom``, ...).
        cases: case_id -> case record (split, source files, sha256, geometry, slices).

    Returns:
        The manifest with cases in sorted order.
    """
    return {
        "segkit_version": __version__,
        "name": cfg.name,
        "source": source,
        "modality": cfg.modality,
        "fingerprint": cfg.prepare_fingerprint(),
        "seed": cfg.seed,
        "classes": [c.model_dump(mode="json", exclude_none=True) for c in cfg.effective_classes],
        "prepare": cfg.prepare.model_dump(mode="json"),
        "cases": {cid: dict(cases[cid]) for cid in sorted(cases)},
    }


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``out_dir/dataset.json`` atomically (call it last: it marks the dataset complete)."""
    path = Path(out_dir) / MANIFEST_FILE
    write_json(path, manifest)
    return path


def load_manifest(out_dir: Path) -> dict[str, Any]:
    """Read ``out_dir/dataset.json``.

    Raises:
        DataError: missing (the dataset is incomplete or was never prepared), unreadable, or missing keys.
    """
    path = Path(out_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError(
            "dataset.json not found: not a complete prepared dataset",
            path=path,
            hint="run segkit prepare (all shards) until it finishes",
        ) from e
    except (OSError, ValueError) as e:
        raise DataError(
            f"cannot read dataset.json: {e}", path=path, hint="run segkit prepare again to rewrite it"
        ) from e
    missing = [k for k in _REQUIRED if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise DataError(
            f"dataset.json lacks key '{missing[0]}'", path=path, hint="run segkit prepare again to rewrite it"
        )
    return manifest
