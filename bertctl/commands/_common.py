"""Options and helpers every command shares (kept tiny: the rest lives in recipes)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bertctl.errors import BertctlError

ARGS = typer.Argument(None, help="[RECIPE] then key.sub=value overrides. RECIPE is a YAML path or a built-in name.",
                      show_default=False)
OUT = typer.Option(None, "--out", "-o", help="Run folder to write (default runs/<command>-<time>).")
RESUME = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")


def split_args(args: Optional[List[str]]) -> tuple[Optional[str], list[str]]:
    """The first argument without '=' is the recipe; the rest must be key=value overrides."""
    recipe, overrides = None, []
    for arg in args or []:
        if "=" in arg:
            overrides.append(arg)
        elif recipe is None and not overrides:
            recipe = arg
        else:
            raise BertctlError(f"unexpected argument '{arg}'", fix="give one RECIPE first, then key=value overrides")
    return recipe, overrides


def console():
    from rich.console import Console

    return Console(highlight=False)


def wrote(run_path: Path) -> None:
    console().print(f"[bold green]Wrote[/] {run_path}")
