"""`bertctl reproduce [RECIPE] [key=value ...]`: the lecture's experiments, one report."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from bertctl.commands._common import ARGS, OUT, QUIET, quiet_progress, split_args, wrote
from bertctl.console import console, say


def reproduce(
    args: Optional[List[str]] = ARGS,
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="smoke (tiny, ~3 min), cpu (real-data "
                                                                        "sizes, < 2 h on 2 cores; the recipe's "
                                                                        "default) or gpu (full sizes, hub models)."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma list of experiments to run (see --list)."),
    list_: bool = typer.Option(False, "--list", help="Name the experiments and the steps each runs, then stop."),
    out: Optional[Path] = OUT,
    quiet: bool = QUIET,
) -> None:
    """Rerun the lecture's experiments and write one report: report.html, report.md, results.json.

    Every experiment states the lecture's claim, the exact bertctl commands that test it
    (run here, their run folders under OUT/runs/), its figure, numbers, the published
    reference and a verdict computed from a criterion in the recipe. Rerunning into the
    same --out reuses every finished step and renders again.
    Examples: `bertctl reproduce --profile smoke`, `bertctl reproduce --only mlm,apple`,
    `bertctl reproduce --list`, `bertctl reproduce reproduce steps.world.cpu=train.max_steps=800`.
    """
    quiet_progress(quiet)
    from bertctl.recipe import dump, load, option_overrides
    from bertctl.report import print_table
    from bertctl.reproduce.config import ReproduceRecipe
    from bertctl.reproduce.run import failed_steps, listing, reproduce as run_reproduce, select

    source, overrides = split_args(args)
    recipe, path = load(ReproduceRecipe, source, [*overrides, *option_overrides({"profile": profile})], "reproduce")
    if list_:
        print_table(f"bertctl reproduce: the experiments ({path.name}, profile {recipe.profile})", listing(recipe),
                    ["name", "#", "experiment", "steps"])
        return
    select(recipe, only)  # a bad --only is refused before any folder is made

    from bertctl.errors import BertctlError
    from bertctl.runs import Run, read_record

    record = read_record(out) if out is not None else None
    if record is not None and record.command != "reproduce":
        raise BertctlError(f"{out} is a `bertctl {record.command}` run folder, not a reproduce one",
                           fix="choose another --out")
    run = Run.create(out, "reproduce", resume=record is not None)  # a rerun into the same folder reuses its steps
    console().print(f"[bold]bertctl reproduce[/] {path.name} --profile {recipe.profile} -> {run.path}")
    line = " ".join([*(args or []), f"--profile {recipe.profile}", *([f"--only {only}"] if only else [])])
    run.write_text("recipe.yaml", f"# bertctl reproduce {line}\n" + dump(recipe))
    run.note(task=f"reproduce ({recipe.profile})", model="")
    results = run_reproduce(recipe, run, only, lambda line: say(line, markup=False))
    print_table("The lecture, reproduced", [{"#": e["number"], "experiment": e["title"], "verdict": e["verdict"],
                                              "why": e["why"]} for e in results["experiments"]],
                ["#", "experiment", "verdict", "why"])
    console().print(f"{results['ran']} step(s) run, {results['reused']} reused, {results['seconds']:.0f} s; "
                    f"report: {run.path / 'report.html'}")
    failed = failed_steps(results)
    if failed:
        raise BertctlError(f"{len(failed)} step(s) failed: {'; '.join(failed)}",
                           fix=f"see {run.path / 'logs'}; rerun the same command with --out {run.path} to retry "
                               "only what did not finish")
    run.finish()
    wrote(run.path)
