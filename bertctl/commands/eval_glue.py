"""`bertctl eval-glue [--model M] [RECIPE] [key=value ...]`: fine-tune and evaluate on GLUE."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bertctl.commands._common import ARGS, OUT, RESUME, split_args, wrote
from bertctl.console import console, say

# Keys that must not change when a suite is resumed: its finished tasks used them.
FROZEN = ("model", "method", "lora", "quant", "train", "eval_batch_size", "max_train_rows", "max_eval_rows",
          "max_test_rows", "per_task")


def eval_glue(
    args: Optional[List[str]] = ARGS,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Encoder to evaluate: run folder, HF folder, hub id or 'minilm' (default)."),
    glue_dir: Optional[Path] = typer.Option(None, "--glue-dir", help="GLUE folder as the download script writes it (else $GLUE_DIR, else the hub)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated tasks, e.g. CoLA,SST-2,RTE (default: all nine)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Runs per task; the table shows mean ± std."),
    out: Optional[Path] = OUT,
    resume: bool = RESUME,
) -> None:
    """Fine-tune and evaluate a model on every GLUE task and print one table.

    Writes results (JSON, CSV, Markdown), a bar chart against the human baseline and a leaderboard submission.zip. Built-in recipes: glue (GLUE-sane), glue_cpu, glue_lora.
    """
    from bertctl.glue.score import rich_table
    from bertctl.glue.suite import plan, run_suite
    from bertctl.recipe import dump
    from bertctl.runs import Run

    recipe = _recipe(args, model, glue_dir, tasks, seeds, out, resume)
    planned = plan(recipe)  # no GLUE data -> one error line, and no run folder left behind
    run = Run.create(out, "eval-glue", resume=resume)
    run.write_text("recipe.yaml", "# bertctl eval-glue recipe.yaml (resolved)\n" + dump(recipe))  # dump holds `command:`
    con = console()
    result = run_suite(recipe, run, resume=resume, say=say if run.main else lambda m: None, planned=planned)
    if not run.main:  # under torchrun/accelerate only rank 0 prints
        return
    title = f"GLUE dev: {recipe.model.name_or_path} ({recipe.method})"
    skipped = "; ".join(f"{n} ({why})" for n, why in result.skipped.items())
    con.print(rich_table(result.rows, title, caption=f"skipped: {skipped}" if skipped else None))
    for note in result.notes:
        con.print(f"[yellow]note:[/] {note}")
    wrote(run.path)


def _recipe(args, model, glue_dir, tasks, seeds, out, resume):
    """Recipe file + overrides + options (options win); on --resume, the saved recipe."""
    from bertctl.errors import BertctlError
    from bertctl.glue.config import GlueRecipe
    from bertctl.recipe import RECIPES_DIR, load, read_yaml, validate

    source, overrides = split_args(args)
    options = {"model": model, "glue_dir": glue_dir, "tasks": tasks, "seeds": seeds}
    saved = Path(out) / "recipe.yaml" if (resume and out) else None
    if saved is not None and saved.exists() and source is None and not overrides and model is None:
        source = str(saved)  # `--out DIR --resume` alone continues with what the suite started with
    # the built-in by path: a data folder called glue/ in the working directory is common
    recipe, _ = load(GlueRecipe, source, overrides, default=str(RECIPES_DIR / "glue.yaml"))
    data = recipe.model_dump()
    if model is not None:
        data["model"]["name_or_path"] = model
    for key in ("glue_dir", "tasks", "seeds"):
        if options[key] is not None:
            data[key] = str(options[key]) if key == "glue_dir" else options[key]
    if any(v is not None for v in options.values()):
        recipe = validate(GlueRecipe, data, "command-line options", Path.cwd())
    if saved is not None and saved.exists():
        before = validate(GlueRecipe, {k: v for k, v in read_yaml(saved).items() if k != "command"}, str(saved), saved.parent)
        changed = [k for k in FROZEN if getattr(before, k) != getattr(recipe, k)]
        if changed:
            raise BertctlError(f"cannot resume {out} with a different {', '.join(changed)} than it was started with",
                               fix=f"rerun with the saved recipe: bertctl eval-glue {saved} --out {out} --resume")
    return recipe
