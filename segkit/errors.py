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

    def one_line(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        text = f"{where}{self.message}" + (f" (hint: {self.hint})" if self.hint else "")
        return " ".join(text.split())


class ConfigError(SegkitError):
    """A config file or override is missing, malformed or invalid."""


class DataError(SegkitError):
    """An image, mask or volume is missing, unreadable or inconsistent."""


class GeometryError(DataError):
    """Image and label disagree in shape, affine or orientation."""


class ModelError(SegkitError):
    """A model file is missing, unreadable or does not match the config."""
