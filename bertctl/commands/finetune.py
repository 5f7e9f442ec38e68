"""`bertctl finetune --task TASK [RECIPE] [key=value ...]`: fine-tune an encoder on a task.

Thin on purpose: pick the recipe, load it with the overrides, then call
`bertctl.finetune.run.finetune` (or `finetune.evaluate.evaluate_run` for --eval-only) and print the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bertctl.commands._common import (ARGS, OUT, QUIET, RESUME, check_model, holds_files, quiet_progress, split_args,
                                      wrote)
from bertctl.console import console
from bertctl.errors import BertctlError

TASK = typer.Option(None, "--task", "-t", show_default=False,
                    help="cls|sentiment, tag|pos|ner, nli|pair, qa, regression, dna. "
                         "Without RECIPE: the built-in finetune_<task> recipe (World data, offline).")
EVAL_ONLY = typer.Option(None, "--eval-only", metavar="RUN_DIR", show_default=False,
                         help="Evaluate a finished finetune run instead of training; data.* overrides pick the "
                              "data (e.g. data.dev=file.tsv, data.world.language=xx).")
MODEL = typer.Option(None, "--model", "-m", show_default=False,
                     help="Encoder to fine-tune (= model.name_or_path): a bertctl run folder, a local HF folder, "
                          "a hub id such as bert-base-multilingual-cased, or minilm.")
MERGE = typer.Option(False, "--merge", help="LoRA/QLoRA: also write merged/, the adapter folded into the base model.")
PUSH = typer.Option(None, "--push-to-hub", metavar="REPO", show_default=False,
                    help="After training, upload model/ with its model card to this Hub repository.")
COMPARE = typer.Option(False, "--compare-init",
                       help="Also train from random weights; write comparison.png and a side-by-side table.")


def default_recipe(task: str | None) -> str:
    """finetune_<what the user typed> when built in (finetune_ner), else finetune_<kind>,
    else finetune_cls."""
    from bertctl.recipe import builtin_recipes
    from bertctl.finetune.kinds import canonical_task

    if task is None:
        return "finetune_cls"
    name, kind = f"finetune_{task.lower()}", f"finetune_{canonical_task(task)}"
    # a kind without a recipe of its own starts from the generic one (task= sets the kind)
    return next((n for n in (name, kind) if n in builtin_recipes()), "finetune_cls")


def finetune(
    args: Optional[List[str]] = ARGS,
    task: Optional[str] = TASK,
    out: Optional[Path] = OUT,
    resume: bool = RESUME,
    eval_only: Optional[Path] = EVAL_ONLY,
    merge: bool = MERGE,
    compare_init: bool = COMPARE,
    push_to_hub: Optional[str] = PUSH,
    model: Optional[str] = MODEL,
    quiet: bool = QUIET,
) -> None:
    """Fine-tune a pretrained encoder (a bertctl pretrain run, a local HF folder, a hub id) and report dev metrics."""
    quiet_progress(quiet)
    recipe_name, overrides = split_args(args)
    if eval_only is not None:
        if model is not None:
            raise BertctlError("--eval-only uses the run's own model; --model does not apply",
                               fix="drop --model (to evaluate another model, fine-tune it first)")
        _eval_only(eval_only, recipe_name, overrides, out, task, resume, merge, compare_init)
        return

    from bertctl.recipe import load, option_overrides
    from bertctl.runs import Run
    from bertctl.finetune.config import FinetuneRecipe
    from bertctl.finetune.kinds import canonical_task
    from bertctl.finetune.run import finetune as run_finetune

    if task is not None:
        canonical_task(task)  # unknown names fail here, with the list
    # options are overrides (--task first: a task= override wins over it, as it always did)
    overrides = [*option_overrides({"task": task}), *overrides,
                 *option_overrides({"model.name_or_path": model, "merge": merge or None,
                                    "compare_init": compare_init or None})]
    recipe, path = load(FinetuneRecipe, recipe_name, overrides, default_recipe(task))
    from bertctl.recipe import refuse_unused
    from bertctl.finetune.config import unused_settings

    refuse_unused(unused_settings(recipe), path, overrides)
    if push_to_hub:
        from bertctl.hub import check_online, check_repo

        check_repo(push_to_hub)  # before training, not after
        check_online()
    if not resume and holds_files(out):  # `finetune myexp/recipe.yaml --out myexp`: refused, it changes nothing
        _check_inputs(recipe)
    run = Run.create(out, "finetune", resume)
    run_finetune(recipe, run, resume, quiet=quiet)
    if run.main:  # under torchrun/accelerate only rank 0 prints (and only it wrote metrics.json)
        show(run.path)
        wrote(run.path)
        if push_to_hub:
            from bertctl.hub import push

            console().print(f"[bold green]Pushed[/] {run.path / 'model'} to {push(run.path, push_to_hub)}")


def _check_inputs(recipe) -> None:
    """What training would refuse first (the model; the data: files, columns, labels), checked
    before the run folder is opened. Only for a folder that already holds files: the data is
    then read twice."""
    from bertctl.finetune.data import load_splits

    check_model(recipe.model.name_or_path, recipe.model.allow_pickle)
    load_splits(recipe.data, recipe.kind, task=recipe.task)


def _eval_only(run_dir: Path, recipe_name, overrides, out, task, resume, merge, compare_init) -> None:
    if recipe_name is not None:
        raise BertctlError(f"--eval-only takes data.* overrides, not a recipe ({recipe_name})",
                           fix="e.g. bertctl finetune --eval-only RUN_DIR data.dev=other.tsv")
    if task or resume or merge or compare_init:
        raise BertctlError("--eval-only cannot be combined with --task/--resume/--merge/--compare-init",
                           fix="evaluate with --eval-only RUN_DIR [data.*=...] alone")
    bad = [o for o in overrides if not o.split("=", 1)[0].strip().startswith(("data.", "eval_batch_size", "qa."))]
    if bad:
        raise BertctlError(f"--eval-only accepts data.*, qa.* and eval_batch_size overrides, not {bad[0]}",
                           fix="the model and training settings are those of the run")
    from datetime import datetime

    from bertctl.finetune.evaluate import evaluate_run

    out = out or Path(run_dir) / "evals" / f"eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    evaluate_run(run_dir, overrides, out)
    show(out)
    wrote(out)


def show(run_path: Path) -> None:
    """The results table(s) of a finished run folder (what metrics.json holds)."""
    from bertctl.report import print_table
    from bertctl.runs import read_json
    from bertctl.finetune.compare import comparison_rows
    from bertctl.finetune.run import results_rows

    summary = read_json(run_path / "metrics.json")
    if "rows" in summary:  # --eval-only on several files: a row per file
        show_files(run_path, summary)
        return
    print_table(f"{summary['task']}: {summary.get('split', 'dev')}", results_rows(summary))
    line = f"model {summary['model'].split(' (')[0]}"
    if "n_train" in summary:
        line += (f" | {summary['init']} init, {summary['method']} | {summary['n_train']} train / {summary['n_dev']} dev"
                 f" | {summary['train_samples_per_s']} samples/s, {summary['train_seconds']} s")
    if summary.get("unk_rate"):
        line += f" | [UNK] {summary['unk_rate']:.1%} of tokens"
    console().print(line, markup=False)
    if "compare_init" in summary:
        print_table("pretrained vs random init (dev)", comparison_rows(summary))
        console().print(f"curves: {run_path / 'comparison.png'}")


def show_files(run_path: Path, summary: dict) -> None:
    """One row per evaluated file: rows, [UNK] rate, the metrics."""
    from bertctl.report import print_table

    rows = [{**r, "unk_rate": f"{r['unk_rate']:.1%}" if r.get("unk_rate") is not None else ""}
            for r in summary["rows"]]
    print_table(f"{Path(summary['model']).name}: {summary['main_metric']} by file", rows)
    console().print(f"chart: {run_path / 'scores.png'}", markup=False)
