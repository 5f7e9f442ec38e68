"""What every `probe` subcommand does around its numbers: pick the model, open the run
folder, save the resolved recipe, write JSON. Kept apart so the probe modules stay plain."""

from __future__ import annotations

from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.recipe import dump
from bertctl.runs import Run


def check_subcommand(recipe, subcommand: str, path: Path) -> None:
    if recipe.subcommand and recipe.subcommand != subcommand:
        raise BertctlError(f"recipe {path.name} is for `bertctl probe {recipe.subcommand}`, not `probe {subcommand}`",
                           fix=f"run `bertctl probe {recipe.subcommand} {path.name}` or pick a {subcommand} recipe")


def model_name(recipe) -> str:
    """The recipe's model, else the newest finished pretrain run, else the embedded MiniLM."""
    from bertctl.models import recipe_model

    return recipe_model(recipe.model.name_or_path)[0]


def start(recipe, subcommand: str, out, precision) -> Run:
    """The run folder; `precision`: the probe's ResolvedPrecision, kept in run.json."""
    run = Run.create(out, f"probe-{subcommand}")
    run.note(task=subcommand, model=model_name(recipe), precision=precision.record())
    run.write_text("recipe.yaml", f"# bertctl probe {subcommand} {run.path / 'recipe.yaml'}\n" + dump(recipe))
    return run


def renderable(text: str) -> bool:
    """Whether matplotlib's default font can draw it (no CJK font is assumed)."""
    return all(ord(c) < 0x2E80 for c in text)
