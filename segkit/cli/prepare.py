"""`segkit prepare` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def prepare(ctx: typer.Context) -> None:
    """Not available yet."""
    typer.echo("error: 'prepare' is not available yet in this version of segkit", err=True)
    raise typer.Exit(2)
