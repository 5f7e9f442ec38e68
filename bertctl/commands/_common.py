"""Options and helpers every command shares (kept tiny: the rest lives in recipes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import typer

from bertctl.console import console
from bertctl.errors import BertctlError

ARGS = typer.Argument(None, help="[RECIPE] then key.sub=value overrides. RECIPE is a YAML path or a built-in name.",
                      show_default=False)
OUT = typer.Option(None, "--out", "-o", help="Run folder to write (default runs/<command>-<time>).")
RESUME = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint.")
QUIET = typer.Option(False, "--quiet", "-q", help="Hide progress (stderr); results, warnings and errors still show.")


def split_args(args: Optional[List[str]]) -> tuple[Optional[str], list[str]]:
    """The first argument without '=' is the recipe; the rest must be key=value overrides."""
    recipe, overrides = None, []
    for arg in args or []:
        if "=" in arg:
            overrides.append(arg)
            continue
        if _KEY.fullmatch(arg) and not Path(arg).exists():  # `train.max_steps 50`: not a recipe called that
            raise BertctlError(f"'{arg}' looks like an override without '='",
                               fix=f"write overrides as key=value, e.g. {arg}=VALUE")
        if recipe is None and not overrides:
            recipe = arg
        else:
            raise BertctlError(f"unexpected argument '{arg}'", fix="give one RECIPE first, then key=value overrides")
    return recipe, overrides


# a dotted recipe key (train.max_steps): a recipe name has no dot, a recipe file ends in .yaml
_KEY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(?<!\.yaml)(?<!\.yml)")


def wrote(run_path: Path) -> None:
    """The last result line (stdout), e.g. "Wrote runs/finetune-20250101-120000"."""
    console().print(f"[bold green]Wrote[/] {run_path}")


def holds_files(out: Optional[Path]) -> bool:
    """--out exists and already holds files (a user's commented recipe.yaml, their log.txt).
    Checks that can refuse the command then run before the run folder is opened, so that a
    refusal leaves every one of those files byte for byte; a new or empty folder is opened
    first and, refused, kept marked failed (run.json, log.txt: files that were not there)."""
    return out is not None and Path(out).is_dir() and any(p.is_file() for p in Path(out).rglob("*"))


def check_model(name_or_path: str | None, allow_pickle: bool = False) -> None:
    """The recipe's model checked (exists, is a model, safe weights), as training would."""
    from bertctl.models import recipe_model, resolve

    resolve(recipe_model(name_or_path)[0], allow_pickle)


def quiet_progress(quiet: bool) -> None:
    """--quiet: no progress on stderr for the rest of this command (see bertctl.console)."""
    from bertctl.console import set_quiet

    set_quiet(quiet)
