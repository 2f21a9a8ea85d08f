"""`segkit infer` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def infer(ctx: typer.Context) -> None:
    """Not available yet."""
    typer.echo("error: 'infer' is not available yet in this version of segkit", err=True)
    raise typer.Exit(2)
