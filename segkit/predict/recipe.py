"""A run's preprocessing recipe: what ``prepare`` did to the model's training data, to repeat on new volumes.

Example:
    >>> spec = preprocessing_spec(cfg)     # <run_dir>/preprocessing.json, else data.dir's dataset.json
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from segkit.errors import DataError

if TYPE_CHECKING:
    from segkit.config import Config
    from segkit.prepare.record import Preprocessing

logger = logging.getLogger(__name__)


def preprocessing_spec(cfg: Config) -> Preprocessing:
    """The recipe ``prepare`` used for the model's training data: the copy the run keeps
    (``<train.run_dir>/preprocessing.json``, written by ``train``; it still holds when the dataset was
    prepared again since), else the dataset's ``dataset.json``, else the config itself.

    Raises:
        DataError: the file read is unreadable, lacks ``prepare`` / ``modality`` or has an invalid ``prepare``
            section (one line naming the file).
    """
    import json

    from segkit.io.run_folder import PREPROCESSING_FILE
    from segkit.prepare.manifest import MANIFEST_FILE, load_manifest
    from segkit.prepare.record import Preprocessing

    kept = Path(cfg.train.run_dir) / PREPROCESSING_FILE
    if kept.is_file():
        hint = "delete it to use data.dir's dataset.json, or train the run again"
        try:
            obj = json.loads(kept.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the run's preprocessing recipe: {e}", path=kept, hint=hint) from e
        spec = Preprocessing.from_json(obj, path=kept, hint=hint)
        logger.info("preprocessing from %s", kept)
        return spec
    manifest_path = Path(cfg.data.dir) / MANIFEST_FILE
    if manifest_path.is_file():
        spec = Preprocessing.from_json(load_manifest(Path(cfg.data.dir)), path=manifest_path)
        logger.info("preprocessing from %s", manifest_path)
        return spec
    return Preprocessing.from_config(cfg)
