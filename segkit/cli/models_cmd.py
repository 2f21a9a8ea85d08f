"""``segkit models [NAME]``: the registered architectures, their size and cost, and their options."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from segkit.cli.common import handle_errors, load, out, quiet_tensorflow


@handle_errors
def models(
    name: str = typer.Argument(None, help="A model name: print its description and options."),
    size: int = typer.Option(128, "--size", min=8, help="Image size (pixels, square) for params and GFLOP."),
    config: Path = typer.Option(None, "--config",
                                help="Take the model options from this config (default: defaults)."),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a key, e.g. --set model.base_filters=32."
    ),
) -> None:
    """List every registered model with its parameters and forward GFLOP per image (1 channel, 4 classes
    unless --config says otherwise); with NAME, its description and the model.* options it reads."""
    from pydantic import BaseModel

    from segkit.config import CONV_KEYS, LEVEL_KEYS, ModelConfig, validate_config
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

    names = [MODELS.canonical(name)] if name else MODELS.names()
    table = Table(title=f"models at {size}x{size}, {cfg.data.channels} channel(s), {cfg.num_classes} classes")
    for col in ("name", "description", "params", "GFLOP/image"):
        table.add_column(col, justify="right" if col in ("params", "GFLOP/image") else "left")
    for n in names:
        c = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": n}),
                                   "data": cfg.data.model_copy(update={"image_size": (size, size)})})
        try:
            s = model_summary(build_model(c))
        except ConfigError as e:  # one model that cannot take these options does not hide the others
            table.add_row(n, f"{_describe(MODELS.get(n).build)} (not built: {e.message})", "-", "-")
            continue
        table.add_row(n, _describe(MODELS.get(n).build), f"{s['params']:,}", f"{s['gflops_per_image']:.2f}")
    out.print(table)
    if name:
        keys = MODELS.get(name).keys
        doc = sys.modules[MODELS.get(name).build.__module__].__doc__ or ""
        # unwrap the source's line breaks; rich wraps to the terminal
        for paragraph in doc.strip().split("\n\n"):
            out.print(" ".join(paragraph.split()), markup=False, highlight=False)
        out.print("options (model.*, with their values here):", highlight=False)
        chosen = cfg.model.model_copy(update={"name": names[0]})
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


def _describe(builder) -> str:  # noqa: ANN001 - a model builder
    doc = sys.modules[builder.__module__].__doc__ or builder.__doc__ or ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""
