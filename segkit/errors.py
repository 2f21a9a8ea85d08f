"""User-facing errors: one line that names the file (or key) and the fix.

The library raises these where a problem is found; ``segkit.cli.app`` is the one place that turns them into
``error: <path>: <message> (hint: <fix>)`` on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path


class SegkitError(Exception):
    """An error caused by user input (a file, a config value, an option).

    Args:
        message: what is wrong, in one sentence.
        path: the file, folder or dotted config key concerned.
        hint: how to fix it.
    """

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.hint = hint

    def __reduce__(self):  # noqa: ANN204 - keep path and hint when sent back from a worker process
        return _rebuild, (type(self), self.message, self.path, self.hint)

    def one_line(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        text = f"{where}{self.message}" + (f" (hint: {self.hint})" if self.hint else "")
        return " ".join(text.split())


def _rebuild(cls: type[SegkitError], message: str, path: Path | str | None, hint: str | None) -> SegkitError:
    return cls(message, path=path, hint=hint)


class ConfigError(SegkitError):
    """A config file or override is missing, malformed or invalid."""


class DataError(SegkitError):
    """An image, mask or volume is missing, unreadable or inconsistent."""


class GeometryError(DataError):
    """Image and label disagree in shape, affine or orientation."""


class ModelError(SegkitError):
    """A model file is missing, unreadable or does not match the config."""


class OutputError(SegkitError):
    """An output cannot be written: disk full, read-only file system, no permission."""


# errno -> (what happened, how to fix it) for faults of the place a user writes to
_WRITE_FAULTS = {
    28: ("cannot write: no space left on the device",
         "free space there or choose another output folder; rerun to continue"),
    122: ("cannot write: disk quota exceeded",
          "free space in your quota or choose another output folder; rerun to continue"),
    30: ("cannot write: the file system is read-only", "choose a writable output folder"),
    # reads meet these too (an unreadable input folder), so the message does not say "write"
    13: ("permission denied", "fix the permissions of that path, or choose another folder"),
    1: ("operation not permitted", "fix the permissions of that path, or choose another folder"),
}


def write_fault(e: BaseException, path: Path | str | None = None) -> OutputError | None:
    """An ``OutputError`` naming ``path`` (or the error's own file name) when ``e`` is a disk-full, read-only
    or permission fault; ``None`` for any other error."""
    errno = getattr(e, "errno", None)
    if not isinstance(e, OSError) or errno not in _WRITE_FAULTS:
        return None
    what, hint = _WRITE_FAULTS[errno]
    where = path if path is not None else (e.filename if e.filename is not None else None)
    return OutputError(what, path=where, hint=hint)

