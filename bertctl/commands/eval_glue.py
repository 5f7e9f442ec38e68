"""`bertctl eval-glue [--model M] [RECIPE] [key=value ...]`: fine-tune and evaluate on GLUE."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bertctl.commands._common import ARGS, OUT, QUIET, RESUME, check_model, holds_files, quiet_progress, split_args, wrote
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
    quiet: bool = QUIET,
) -> None:
    """Fine-tune and evaluate a model on every GLUE task and print one table.

    Writes results (JSON, CSV, Markdown), a bar chart against the human baseline and a leaderboard submission.zip. Built-in recipes: glue (GLUE-sane), glue_cpu, glue_lora.
    """
    quiet_progress(quiet)
    from bertctl.glue.score import rich_table
    from bertctl.glue.suite import plan, run_suite
    from bertctl.recipe import dump
    from bertctl.runs import Run

    recipe = _recipe(args, model, glue_dir, tasks, seeds, out, resume)
    planned = plan(recipe)  # no GLUE data -> one error line, and no run folder left behind
    if resume and out is not None:
        _check_data(recipe, Path(out), planned)  # refused before recipe.yaml or a data copy is rewritten
    elif holds_files(out):  # --out holds the user's files: a model that is none is refused before it is opened
        check_model(recipe.model.name_or_path, recipe.model.allow_pickle)
    run = Run.create(out, "eval-glue", resume=resume)
    run.write_text("recipe.yaml", "# bertctl eval-glue recipe.yaml (resolved)\n" + dump(recipe))  # dump holds `command:`
    con = console()
    result = run_suite(recipe, run, resume=resume, say=say if run.main else lambda m: None, planned=planned)
    if not run.main:  # under torchrun/accelerate only rank 0 prints
        return
    title = f"GLUE dev: {recipe.model.name_or_path} ({recipe.method})"
    skipped = "; ".join(f"{n} ({why})" for n, why in result.skipped.items())
    con.print(rich_table(result.rows, title, caption=f"skipped: {skipped}" if skipped else None))
    err = console(stderr=True)  # notes on stderr with the progress (shown under --quiet: they qualify the table)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}")
    wrote(run.path)


def _check_data(recipe, out: Path, planned) -> None:
    """--resume on GLUE data that differs from the copies the suite trained on: refused
    here, before anything is rewritten, so the saved recipe still resumes the suite."""
    import tempfile

    from bertctl.errors import BertctlError
    from bertctl.glue.suite import load_task, task_settings, write_task_files
    from bertctl.glue.tasks import TASKS

    for name in planned.present:
        copies = out / "data" / name
        if not copies.is_dir():
            continue
        cap = task_settings(recipe, name).get("max_train_rows")
        data = load_task(planned.source, TASKS[name], cap, recipe.max_eval_rows, recipe.max_test_rows,
                         tests=recipe.submission)
        with tempfile.TemporaryDirectory() as tmp:
            for path in write_task_files(data, Path(tmp)).values():
                copy = copies / path.name
                if copy.is_file() and copy.read_bytes() != path.read_bytes():
                    raise BertctlError(f"cannot resume {out}: {name}'s {path.stem} rows from {planned.source.describe()} "
                                       f"differ from the copy the suite trained on ({copy})",
                                       fix=f"resume with the data it started with (bertctl eval-glue --out {out} "
                                           "--resume), or start a new --out")


def _recipe(args, model, glue_dir, tasks, seeds, out, resume):
    """Recipe file + overrides + options (options win); on --resume, the saved recipe."""
    from bertctl.errors import BertctlError
    from bertctl.glue.config import GlueRecipe
    from bertctl.recipe import RECIPES_DIR, load, option_overrides, read_yaml, validate

    source, overrides = split_args(args)
    saved = Path(out) / "recipe.yaml" if (resume and out) else None
    if saved is not None and saved.exists() and source is None and not overrides and model is None:
        source = str(saved)  # `--out DIR --resume` alone continues with what the suite started with
    # options win over overrides: they come last
    overrides += option_overrides({"model.name_or_path": model, "glue_dir": glue_dir, "tasks": tasks, "seeds": seeds})
    # the built-in by path: a data folder called glue/ in the working directory is common
    recipe, _ = load(GlueRecipe, source, overrides, default=str(RECIPES_DIR / "glue.yaml"))
    if saved is not None and saved.exists():
        before = validate(GlueRecipe, {k: v for k, v in read_yaml(saved).items() if k != "command"}, str(saved), saved.parent)
        changed = [k for k in FROZEN if getattr(before, k) != getattr(recipe, k)]
        if changed:
            raise BertctlError(f"cannot resume {out} with a different {', '.join(changed)} than it was started with",
                               fix=f"rerun with the saved recipe: bertctl eval-glue {saved} --out {out} --resume")
    return recipe
