"""The command-line layer: thin Typer commands over the library (see ``segkit.cli.app``)."""
