"""Model files written so that a kill at any moment leaves a complete one.

- ``AtomicCheckpoint``: saves ``model.keras`` (best by a monitor) or ``last.keras`` (every epoch) through a
  temporary ``.keras`` file in the same folder and ``os.replace``, so a kill at any moment leaves either the
  previous file or the new one, never a torn one. With ``also`` (``model_checkpoint: last``: ``model.keras``
  is the last epoch too) the second name is a hard link to the same file, not a second copy.
- ``AtomicBackup`` / ``restore_backup``: weights and optimizer state after every epoch for ``--resume``,
  written so that a kill at any moment leaves a complete backup whose epoch is known (``backup/state.json``
  names the weights file and its SHA-256; it is replaced only after that file is complete).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import keras

from segkit.errors import ConfigError
from segkit.io.atomic import atomic_path, write_json
from segkit.io.hashing import sha256_file
from segkit.train.callbacks.plateau import Mode, is_improvement, monitor_mode

log = logging.getLogger(__name__)


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Save ``model`` as ``.keras`` at ``path`` via a temporary ``.keras`` file beside it and
    ``os.replace``."""
    with atomic_path(Path(path), suffix=".keras") as tmp:
        model.save(tmp, overwrite=True)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the model atomically after an epoch: always (``monitor=None``) or when ``monitor`` improves.

    Args:
        path: destination ``.keras`` file.
        monitor: log key to watch (e.g. ``val_fg_dice``); ``None`` saves every epoch.
        mode: ``min``/``max``; inferred from the name by ``monitor_mode`` when ``None``.
        initial_best: best value of earlier epochs (resume), so a worse epoch does not replace the file.
        also: a second name for the same file (``link_atomic``), replaced whenever ``path`` is.
        target: the model to save, when it is not the one trained (deep supervision trains a model around it);
            None saves the model ``fit`` trains.
    """

    def __init__(
        self,
        path: Path,
        monitor: str | None = None,
        mode: Mode | None = None,
        initial_best: float | None = None,
        also: Path | None = None,
        target: keras.Model | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.target = target
        self.also = Path(also) if also is not None else None
        self.monitor = monitor
        self.mode: Mode = mode or (monitor_mode(monitor) if monitor else "max")
        self.best = initial_best
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return  # never write diverged weights
        if self.monitor is None:
            save_model_atomic(self.target if self.target is not None else self.model, self.path)
            if self.also is not None:
                link_atomic(self.path, self.also)
            return
        current = logs.get(self.monitor)
        if current is None:
            return
        if is_improvement(float(current), self.best, self.mode):
            log.debug("epoch %d: %s improved %s -> %.5f", epoch + 1, self.monitor, self.best, float(current))
            self.best, self.best_epoch = float(current), epoch
            save_model_atomic(self.target if self.target is not None else self.model, self.path)
            if self.also is not None:
                link_atomic(self.path, self.also)


def link_atomic(src: Path, dst: Path) -> None:
    """Make ``dst`` name the file ``src`` names: a hard link made beside ``dst`` and renamed onto it (a kill
    leaves the old ``dst`` or the new one); a copy where the file system has no hard links."""
    with atomic_path(Path(dst), suffix=".keras") as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (some network and FAT file systems)
            shutil.copyfile(src, tmp)


# === backup for --resume ===

BACKUP_STATE = "state.json"
_BACKUP_HINT = "resume from last.keras by deleting the backup/ folder, or --overwrite to start again"


class AtomicBackup(keras.callbacks.Callback):
    """Back up weights and optimizer state after every epoch; remove the backup when training ends normally.

    Order of writes (each atomic): ``epoch_NNNN.weights.h5``, then ``state.json`` naming it, then the older
    weights files are deleted. A kill at any point leaves ``state.json`` pointing at a complete file, so
    ``restore_backup`` always knows which epoch it restores (Keras' ``BackupAndRestore`` could fall back to an
    older copy while the run believed it resumed the newer epoch). An epoch with a non-finite loss is not
    backed up.
    """

    def __init__(self, backup_dir: Path) -> None:
        super().__init__()
        self.backup_dir = Path(backup_dir)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        name = f"epoch_{epoch + 1:04d}.weights.h5"
        path = self.backup_dir / name
        with atomic_path(path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        write_json(self.backup_dir / BACKUP_STATE,
                   {"epoch": epoch + 1, "weights": name, "sha256": sha256_file(path)})
        for old in self.backup_dir.glob("epoch_*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        shutil.rmtree(self.backup_dir, ignore_errors=True)  # a finished run resumes from last.keras


def backup_epoch(backup_dir: Path) -> int | None:
    """Completed epochs held by the backup in ``backup_dir`` (``None`` when there is none)."""
    state = _read_state(Path(backup_dir))
    return None if state is None else int(state["epoch"])


def _read_state(backup_dir: Path) -> dict[str, Any] | None:
    for name in (BACKUP_STATE, "training_metadata.json"):  # the second: backups of segkit <= 0.1 (Keras')
        p = backup_dir / name
        if p.is_file():
            try:
                state = json.loads(p.read_text(encoding="utf-8"))
                epoch = int(state["epoch"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ConfigError(
                    f"the resume backup is unreadable ({type(e).__name__}: {e})",
                    path=p,
                    hint=_BACKUP_HINT,
                ) from e
            legacy = "latest.weights.h5"
            weights = state.get("weights", legacy) if name == BACKUP_STATE else legacy
            return {"epoch": epoch, "weights": backup_dir / weights, "sha256": state.get("sha256")}
    return None


def restore_backup(model: keras.Model, backup_dir: Path) -> int | None:
    """Load the backed-up weights and optimizer state into ``model``; return the epochs they completed.

    Returns:
        completed epochs, or ``None`` when ``backup_dir`` holds no backup.

    Raises:
        ConfigError: the backup's weights file is missing, does not match its recorded SHA-256, or cannot be
            loaded (one line naming the file; the run is left as it is).
    """
    state = _read_state(Path(backup_dir))
    if state is None:
        return None
    weights: Path = state["weights"]
    hint = _BACKUP_HINT
    if not weights.is_file():
        raise ConfigError(f"the resume backup of epoch {state['epoch']} is missing", path=weights, hint=hint)
    if state["sha256"] is not None and sha256_file(weights) != state["sha256"]:
        raise ConfigError(
            f"the resume backup of epoch {state['epoch']} does not match its recorded checksum",
            path=weights,
            hint=hint,
        )
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(weights)
    except Exception as e:  # noqa: BLE001 - h5py/keras raise many types for damaged files
        raise ConfigError(f"cannot load the resume backup ({type(e).__name__}: {e})", path=weights,
                          hint=hint) from e
    return int(state["epoch"])
