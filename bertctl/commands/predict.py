"""`bertctl predict RUN_DIR [INPUT]`: a fine-tuned run's predictions on unlabelled input, as JSON lines."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from bertctl.errors import BertctlError


def predict(
    run_dir: Path = typer.Argument(..., help="A `bertctl finetune` run folder (or its model/ or merged/).",
                                   show_default=False),
    input: Optional[Path] = typer.Argument(None, help="TSV/CSV/JSONL/text file; '-' or nothing reads stdin.",
                                           show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the JSON lines here instead of stdout."),
    fmt: str = typer.Option("auto", "--format", "-f", help="Input format: auto (from the extension; stdin: text), "
                                                           "tsv, csv, jsonl, text."),
    column: Optional[List[str]] = typer.Option(None, "--column", "-c", metavar="ROLE=NAME",
                                               help="Input column for a role (text, text_pair, tokens, question, "
                                                    "context, id); default: as in the run's recipe."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1, help="Default: the run's eval_batch_size."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Hide progress (stderr); predictions, warnings and "
                                                            "errors still show."),
) -> None:
    """Predict with a fine-tuned run (any task kind; full, LoRA, QLoRA or merged).

    Stdin: one text per line; a pair as two tab-separated texts; tagging: words split at spaces;
    QA: JSON lines with question and context. Output, in input order: label + probabilities, tags
    per word (+ entity spans for BIO tags), the answer with its character span and score, or the value.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see `bertctl pretrain`: before torch is imported
    from bertctl.console import progress_console, say, set_quiet, warn

    set_quiet(quiet)
    from bertctl.predict import Predictor, check_columns, predict_stream, read_rows
    from bertctl.finetune.finished import FinetuneRun

    columns = _columns(column or [])
    if out is not None and out.exists():
        raise BertctlError(f"{out} already exists", fix="choose another --out, or remove it first")
    finished = FinetuneRun.load(run_dir)  # a failed or unfinished run stops here, before the input is read
    run_path, recipe = finished.path, finished.recipe
    given, columns = columns, {**{k: v for k, v in recipe.data.columns.model_dump().items() if v}, **columns}
    check_columns(recipe.kind, given, columns)
    rows = read_rows(input, recipe.kind, columns, fmt)  # a missing file fails here, before the model loads
    err = progress_console(soft_wrap=True)
    predictor = Predictor.load(finished, batch_size)
    from bertctl.precision import announce

    announce(predictor.precision, lambda text: say(text, soft_wrap=True))
    t0 = time.perf_counter()
    target = out.with_name(f".{out.name}.tmp-{os.getpid()}") if out else None
    made = _make_parents(out) if out else []  # --out x/y.jsonl: x/ is made (and removed again on failure)
    sink = open(target, "w", encoding="utf-8") if target else sys.stdout
    try:
        with _bar(err) as advance:
            n = predict_stream(predictor, rows, sink.write, advance)
        sink.flush()
    except BrokenPipeError:  # `bertctl predict ... | head`: the reader has all it wanted
        sys.stderr.close()
        return
    except BaseException:
        if target:
            sink.close()
            target.unlink(missing_ok=True)
            for folder in made:
                folder.rmdir()
        raise
    if target:
        sink.close()
        os.replace(target, out)
    for note in predictor.notes():  # as training says them: rows cut at max_length, odd DNA symbols, ...
        warn(note)
    seconds = time.perf_counter() - t0
    err.print(f"[dim]predicted {n:,} rows in {seconds:.1f} s ({n / max(seconds, 1e-9):,.0f} rows/s) "
              f"with {run_path} ({recipe.kind})[/]" + (f" -> {out}" if out else ""))


def _make_parents(path: Path) -> list[Path]:
    """Make the missing folders above path; returns them, deepest first (to remove them again)."""
    missing = [p for p in path.absolute().parents if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a folder should be, no permission
        raise BertctlError(f"cannot make the folder {path.parent} for --out ({e.strerror or e})",
                           fix="choose an --out in a folder you can write") from None
    return missing


def _columns(items: list[str]) -> dict[str, str]:
    from bertctl.predict import input_roles

    roles = input_roles()
    out = {}
    for item in items:
        role, sep, name = item.partition("=")
        if not sep or role not in roles or not name:
            raise BertctlError(f"--column {item!r} is not ROLE=NAME", fix=f"ROLE is one of: {', '.join(roles)}")
        out[role] = name
    return out


class _bar:
    """A rows-done counter on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, console):
        self.console, self.progress = console, None

    def __enter__(self):
        if not self.console.is_terminal:
            return None
        from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("predicting"), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
        self.progress.__enter__()
        job = self.progress.add_task("predict", total=None)
        return lambda k: self.progress.advance(job, k)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)
        return False
