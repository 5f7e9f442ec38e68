"""Apply a fine-tuned run to unlabelled input: the library behind `bertctl predict`.

    Predictor.load(RUN_DIR)      the run's recipe, labels, tokenizer and model (full, LoRA,
                                 QLoRA, or a merged/ folder), in eval mode
    read_rows(INPUT, kind, ...)  role-keyed rows from a TSV/CSV/JSONL file or stdin, lazily
    predict_stream(p, rows, write)   chunk by chunk: encode, run in length order, write

Memory stays bounded whatever the input size: rows are read lazily and handled CHUNK at a
time (tokenised, sorted by length so batches carry little padding, run, written as JSON
lines in input order, forgotten). One output line per input row:

    cls, nli, dna   {"index", "text"(, "text_pair"), "label", "probabilities": {label: p}, "prediction"}
    regression      {"index", "text"(, "text_pair"), "value", "prediction"}
    tag             {"index", "tokens", "tags"(, "entities" when the tags are BIO), "prediction"}
    qa              {"index", "id", "question", "answer", "start", "end", "score"(, "null_score",
                    "null_odds" on SQuAD 2.0), "prediction"}

the same records as a run's predictions_<split>.jsonl, less "gold" (one function writes
both: bertctl.finetune.base.prediction_records). What a kind reads and writes is its own
(Task.inputs, read_line, input_row, decode, fields in bertctl.finetune); this module streams,
chunks and batches.
"""

from __future__ import annotations

import csv
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.jsonl import BadLine, dumps_line, parse

CHUNK = 4096  # rows in memory at once (with their features and outputs)
FORMATS = ("auto", "tsv", "csv", "jsonl", "text")


# ---------------------------------------------------------------------------- the model


@dataclass
class Predictor:
    task: object
    tokenizer: object
    model: object
    precision: object  # a bertctl.precision.ResolvedPrecision, resolved on the device the model sits on
    batch_size: int
    source: str = ""

    @classmethod
    def load(cls, path, batch_size: int | None = None, precision: str | None = None) -> "Predictor":
        """`path`: a run folder (or its model/ or merged/) or a loaded FinetuneRun.
        `precision`: auto, bf16, fp16 or fp32; None = the run's train.precision."""
        from bertctl.finetune.finished import FinetuneRun
        from bertctl.precision import resolve

        run = path if isinstance(path, FinetuneRun) else FinetuneRun.load(path)
        tokenizer = run.tokenizer()
        task = run.task(tokenizer)
        model = run.model(task)
        task.fit_length(tokenizer, model.config)
        resolved = resolve(precision or run.recipe.train.precision, next(model.parameters()).device)
        return cls(task, tokenizer, model, resolved, batch_size or run.recipe.eval_batch_size, str(run.path))

    # ------------------------------------------------------------------ one chunk
    def predict(self, rows: list[dict], first_index: int = 0) -> list[dict]:
        """One prediction record per row (role-keyed rows, see read_rows), in row order:
        the shape of predictions_<split>.jsonl (bertctl.finetune.base.prediction_records)."""
        from bertctl.finetune.base import prediction_records
        from bertctl.finetune.run import inference

        rows = self.task.predict_rows(rows, first_index)
        features = self.task.encode(self.tokenizer, rows, train=False)
        with inference(self.model, self.precision):
            predictions = self.task.predict(self.model, rows, features, self.batch_size)
        return prediction_records(self.task, rows, predictions, first_index)

    def notes(self) -> list[str]:
        """What encoding did to the input so far (rows cut at max_length, DNA symbols
        outside A/C/G/T, long questions cut): the lines training shows."""
        return self.task.report()


# ---------------------------------------------------------------------------- input


NOT_LINES = {".conll": "CoNLL", ".conllu": "CoNLL-U"}  # formats of training data that predict cannot read


def _format(path: Path | None, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path is None:
        return "text"
    suffix = path.suffix.lower()
    if suffix in NOT_LINES:
        raise BertctlError(f"{path}: predict reads one example per line, not {NOT_LINES[suffix]} sentences",
                           fix="write one sentence per line, words separated by spaces (a .txt file), or JSON lines "
                               'such as {"tokens": [...]}; `bertctl finetune --eval-only RUN data.dev=FILE` scores '
                               "a labelled CoNLL file")
    found = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "text"}.get(suffix)
    if found is None:
        raise BertctlError(f"{path}: cannot tell the format from the extension {suffix or '(none)'}",
                           fix="pass --format tsv, csv, jsonl or text")
    return found


