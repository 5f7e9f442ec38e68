"""`bertctl runs list|show|compare`: the run folders, one table at a time."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="List, show and compare run folders.", no_args_is_help=True)

COLUMNS = ["run", "command", "task", "model", "metric", "steps", "status", "age"]


def console():
    """Terminal width on a terminal; wide when piped (a log or file: wrapped cells only hurt)."""
    from bertctl import console as terminal

    return terminal.console(width=None if terminal.console().is_terminal else 200)


def print_table(title, rows, columns):
    from bertctl.report import table

    console().print(table(title, rows, columns))


@app.command("list")
def list_(folder: Path = typer.Argument(Path("runs"), help="Folder holding run folders.")) -> None:
    """A table of the run folders under FOLDER (default ./runs), oldest first."""
    from bertctl.runinfo import find_runs, summary

    rows = [summary(p) for p in find_runs(folder)]
    if not rows:
        console().print(f"no run folders in {folder}")
        return
    print_table(f"runs in {folder}", rows, COLUMNS)


@app.command("show")
def show(run: Path = typer.Argument(..., help="A run folder.", show_default=False)) -> None:
    """A run's summary, recipe, metrics and files."""
    from rich.syntax import Syntax

    from bertctl.runinfo import details, flatten

    info = details(run)
    con = console()
    print_table(str(run), [info["summary"]], COLUMNS[1:])
    for note in info["notes"]:
        con.print(f"note: {note}", markup=False, soft_wrap=True)
    if info["recipe"]:
        con.print("[bold]recipe.yaml[/]")
        con.print(Syntax(info["recipe"], "yaml", theme="ansi_dark", background_color="default"))
    metrics = flatten(info["metrics"])
    if metrics:
        print_table("metrics.json", [{"metric": k, "value": v} for k, v in metrics.items()], ["metric", "value"])
    print_table("files", info["files"], ["file", "size", "files"])


@app.command("compare")
def compare(
    runs: List[Path] = typer.Argument(..., help="Two or more run folders.", show_default=False),
    png: Optional[Path] = typer.Option(None, "--png", help="Where to draw the curves (default ./compare-<time>.png)."),
) -> None:
    """Metrics side by side, and the training curves overlaid in one PNG."""
    from datetime import datetime

    from bertctl.errors import BertctlError
    from bertctl.runinfo import compare as compare_runs

    png = png or Path(f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}.png")
    if png.exists():
        raise BertctlError(f"{png} already exists", fix="pass another --png")
    result = compare_runs(runs, png)
    print_table("metrics", result["rows"], ["metric", *result["runs"]])
    con = console()
    if result["png"]:
        con.print(f"[bold green]Wrote[/] {result['png']}")
    else:
        con.print("no training curves (no run logged metrics.jsonl steps)")
