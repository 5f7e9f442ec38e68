"""`bertctl probe similarity|layers|checkpoints|align`: what does a model know, and where?

Each subcommand reads the probe recipe (default: the built-in `probe`), takes the model
from `--model` (a bertctl run folder, a local checkpoint, a hub id or 'minilm'), writes a
run folder with JSON and PNG results and prints a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bertctl.commands._common import ARGS, OUT, QUIET, quiet_progress, split_args, wrote
from bertctl.console import say, warn

app = typer.Typer(help="Probe what a model knows: word senses, layers, checkpoints, cross-lingual alignment.",
                  no_args_is_help=True)

MODEL = typer.Option(None, "--model", "-m",
                     help="bertctl run folder, local model folder, hub id, or 'minilm' (default: the recipe's, "
                          "else the newest runs/pretrain-*, else minilm).")


def _recipe(subcommand: str, args: Optional[List[str]], model: Optional[str], quiet: bool = False):
    from bertctl.probe.start import check_subcommand
    from bertctl.probe.config import ProbeRecipe
    from bertctl.recipe import load, option_overrides

    quiet_progress(quiet)
    source, overrides = split_args(args)
    recipe, path = load(ProbeRecipe, source, [*overrides, *option_overrides({"model.name_or_path": model or None})],
                        "probe")
    check_subcommand(recipe, subcommand, path)
    return recipe


def _show(done: dict) -> None:
    """A probe's tables, then its warnings, then where it wrote."""
    from bertctl.report import print_table

    for table in done["tables"]:
        print_table(*table)
    for warning in done.get("warnings", []):
        warn(warning)
    wrote(done["run"])


@app.command("similarity")
def similarity(args: Optional[List[str]] = ARGS, model: Optional[str] = MODEL, out: Optional[Path] = OUT,
               quiet: bool = QUIET) -> None:
    """Cosine similarity of one word's contextual vectors across sentences (senses)."""
    from bertctl.probe.similarity import main

    _show(main(_recipe("similarity", args, model, quiet), out))


@app.command("layers")
def layers(args: Optional[List[str]] = ARGS, model: Optional[str] = MODEL, out: Optional[Path] = OUT,
           quiet: bool = QUIET) -> None:
    """Linear probe accuracy per layer, next to a majority and a random-init control."""
    from bertctl.probe.layers import main

    _show(main(_recipe("layers", args, model, quiet), out))


@app.command("checkpoints")
def checkpoints(args: Optional[List[str]] = ARGS, model: Optional[str] = MODEL, out: Optional[Path] = OUT,
                quiet: bool = QUIET) -> None:
    """Probes over the checkpoints of a `bertctl pretrain` run, against the training step."""
    from bertctl.probe.learning_curves import main

    _show(main(_recipe("checkpoints", args, model, quiet), out, say=say))


@app.command("align")
def align(args: Optional[List[str]] = ARGS, model: Optional[str] = MODEL, out: Optional[Path] = OUT,
          quiet: bool = QUIET) -> None:
    """Translate words between two languages by nearest neighbour, with and without the mean shift."""
    from bertctl.probe.align import main

    _show(main(_recipe("align", args, model, quiet), out))
