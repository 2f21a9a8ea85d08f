"""Shared pieces of the CLI: the error boundary, consoles, progress bars and config loading.

Every command is wrapped in ``handle_errors``: a ``SegkitError`` becomes one line
``error: <path>: <message> (hint: <fix>)`` on stderr and exit code 2; any other exception becomes one line and
exit code 1 (with the traceback only when ``--debug`` / ``SEGKIT_DEBUG=1``).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from segkit.errors import SegkitError, write_fault

F = TypeVar("F", bound=Callable[..., Any])

out = Console()  # results (stdout)
err = Console(stderr=True)  # diagnostics, progress, errors (stderr)

_state: dict[str, Any] = {"debug": False, "interrupt_hint": None}


def set_interrupt_hint(hint: str | None) -> None:
    """What to tell the user after Ctrl-C (e.g. how to resume); cleared by every command's error boundary."""
    _state["interrupt_hint"] = hint


def set_debug(debug: bool) -> None:
    _state["debug"] = debug or os.environ.get("SEGKIT_DEBUG", "") not in ("", "0")
    # segkit's own messages at INFO; other libraries' (highdicom, pydicom, absl, ...) only from WARNING up
    # unless --debug
    logging.basicConfig(
        level=logging.DEBUG if _state["debug"] else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )
    logging.getLogger("segkit").setLevel(logging.DEBUG if _state["debug"] else logging.INFO)


# import name -> pip name where they differ (the one-line error of a module a runtime-only install lacks)
_PIP_NAMES = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "nrrd": "pynrrd",
              "ai_edge_litert": "ai-edge-litert", "jpeg_ls": "pyjpegls",
              "pylibjpeg": "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg", "PIL": "pillow",
              "google": "protobuf", "imageio_ffmpeg": "imageio-ffmpeg", "skimage": "scikit-image"}


def handle_errors(func: F) -> F:
    """Turn library errors into one stderr line and an exit code (2 user error, 1 bug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _state["interrupt_hint"] = None
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
            hint = _state["interrupt_hint"]
            typer.echo("error: interrupted" + (f" (hint: {hint})" if hint else ""), err=True)
            raise typer.Exit(130) from None
        except ModuleNotFoundError as e:  # a runtime-only install (requirements-runtime.txt) lacks a reader
            module = (e.name or "segkit").split(".")[0]
            if module == "segkit":  # a module of segkit itself missing: a packaging bug, reported as one
                raise
            if _state["debug"]:
                traceback.print_exc()
            typer.echo(f"error: this needs the Python module '{module}', which is not installed (hint: pip "
                       f"install {_PIP_NAMES.get(module, module)}, or the full install of segkit)", err=True)
            raise typer.Exit(2) from None
        except Exception as e:  # noqa: BLE001 - the one boundary for unexpected errors
            if _state["debug"]:
                traceback.print_exc()
            fault = write_fault(e)  # disk full, read-only, no permission: the user's to fix, not a bug
            if fault is not None:
                typer.echo(f"error: {fault.one_line()}", err=True)
                raise typer.Exit(2) from None
            msg = " ".join(str(e).split()) or type(e).__name__
            typer.echo(f"error: internal error: {type(e).__name__}: {msg} "
                       "(rerun with --debug for the traceback)", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# TensorFlow start-up lines that say nothing the user can act on. The CUDA ones are dropped only on machines
# without an NVIDIA driver, where "GPU will not be used" is the expected state; with a driver they stay
# visible.
_CHATTER = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "TF-TRT Warning",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
)
_NO_GPU_CHATTER = ("Could not find cuda drivers", "failed call to cuInit", "GPU will not be used")


def nvidia_driver_present() -> bool:
    """True where an NVIDIA kernel driver is loaded (a CUDA failure there is worth showing)."""
    return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def tensorflow_chatter(text: str, gpu_driver: bool) -> list[str]:
    """The lines of TensorFlow's start-up output worth showing (see ``_CHATTER``)."""
    noise = _CHATTER + (() if gpu_driver else _NO_GPU_CHATTER)
    return [line for line in text.splitlines() if line.strip() and not any(n in line for n in noise)]


def quiet_tensorflow() -> None:
    """Import TensorFlow and initialise its devices with its C++ start-up lines held back.

    Those lines (``cuInit ... UNKNOWN ERROR (303)`` on every machine without a GPU, the absl and oneDNN
    banners) are written to file descriptor 2 before Python's logging exists, so they are captured at the
    descriptor and replayed minus the known-harmless ones. ``--debug`` shows everything; a real GPU problem
    stays visible.
    """
    if _state["debug"] or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    try:
        captured = tempfile.TemporaryFile()
    except OSError:  # no writable temporary folder: the lines cannot be held back, but the command still runs
        import tensorflow  # noqa: F401
        return
    saved = os.dup(2)
    failed = True
    with captured:
        try:
            os.dup2(captured.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()  # CUDA initialisation prints here
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            lines = text.splitlines() if failed else tensorflow_chatter(text, nvidia_driver_present())
            if lines:
                sys.stderr.write("\n".join(lines) + "\n")
                sys.stderr.flush()


def load(config: Path, sets: list[str] | None = None):  # noqa: ANN201 - returns segkit.config.Config
    """Load and validate a config with ``--set`` overrides. CONFIG is a YAML file, a run folder (its
    ``config.yaml``, with ``train.run_dir`` pointing at the folder, wherever it now is) or a preset name
    (``segkit.config.resolve_config_path``)."""
    from segkit.config import load_config, resolve_config_path

    config = Path(config)
    path = resolve_config_path(config)
    cfg = load_config(path, overrides=tuple(sets or ()))
    if path == config / "config.yaml":  # a run folder
        return cfg.model_copy(update={"train": cfg.train.model_copy(update={"run_dir": config})})
    return cfg


class RichProgress:
    """The CLI's ``segkit.progress.Progress``: a rich bar on stderr for every ``start``, named by its
    description.

    A ``start`` closes the bar before it (rich draws one live display at a time), so ``run_inference`` shows
    one bar per volume. Use it as a context manager (the last bar is closed on leaving), or call ``close``.
    The bar is disabled when stderr is not a terminal and the total is unknown.

    Example:
        >>> with RichProgress() as bar:
        ...     evaluate_model(cfg, progress=bar)
    """

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def start(self, total: int | None, description: str = "") -> None:
        self.close()
        columns = [
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        bar = Progress(*columns, console=err, transient=False, disable=not err.is_terminal and total is None)
        bar.start()
        self._bar, self._task = bar, bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        """Stop the current bar (if any); a later ``start`` opens a new one."""
        bar, self._bar, self._task = self._bar, None, None
        if bar is not None:
            bar.stop()

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
