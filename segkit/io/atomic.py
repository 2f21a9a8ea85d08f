"""Atomic file writes: write to a temporary file in the same folder, then ``os.replace``.

A reader never sees a half-written file, and a crash leaves the previous version (or nothing) in place.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from segkit.errors import SegkitError, write_fault


@contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Args:
        path: final destination.
        suffix: suffix of the temporary file (defaults to the destination's, so writers that pick a
            format by extension, such as OpenCV or nibabel, still work).
    """
    path = Path(path)
    sfx = suffix if suffix is not None else "".join(path.suffixes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{_HOST}.{os.getpid()}-", suffix=f".tmp{sfx}", dir=path.parent
        )
    except OSError as e:
        raise (write_fault(e, path) or e) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; a plain open() would honour the umask
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as e:
        full = _nearly_full(path.parent)  # before the unlink frees the space again
        tmp_path.unlink(missing_ok=True)
        fault = write_fault(e, path)
        if fault is None and full and isinstance(e, Exception) and not isinstance(e, SegkitError):
            # writers such as h5py, zipfile or OpenCV wrap ENOSPC in their own exception types
            fault = write_fault(OSError(28, "No space left on device"), path)
        if fault is not None:
            raise fault from e
        raise


def _nearly_full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has less than 1 MiB left (a failed write there was a full
    disk)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 2**20


# ".<name>.<host>.<pid>-<8 mkstemp characters>.tmp<suffix>"
_STALE = re.compile(r"\..+\.([A-Za-z0-9]+)\.(\d+)-[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)*")
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files that killed segkit processes left under ``folder`` (recursively); return how
    many.

    Only files named exactly like ``atomic_path``'s temporaries, made on this host by a process that no longer
    runs, are removed: a temporary of a live process (another shard, another machine sharing the folder) and
    any file of the user's stay.
    """
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.rglob(".*.tmp*"):
        m = _STALE.fullmatch(p.name)
        if (
            m
            and m.group(1) == _HOST
            and p.is_file()
            and not p.is_symlink()
            and not pid_alive(int(m.group(2)))
        ):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists (this one included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (NumPy scalars and arrays are converted)."""
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _umask() -> int:
    """The process umask (read without a window in which it is changed, where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
