"""Shared pieces of the CLI: the error boundary, consoles, progress bars and config loading.

Every command is wrapped in ``handle_errors``: a ``SegkitError`` becomes one line
``error: <path>: <message> (hint: <fix>)`` on stderr and exit code 2; any other exception becomes one line and
exit code 1 (with the traceback only when ``--debug`` / ``SEGKIT_DEBUG=1``).
"""

from __future__ import annotations

import functools
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from segkit.errors import SegkitError

F = TypeVar("F", bound=Callable[..., Any])

out = Console()  # results (stdout)
err = Console(stderr=True)  # diagnostics, progress, errors (stderr)

_state = {"debug": False}


def set_debug(debug: bool) -> None:
    _state["debug"] = debug or os.environ.get("SEGKIT_DEBUG", "") not in ("", "0")
    logging.basicConfig(
        level=logging.DEBUG if _state["debug"] else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )


def handle_errors(func: F) -> F:
    """Turn library errors into one stderr line and an exit code (2 user error, 1 bug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except SegkitError as e:
            if _state["debug"]:
                traceback.print_exc()
            typer.echo(f"error: {e.one_line()}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001 - the one boundary for unexpected errors
            if _state["debug"]:
                traceback.print_exc()
            msg = " ".join(str(e).split()) or type(e).__name__
            typer.echo(f"error: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def load(config: Path, sets: list[str] | None = None):  # noqa: ANN201 - returns segkit.config.Config
    """Load and validate a config with ``--set`` overrides."""
    from segkit.config import load_config

    return load_config(config, overrides=tuple(sets or ()))


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    columns = [
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=False, disable=not err.is_terminal and total is None) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
