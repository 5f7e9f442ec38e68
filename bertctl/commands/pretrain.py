"""`bertctl pretrain [RECIPE] [key=value ...]`: MLM (+NSP/SOP) or causal-LM pretraining."""

from __future__ import annotations

import os
from typing import List, Optional

from bertctl.commands._common import ARGS, OUT, QUIET, RESUME, check_model, holds_files, quiet_progress, split_args, wrote
from bertctl.console import console


def pretrain(args: Optional[List[str]] = ARGS, out: Optional[str] = OUT, resume: bool = RESUME,
             quiet: bool = QUIET) -> None:
    """Pretrain a BERT (MLM with NSP/SOP, whole-word or span masking) or a GPT-style causal LM.

    With no arguments: a small BERT on the generated World corpus, offline, in a few minutes.
    Examples: `bertctl pretrain pretrain_sop`, `bertctl pretrain train.max_steps=50`,
    `bertctl pretrain data.source=corpus.txt model.layers=4`.
    """
    # Idle OpenMP threads sleep instead of spinning (only effective before torch is imported):
    # with other processes on a 2-core box, spinning threads made a training step ~15x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    quiet_progress(quiet)
    from bertctl.pretraining.config import PretrainRecipe
    from bertctl.recipe import load
    from bertctl.report import print_table
    from bertctl.runs import Run

    source, overrides = split_args(args)
    recipe, path = load(PretrainRecipe, source, overrides, default="pretrain")
    from bertctl.pretraining.config import unused_settings
    from bertctl.recipe import refuse_unused

    refuse_unused(unused_settings(recipe), path, overrides)
    if not resume and holds_files(out):  # --out holds the user's files: a model that is none is refused first
        for source in (None if recipe.from_scratch else recipe.model.init, recipe.tokenizer_source):
            if source:
                check_model(source, recipe.model.allow_pickle)
    run = Run.create(out, "pretrain", resume)
    if run.main:  # under torchrun/accelerate only rank 0 prints
        console().print(f"[bold]bertctl pretrain[/] {path.name} -> {run.path}")

    from bertctl.pretraining.run import pretrain as run_pretrain, results_rows

    metrics = run_pretrain(recipe, run, resume)
    if run.main:
        print_table("Pretraining results (held-out)", results_rows(metrics), ["metric", "value"])
        wrote(run.path)
