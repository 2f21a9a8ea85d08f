"""SHA-256 of files and folders: the one implementation behind dataset fingerprints (``dataset.json``), the
training backup's checksum and the export bundle's file list."""

from __future__ import annotations

import hashlib
from pathlib import Path

from segkit.errors import DataError


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_size`` byte chunks (memory stays flat for large volumes); of a
    folder (a DICOM series), one sha256 over the relative names and contents of its files.

    Raises:
        DataError: the file cannot be read.
    """
    if Path(path).is_dir():
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(path).as_posix().encode() + b"\0" + sha256_file(p).encode() + b"\n")
        return h.hexdigest()
    h = hashlib.sha256()
    try:
        with Path(path).open("rb") as f:
            while block := f.read(chunk_size):
                h.update(block)
    except OSError as e:
        raise DataError(
            f"cannot read file: {e.strerror or e}", path=path, hint="check that it exists and is readable"
        ) from e
    return h.hexdigest()


def sha256_files(paths: list[Path]) -> str:
    """One sha256 over several files (name and content of each, in the given order): for 2D-slice cases."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()
