"""``segkit config show|check|presets``: the resolved config, validation, and the packaged presets.

CONFIG is a YAML file, a run folder or a preset name (``left-atrial``, ``seed/whole-heart``), resolved by
``segkit.config.resolve_config_path``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from segkit.cli.common import handle_errors, load

app = typer.Typer(no_args_is_help=True)

_CONFIG_HELP = "YAML config file, run folder, or preset name (e.g. left-atrial; see `segkit config presets`)."


@app.command("show")
@handle_errors
def show(
    config: Path = typer.Argument(..., help=_CONFIG_HELP),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a key, e.g. --set train.epochs=2."
    ),
) -> None:
    """Print CONFIG resolved: every section and default, after --set overrides, with the comments of
    CONFIG's file kept at their keys (so `segkit config show PRESET > my.yaml` keeps the preset's notes)."""
    from segkit.config import resolve_config_path

    cfg = load(config, sets)
    path = resolve_config_path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # load() read it a moment ago; without it, no comments
        text = ""
    typer.echo(cfg.to_commented_yaml(text), nl=False)


@app.command("check")
@handle_errors
def check(
    config: list[Path] = typer.Argument(..., help="YAML config files, run folders or preset names."),
) -> None:
    """Validate one or more configs; exit 2 on the first invalid one."""
    for path in config:
        load(path)
        typer.echo(f"ok: {path}")


@app.command("presets")
@handle_errors
def presets(
    paths: bool = typer.Option(False, "--paths", help="Print each preset's file instead of its description."),
) -> None:
    """List the presets shipped with segkit (any CONFIG argument takes
    these names), each with the first line of its comment."""
    from segkit.config import preset_description, preset_names, preset_path

    names = preset_names()
    width = max((len(n) for n in names), default=0)
    for name in names:
        typer.echo(f"{name:<{width}}  {preset_path(name) if paths else preset_description(name)}".rstrip())
