"""The ``segkit`` command: one Typer app, one module per command, one error boundary.

    segkit prepare SOURCE SRC --out DIR     volumes / slices -> patient-split 2D dataset
    segkit plan DATA [--budget MINUTES]     dataset fingerprint + a self-configured, commented config
    segkit train CONFIG                     train a model
    segkit cv CONFIG                        train and score every cross-validation fold
    segkit evaluate CONFIG                  per case x class metrics
    segkit infer CONFIG --input PATH        label volumes / masks from a trained model (or a bundle)
    segkit export RUN_DIR --format onnx     a deployment bundle (ONNX, LiteRT, SavedModel)
    segkit augment-preview CONFIG           a grid of augmented samples
    segkit config show CONFIG               the resolved config with every default
    segkit config presets                   the presets any CONFIG argument can name
    segkit models [NAME]                    registered architectures: params, GFLOP, options
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner off the terminal

import typer  # noqa: E402

from segkit import __version__  # noqa: E402
from segkit.cli import (  # noqa: E402
    augment_preview,
    config_cmd,
    cv,
    evaluate,
    export_cmd,
    infer,
    models_cmd,
    plan,
    prepare,
    train,
)
from segkit.cli.common import set_debug  # noqa: E402

app = typer.Typer(
    name="segkit",
    help="3D CT/MRI volumes -> trained 2D segmentation models -> label volumes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # Click's plain help: rewrapped paragraphs, full option names at 80 columns
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"segkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """segkit: 3D CT/MRI volumes -> trained 2D segmentation models -> label volumes."""
    set_debug(debug)


app.command("prepare", no_args_is_help=True)(prepare.prepare)
app.command("plan", no_args_is_help=True)(plan.plan)
app.command("train", no_args_is_help=True)(train.train)
app.command("cv", no_args_is_help=True)(cv.cv)
app.command("evaluate", no_args_is_help=True)(evaluate.evaluate)
app.command("infer", no_args_is_help=True)(infer.infer)
app.command("export", no_args_is_help=True)(export_cmd.export)
app.command("augment-preview", no_args_is_help=True)(augment_preview.augment_preview)
app.command("models")(models_cmd.models)
app.add_typer(config_cmd.app, name="config", help="Inspect configs; list the presets.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
