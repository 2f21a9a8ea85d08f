"""``segkit augment-preview CONFIG``: a PNG grid of augmented training samples and the active transforms."""

from __future__ import annotations

from pathlib import Path

import typer

from segkit.cli.common import handle_errors, load, out


@handle_errors
def augment_preview(
    config: Path = typer.Argument(..., help="YAML config file or preset name (segkit config presets)."),
    n: int = typer.Option(16, "--n", min=1, max=256, help="Number of augmented samples."),
    out_file: Path = typer.Option(Path("augment_preview.png"), "--out", help="PNG file to write."),
    split: str = typer.Option("train", "--split", help="Split folder under data.dir to draw samples from."),
    sets: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a key, e.g. --set augment.rotate.p=1."
    ),
) -> None:
    """Write a grid of N augmented samples (image | mask overlay) and list the active transforms."""
    from segkit.data.augment import describe_augmentation
    from segkit.preview import write_preview

    cfg = load(config, sets)
    path = write_preview(cfg, out_file, n=n, split=split)
    lines = describe_augmentation(cfg)
    out.print(f"[bold]augmentation[/bold] ({len(lines)} active transform{'s' if len(lines) != 1 else ''})")
    for line in lines or ["none (augment.enabled is false or every p is 0)"]:
        out.print(f"  {line}", markup=False)
    out.print(f"preview: {path}", markup=False)
