"""``segkit models [NAME]``: the registered architectures, their size and cost, and their options."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from segkit.cli.common import err, handle_errors, load, out, quiet_tensorflow


@handle_errors
def models(
    name: str = typer.Argument(None, help="A model name: print its description and options."),
    size: int = typer.Option(128, "--size", min=8, help="Image size (pixels, square) for params and GFLOP."),
    config: Path = typer.Option(None, "--config",
                                help="Take the model options from this config (default: defaults)."),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a key, e.g. --set model.base_filters=32."
    ),
    plot: Path = typer.Option(
        None, "--plot", metavar="FILE",
        help="With NAME: draw the architecture to FILE (.png/.svg; needs pydot and Graphviz) and write the "
        "layer summary to FILE's name + _summary.txt.",
    ),
) -> None:
    """List every registered model with its parameters and forward GFLOP per image (1 channel, 4 classes
    unless --config says otherwise); with NAME, its description and the model.* options it reads.

    Names are printed as configs spell them (model.name: attention_unet); 'unet' is an alias of flexunet.
    """

    from segkit.config import validate_config
    from segkit.errors import ConfigError

    if config is not None:
        cfg = load(config, sets)
    else:
        from segkit.config import apply_override

        raw: dict = {"classes": [{"id": i, "name": f"class{i}", "color": [80 * i, 0, 0]} for i in (1, 2, 3)],
                     "data": {"channels": 1}}
        for item in sets or []:
            apply_override(raw, item)
        cfg = validate_config(raw)
    quiet_tensorflow()
    from segkit.models import MODELS, build_model, model_summary

    if plot is not None and not name:
        raise ConfigError("--plot draws one model", path="--plot",
                          hint=f"name it, e.g. segkit models flexunet --plot {plot}")
    names = [MODELS.canonical(name)] if name else MODELS.names()
    table = Table(title=f"models at {size}x{size}, {cfg.data.channels} channel(s), {cfg.num_classes} classes")
    for col in ("name", "description", "params", "GFLOP/image"):
        table.add_column(col, justify="right" if col in ("params", "GFLOP/image") else "left")
    built = None
    with err.status("") as status:  # building all takes ~20 s on a CPU: say which one is being built
        for i, n in enumerate(names, 1):
            status.update(f"building {config_name(n)} ({i}/{len(names)}) at {size}x{size}")
            c = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": n}),
                                       "data": cfg.data.model_copy(update={"image_size": (size, size)})})
            described = _describe(MODELS.get(n).build)
            try:
                built = build_model(c)
                s = model_summary(built)
            except ConfigError as e:  # one model that cannot take these options does not hide the others
                table.add_row(config_name(n), f"{described} (not built: {e.message})", "-", "-")
                continue
            table.add_row(config_name(n), described, f"{s['params']:,}", f"{s['gflops_per_image']:.2f}")
    out.print(table)
    if name:
        _print_options(name, cfg)
        if plot is not None and built is not None:
            _write_inspection(built, plot)


def _print_options(name: str, cfg: Any) -> None:
    """Model ``name``'s description (its module's docstring) and the ``model.*`` options it reads, with their
    values in ``cfg``."""
    from pydantic import BaseModel

    from segkit.config import CONV_KEYS, LEVEL_KEYS, ModelConfig
    from segkit.models import MODELS

    keys = MODELS.get(name).keys
    doc = sys.modules[MODELS.get(name).build.__module__].__doc__ or ""
    # unwrap the source's line breaks; rich wraps to the terminal
    for paragraph in doc.strip().split("\n\n"):
        out.print(_plain(paragraph), markup=False, highlight=False)
    out.print("options (model.*, with their values here):", highlight=False)
    chosen = cfg.model.model_copy(update={"name": config_name(MODELS.canonical(name))})
    for field, info in ModelConfig.model_fields.items():
        if field in (*LEVEL_KEYS, *CONV_KEYS) and field not in keys.honours:
            continue  # a common knob this model does not read
        value = getattr(chosen, field)
        if isinstance(value, BaseModel):  # a model's own section: only the chosen model's
            if field != keys.section:
                continue
            for sub, sub_info in type(value).model_fields.items():
                desc = f"  {sub_info.description}" if sub_info.description else ""
                out.print(
                    f"  {field}.{sub}: {getattr(value, sub)!r}{desc}", markup=False, highlight=False
                )
            continue
        desc = f"  {info.description}" if info.description else ""
        out.print(f"  {field}: {value!r}{desc}", markup=False, highlight=False)


def config_name(name: str) -> str:
    """A registered model name as configs spell it (``attention-unet`` -> ``attention_unet``)."""
    return name.replace("-", "_")


def _plain(text: str) -> str:
    """A docstring paragraph on one line, without reStructuredText's double backticks."""
    return " ".join(text.split()).replace("``", "")


def _describe(builder) -> str:  # noqa: ANN001 - a model builder
    """The first paragraph of the model module's docstring, whole (rich wraps it in the table)."""
    doc = (sys.modules[builder.__module__].__doc__ or builder.__doc__ or "").strip()
    return _plain(doc.split("\n\n")[0]).rstrip(".") if doc else ""


def _write_inspection(model: Any, plot: Path) -> None:
    """Write ``model``'s layer summary next to ``plot`` and draw it to ``plot`` with Keras ``plot_model``;
    without pydot or Graphviz's ``dot``, one line says why no picture was drawn."""
    import keras

    from segkit.io.atomic import atomic_path, write_text

    lines: list[str] = []
    width = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "150"  # Keras draws the table with rich, as wide as the terminal: not cut here
    try:
        model.summary(print_fn=lambda line, *_a, **_k: lines.append(line), line_length=150)
    finally:
        if width is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = width
    summary = plot.with_name(f"{plot.stem}_summary.txt")
    write_text(summary, "\n".join(lines) + "\n")
    out.print(f"layer summary: {summary}", highlight=False)
    needs = (("the Python package pydot", importlib.util.find_spec("pydot") is not None),
             ("Graphviz's dot program", shutil.which("dot") is not None))
    missing = [what for what, ok in needs if not ok]
    if missing:
        err.print(f"{plot}: not drawn: Keras's plot_model needs {' and '.join(missing)} (hint: "
                  "pip install pydot; apt install graphviz / brew install graphviz)",
                  highlight=False, soft_wrap=True)
        return
    with atomic_path(plot) as tmp:
        keras.utils.plot_model(model, to_file=str(tmp), show_shapes=True, show_layer_names=True, dpi=72)
    out.print(f"architecture: {plot}", highlight=False)
