"""`bertctl recipes list|show|copy|validate`."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from bertctl.console import console

app = typer.Typer(help="List, show, copy and validate recipes.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """The built-in recipes and how to launch each."""
    from rich.table import Table

    from bertctl.recipe import builtin_recipes, launch_line

    table = Table(title="Built-in recipes")
    table.add_column("name", style="bold")
    table.add_column("launch")
    for name, path in builtin_recipes().items():
        table.add_row(name, launch_line(path))
    console().print(table)


@app.command("show")
def show(name: str = typer.Argument(..., help="Built-in name or YAML path.")) -> None:
    """Print a recipe's YAML."""
    from bertctl.recipe import find_recipe, recipe_text

    typer.echo(recipe_text(find_recipe(name)), nl=False)


@app.command("copy")
def copy(name: str = typer.Argument(...), dest: Path = typer.Argument(Path("."))) -> None:
    """Copy a built-in recipe to edit it."""
    from bertctl.recipe import copy_recipe

    console().print(f"[bold green]Wrote[/] {copy_recipe(name, dest)}")


@app.command("validate")
def validate(paths: List[Path] = typer.Argument(..., help="Recipe files to check.")) -> None:
    """Check recipe files against their command's schema; all problems at once."""
    from bertctl.recipe import find_recipe, validate_file

    for path in paths:
        validate_file(find_recipe(str(path)))
        console().print(f"[green]ok[/] {path}")
