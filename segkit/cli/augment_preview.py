"""`segkit augment-preview` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def augment_preview(ctx: typer.Context) -> None:
    """Not available yet."""
    typer.echo("error: 'augment-preview' is not available yet in this version of segkit", err=True)
    raise typer.Exit(2)
