"""``segkit config show CONFIG``: print the resolved config with every default."""

from __future__ import annotations

from pathlib import Path

import typer

from segkit.cli.common import handle_errors, load

app = typer.Typer(no_args_is_help=True)


@app.command("show")
@handle_errors
def show(
    config: Path = typer.Argument(..., help="YAML config file."),
    sets: list[str] = typer.Option(None, "--set", help="Override a key, e.g. --set train.epochs=2."),
) -> None:
    """Print CONFIG resolved: every section and default, after --set overrides."""
    cfg = load(config, sets)
    typer.echo(cfg.to_yaml(), nl=False)


@app.command("check")
@handle_errors
def check(config: list[Path] = typer.Argument(..., help="YAML config files.")) -> None:
    """Validate one or more configs; exit 2 on the first invalid one."""
    for path in config:
        load(path)
        typer.echo(f"ok: {path}")
