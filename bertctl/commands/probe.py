"""`bertctl probe ...` (placeholder until its issue lands)."""

import typer

app = typer.Typer(help="Probe what a model knows (not built yet).")
