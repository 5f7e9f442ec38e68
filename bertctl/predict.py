"""Apply a fine-tuned run to unlabelled input: the library behind `bertctl predict`.

    Predictor.load(RUN_DIR)      the run's recipe, labels, tokenizer and model (full, LoRA,
                                 QLoRA, or a merged/ folder), in eval mode
    read_rows(INPUT, kind, ...)  role-keyed rows from a TSV/CSV/JSONL file or stdin, lazily
    predict_stream(p, rows, write)   chunk by chunk: encode, run in length order, write

Memory stays bounded whatever the input size: rows are read lazily and handled CHUNK at a
time (tokenised, sorted by length so batches carry little padding, run, written as JSON
lines in input order, forgotten). One output line per input row:

    cls, nli, dna   {"index", "label", "probabilities": {label: p}}
    regression      {"index", "value"}
    tag             {"index", "tokens", "tags"} (+ "entities" when the tags are BIO)
    qa              {"index", "id", "answer", "start", "end", "score"} (+ "null_score" on SQuAD 2.0)

What a kind reads and writes is its own (Task.inputs, read_line, input_row, output_records
in bertctl.finetune); this module streams, chunks and batches.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bertctl.errors import BertctlError

CHUNK = 4096  # rows in memory at once (with their features and outputs)
FORMATS = ("auto", "tsv", "csv", "jsonl", "text")


# ---------------------------------------------------------------------------- the model


def find_run(path: Path) -> tuple[Path, Path]:
    """(run folder, model folder) for a finetune run folder or one of its model/ or
    merged/ folders."""
    path = Path(path)
    if not path.exists():
        raise BertctlError(f"{path} does not exist", fix="pass the folder of a `bertctl finetune` run")
    if (path / "recipe.yaml").exists():
        if not (path / "model").is_dir():
            raise BertctlError(f"{path} has no model/ (the run did not finish)",
                               fix="pass a finished `bertctl finetune` run, or --resume it first")
        return path, path / "model"
    if (path / "config.json").exists() or (path / "adapter_config.json").exists():
        if (path.parent / "recipe.yaml").exists():
            return path.parent, path
    raise BertctlError(f"{path} is not a finetune run folder (no recipe.yaml)",
                       fix="pass the --out folder of a `bertctl finetune` run (or its model/ or merged/)")


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
        """`precision`: auto, bf16, fp16 or fp32; None = the run's train.precision."""
        from bertctl.finetune import methods
        from bertctl.finetune.kinds import get_task
        from bertctl.finetune.run import load_run_recipe
        from bertctl.models import ModelSource, load_tokenizer
        from bertctl.runs import read_json

        run_dir, model_dir = find_run(path)
        recipe = load_run_recipe(run_dir, [])
        labels_path = run_dir / "labels.json"
        labels = read_json(labels_path) if labels_path.exists() else None
        task = get_task(recipe.kind)(recipe, labels)
        if task.labels is None and task.has_label_set:
            raise BertctlError(f"{run_dir} has no labels.json", fix="re-run the fine-tuning")
        methods.quiet_transformers()
        tokenizer = load_tokenizer(ModelSource(str(model_dir), "local", str(model_dir)), recipe.model.trust_remote_code)
        task.setup(tokenizer)
        model = methods.load_trained(model_dir, recipe, task)
        if recipe.method == "lora" and methods.is_adapter(model_dir):
            model = model.merge_and_unload()  # same function, one matmul per layer fewer
        model.eval()
        task.fit_length(tokenizer, model.config)
        task.restore(run_dir)
        from bertctl.precision import resolve

        resolved = resolve(precision or recipe.train.precision, next(model.parameters()).device)
        return cls(task, tokenizer, model, resolved,
                   batch_size or recipe.eval_batch_size, str(run_dir))

    # ------------------------------------------------------------------ one chunk
    def predict(self, rows: list[dict], first_index: int = 0) -> list[dict]:
        """One output record per row (role-keyed rows, see read_rows), in row order."""
        from bertctl.finetune.base import batched_outputs
        from bertctl.finetune.run import inference

        rows = self.task.predict_rows(rows, first_index)
        features = self.task.encode(self.tokenizer, rows, train=False)
        with inference(self.model, self.precision):
            outputs = batched_outputs(self.model, features, self.task.collate, self.batch_size, self.task.outputs,
                                      per_token=self.task.per_token)
        records = self.task.output_records(rows, features, outputs)
        return [{"index": first_index + i, **r} for i, r in enumerate(records)]


# ---------------------------------------------------------------------------- input


def _format(path: Path | None, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path is None:
        return "text"
    suffix = path.suffix.lower()
    found = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "text"}.get(suffix)
    if found is None:
        raise BertctlError(f"{path}: cannot tell the format from the extension {suffix or '(none)'}",
                           fix="pass --format tsv, csv, jsonl or text")
    return found


def _records(lines: Iterable[str], fmt: str, source: str) -> Iterator[dict]:
    """Dict rows of a table or JSON-lines stream (no roles yet)."""
    if fmt in ("tsv", "csv"):
        reader = csv.DictReader(lines, delimiter="\t" if fmt == "tsv" else ",",
                                quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
        try:
            for row in reader:
                if None in row:
                    raise BertctlError(f"{source} line {reader.line_num}: more fields than the header has",
                                       fix="look for a stray delimiter on that line")
                yield row
        except csv.Error as e:
            raise BertctlError(f"{source} line {reader.line_num}: {e}", fix="fix the quoting on that line") from None
        return
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BertctlError(f"{source} line {n}: not JSON ({e.msg})", fix="give one JSON object per line") from None
        if not isinstance(row, dict):
            raise BertctlError(f"{source} line {n}: a JSON {type(row).__name__}, not an object",
                               fix='give one object per line, e.g. {"text": "..."}')
        yield row


def input_roles() -> list[str]:
    """Every role some kind reads from `bertctl predict` input (what --column may name)."""
    from bertctl.finetune.kinds import KINDS

    return sorted({r for t in KINDS.values()
                   for r in (*t.inputs, *t.input_extras, *(["text_pair"] if t.pair != "never" else []))})


def column_map(task, columns: dict, available: list[str], source: str) -> dict[str, str]:
    """role -> column of the input: the run's recipe mapping (or --column), else the
    task's default names; a missing required column names the available ones."""
    optional = [*(["text_pair"] if task.reads_pair(columns) and "text_pair" not in task.inputs else []),
                *task.input_extras]
    mapping = {}
    for role in [*task.inputs, *optional]:
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
    handle = open(path, encoding="utf-8", newline="") if path else (stdin or sys.stdin)
    try:
        if fmt == "text":
            pair = task.reads_pair(columns)
            for n, line in enumerate(handle, 1):
                yield task.read_line(line.rstrip("\r\n"), pair, n, source)
            return
        mapping = None
        for row in _records(handle, fmt, source):
            if mapping is None:
                mapping = column_map(task, columns, list(row), source)
            yield task.input_row({role: row.get(col) for role, col in mapping.items()})
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
        write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        n += len(part)
        if advance:
            advance(len(part))
    return n
