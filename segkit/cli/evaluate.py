"""`segkit evaluate` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def evaluate(ctx: typer.Context) -> None:
    """Not available yet."""
    typer.echo("error: 'evaluate' is not available yet in this version of segkit", err=True)
    raise typer.Exit(2)