def _records(lines: Iterable[str], fmt: str, source: str) -> Iterator[tuple[int, dict]]:
    """(line number, dict row) of a table or JSON-lines stream (no roles yet). A leading
    byte-order mark is dropped, as the training readers drop it."""
    if fmt in ("tsv", "csv"):
        reader = csv.DictReader(lines, delimiter="\t" if fmt == "tsv" else ",",
                                quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
        try:
            if reader.fieldnames:
                reader.fieldnames = [c.strip().lstrip("\ufeff") for c in reader.fieldnames]
            for row in reader:
                if None in row:
                    raise BertctlError(f"{source} line {reader.line_num}: more fields than the header has",
                                       fix="look for a stray delimiter on that line")
                yield reader.line_num, row
        except csv.Error as e:
            raise BertctlError(f"{source} line {reader.line_num}: {e}", fix="fix the quoting on that line") from None
        return
    lines = iter(lines)
    first = next(lines, "").lstrip("\ufeff")
    try:  # one rule for every JSON-lines file (jsonl.parse): a user's bad last line is an error, not a torn write
        yield from parse(itertools.chain([first], lines), source, torn_last_line="error")
    except BadLine as e:
        if e.number == 1 and first.lstrip().startswith(("{", "[")) and e.reason.startswith("not JSON"):
            # one JSON document over many lines (SQuAD)
            raise BertctlError(f"{source} is one JSON document (a SQuAD file?), not one JSON object per line",
                               fix='give one object per line, e.g. {"question": "...", "context": "..."}; '
                                   "`bertctl finetune --eval-only RUN data.dev=FILE` scores a SQuAD file") from None
        fix = ("give one JSON object per line" if e.reason.startswith("not JSON")
               else 'give one object per line, e.g. {"text": "..."}')
        raise BertctlError(f"{source} line {e.number}: {e.reason}", fix=fix) from None


def input_roles() -> list[str]:
    """Every role some kind reads from `bertctl predict` input (what --column may name)."""
    from bertctl.finetune.kinds import KINDS

    return sorted({r for t in KINDS.values()
                   for r in (*t.inputs, *t.input_extras, *(["text_pair"] if t.pair != "never" else []))})


def roles_read(task, columns: dict) -> list[str]:
    """The roles a kind reads from `bertctl predict` input: its inputs, then what it reads
    when there (text_pair when the run reads pairs, QA's id)."""
    return [*task.inputs, *(["text_pair"] if task.reads_pair(columns) and "text_pair" not in task.inputs else []),
            *task.input_extras]


def check_columns(kind: str, given: dict, columns: dict) -> None:
    """A --column ROLE the run's kind never reads is refused (it would be ignored)."""
    from bertctl.finetune.kinds import get_task

    task = get_task(kind)
    unused = [role for role in given if role not in roles_read(task, columns)]
    if unused:
        raise BertctlError(f"--column {unused[0]}=...: a {kind} run does not read a {unused[0]}",
                           fix=f"map only what it reads: {', '.join(roles_read(task, columns))}")


def column_map(task, columns: dict, available: list[str], source: str) -> dict[str, str]:
    """role -> column of the input: the run's recipe mapping (or --column), else the
    task's default names; a missing required column names the available ones."""
    mapping = {}
    for role in roles_read(task, columns):
        chosen = columns.get(role)
        if chosen is None:
            chosen = next((c for c in task.columns.get(role, [role]) if c in available), None)
        if chosen in available:
            mapping[role] = chosen
        elif role in task.inputs or columns.get(role):
            tried = chosen or " / ".join(task.columns.get(role, [role]))
            raise BertctlError(f"{source}: no column {tried!r} for the {role} of a {task.kind} example; "
                               f"available columns: {', '.join(map(repr, available))}",
                               fix=f"pass --column {role}=NAME with one of them")
    return mapping


def read_rows(path: Path | None, kind: str, columns: dict | None = None, fmt: str = "auto",
              stdin=None) -> Iterator[dict]:  # checks now, reads when iterated
    """Role-keyed rows ({"text"}, {"tokens"}, {"question", "context"}, ...), lazily, from
    a file or stdin (path None or "-"). Text input: one example per line; QA reads JSON
    lines with question and context."""
    if path is not None and str(path) == "-":
        path = None
    fmt = _format(Path(path) if path else None, fmt)
    from bertctl.finetune.kinds import get_task

    task = get_task(kind)
    if fmt == "text" and not task.plain_text:
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise BertctlError(f"unknown input format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")
    if path is not None and not Path(path).is_file():
        raise BertctlError(f"{path}: no such file", fix="check the path, or pipe the input on stdin")
    return _iter_rows(path, task, columns or {}, fmt, stdin)


def _iter_rows(path, task, columns: dict, fmt: str, stdin) -> Iterator[dict]:
    source = str(path) if path else "stdin"
    handle = open(path, encoding="utf-8-sig", newline="") if path else (stdin or sys.stdin)
    try:
        if fmt == "text":
            pair = task.reads_pair(columns)
            for n, line in enumerate(handle, 1):
                yield task.read_line(line.rstrip("\r\n").lstrip("\ufeff") if n == 1 else line.rstrip("\r\n"),
                                     pair, n, source)
            return
        mappings: dict[tuple, dict] = {}  # per set of keys: JSON lines need not all have the same ones
        for n, row in _records(handle, fmt, source):
            keys = tuple(row)
            if keys not in mappings:
                mappings[keys] = column_map(task, columns, list(row), f"{source} line {n}")
            yield task.input_row({role: row[col] for role, col in mappings[keys].items()}, n, source)
    except UnicodeDecodeError as e:
        raise BertctlError(f"{source} is not UTF-8 text ({e.reason})", fix="convert it to UTF-8") from None
    finally:
        if path:
            handle.close()


def chunks(rows: Iterable[dict], size: int = CHUNK) -> Iterator[list[dict]]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_stream(predictor: Predictor, rows: Iterable[dict], write: Callable[[str], None],
                   advance: Callable[[int], None] | None = None, chunk: int = CHUNK) -> int:
    """Predict every row, writing one JSON line per row in input order; returns the count."""
    n = 0
    for part in chunks(rows, chunk):
        records = predictor.predict(part, first_index=n)
        write("".join(map(dumps_line, records)))
        n += len(part)
        if advance:
            advance(len(part))
    return n
