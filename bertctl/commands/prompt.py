"""`bertctl prompt`: few-shot prompting of causal LMs (accuracy per K, or free generation)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from bertctl.commands._common import ARGS, OUT, QUIET, check_model, holds_files, quiet_progress, split_args, wrote
from bertctl.console import console, progress_console


def prompt(
    args: Optional[List[str]] = ARGS,
    shots: Optional[str] = typer.Option(None, "--shots", "-k", help="Demonstrations per prompt; a comma list "
                                                                    "sweeps K, e.g. 0,1,3,8."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="sentiment, nli, topic, translate, or a name "
                                                                  "for a file task (data.eval=...)."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="Causal LM: smollm2, a folder, a .gguf "
                                                                          "file, a pretrain run, a hub id. Repeat "
                                                                          "to compare models on one plot."),
    show_prompt: bool = typer.Option(False, "--show-prompt", help="Print the exact prompt of the first example "
                                                                  "at every K."),
    out: Optional[Path] = OUT,
    quiet: bool = QUIET,
) -> None:
    """Prompt a causal LM with a task description, K demonstrations and the query.

    Labelled rows: accuracy and macro-F1 per K from answer-option log-probabilities.

    Rows without labels: the continuation is generated and streamed.

    Default: SmolLM2-135M (embedded, offline) on the World sentiment set.
    """
    # Idle OpenMP threads sleep instead of spinning: on a busy machine with few cores, spinning
    # threads made each forward up to 7x slower here. Only effective before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    quiet_progress(quiet)
    from bertctl.prompting.config import PromptRecipe, parse_shots
    from bertctl.prompting.run import run_prompt
    from bertctl.recipe import load, option_overrides
    from bertctl.report import print_table

    recipe_arg, overrides = split_args(args)
    # command-line options win over the recipe (they come last); model paths resolve against the cwd
    overrides += option_overrides({"shots": parse_shots(shots) if shots is not None else None, "task": task,
                                   "models": list(model) if model else None})
    recipe, path = load(PromptRecipe, recipe_arg, overrides, default="prompt")
    if holds_files(out):  # --out holds the user's files: a model that is none is refused before it is opened
        for name in recipe.models:
            check_model(name, recipe.model.allow_pickle)
    # the work as it happens (task, models loading, bars) on stderr; prompts asked for and
    # generations (results) on stdout
    result = run_prompt(recipe, out=out, show_prompt=show_prompt, console=progress_console(), stdout=console())
    for table in result["tables"]:
        print_table(*table)
    wrote(Path(result["run"]))
