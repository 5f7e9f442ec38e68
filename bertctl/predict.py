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
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bertctl.errors import BertctlError

CHUNK = 4096  # rows in memory at once (with their features and outputs)
FORMATS = ("auto", "tsv", "csv", "jsonl", "text")
# roles each kind reads from input: required, then optional
ROLES = {"cls": (["text"], ["text_pair"]), "dna": (["text"], []), "nli": (["text", "text_pair"], []),
         "regression": (["text"], ["text_pair"]), "tag": (["tokens"], []), "qa": (["question", "context"], ["id"])}


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


def _qa_version_2(recipe, run_dir: Path) -> bool:
    """Whether the run answers "no answer": the recipe says so, or its dev set had
    unanswerable questions (training decided from its data the same way)."""
    if recipe.qa.version_2 is not None:
        return recipe.qa.version_2
    path = run_dir / "predictions_dev.jsonl"
    if not path.exists():
        return False
    with open(path, encoding="utf-8") as f:
        return any(json.loads(line).get("gold") == [] for line in f if line.strip())


@dataclass
class Predictor:
    kind: str
    task: object
    tokenizer: object
    model: object
    precision: str
    batch_size: int
    version_2: bool = False
    source: str = ""

    @classmethod
    def load(cls, path, batch_size: int | None = None, precision: str | None = None) -> "Predictor":
        from bertctl.models import ModelSource, load_tokenizer
        from bertctl.runs import read_json
        from bertctl.finetune import methods
        from bertctl.finetune.base import get_task
        from bertctl.finetune.run import load_run_recipe

        run_dir, model_dir = find_run(path)
        recipe = load_run_recipe(run_dir, [])
        labels_path = run_dir / "labels.json"
        labels = read_json(labels_path) if labels_path.exists() else None
        task = get_task(recipe.kind)(recipe, labels)
        methods.quiet_transformers()
        tokenizer = load_tokenizer(ModelSource(str(model_dir), "local", str(model_dir)), recipe.model.trust_remote_code)
        task.setup(tokenizer)
        model = methods.load_trained(model_dir, recipe, task)
        if recipe.method == "lora" and methods.is_adapter(model_dir):
            model = model.merge_and_unload()  # same function, one matmul per layer fewer
        model.eval()
        task.fit_length(tokenizer, model.config)
        if task.labels is None and recipe.kind not in ("qa", "regression"):
            raise BertctlError(f"{run_dir} has no labels.json", fix="re-run the fine-tuning")
        version_2 = _qa_version_2(recipe, run_dir) if recipe.kind == "qa" else False
        return cls(recipe.kind, task, tokenizer, model, precision or recipe.train.precision,
                   batch_size or recipe.eval_batch_size, version_2, str(run_dir))

    # ------------------------------------------------------------------ one chunk
    def predict(self, rows: list[dict], first_index: int = 0) -> list[dict]:
        """One output record per row (role-keyed rows, see read_rows), in row order."""
        from bertctl.finetune.base import batched_outputs
        from bertctl.finetune.run import inference

        if self.kind == "qa":
            rows = [{**r, "id": str(r.get("id", first_index + i))} for i, r in enumerate(rows)]
        features = self.task.encode(self.tokenizer, rows, train=False)
        names = ("start_logits", "end_logits") if self.kind == "qa" else ("logits",)
        with inference(self.model, self.precision):
            outputs = batched_outputs(self.model, features, self.task.collate, self.batch_size, names,
                                      per_token=self.kind in ("tag", "qa"))
        if self.kind == "qa":
            return self._answers(rows, features, outputs, first_index)
        out = []
        for i, (row, feature, o) in enumerate(zip(rows, features, outputs)):
            record = {"index": first_index + i}
            if self.kind == "regression":
                record["value"] = round(float(o[0][0]), 5)
            elif self.kind == "tag":
                record.update(self._tags(row["tokens"], feature, o[0]))
            else:
                probs = o[0].softmax(-1).tolist()
                best = max(range(len(probs)), key=probs.__getitem__)
                record["label"] = self.task.labels[best]
                record["probabilities"] = {l: round(p, 6) for l, p in zip(self.task.labels, probs)}
            out.append(record)
        return out

    def _tags(self, tokens: list[str], feature: dict, logits) -> dict:
        ids = logits.argmax(-1).tolist()
        fallback = self.task.fallback()  # words cut off by max_length
        tags = [self.task.labels[ids[p]] if p >= 0 else fallback for p in feature["first"]]
        record = {"tokens": tokens, "tags": tags}
        if any(l.startswith(("B-", "I-")) for l in self.task.labels):
            record["entities"] = entities(tokens, tags)
        return record

    def _answers(self, rows, features, outputs, first_index: int) -> list[dict]:
        from bertctl.finetune import qa

        q = self.task.recipe.qa
        nbest = qa.decode_nbest(rows, features, [o[0] for o in outputs], [o[1] for o in outputs],
                                q.max_answer_length, q.n_best)
        out = []
        for i, row in enumerate(rows):
            r = nbest[row["id"]]
            top = r["candidates"][0] if r["candidates"] else None
            record = {"index": first_index + i, "id": row["id"]}
            if top is None or (self.version_2 and r["null_score"] > top["score"] + q.null_threshold):
                record.update(answer="", start=None, end=None, score=_finite(r["null_score"]))
            else:
                record.update(answer=top["text"], start=top["start"], end=top["end"], score=round(top["score"], 5))
            if self.version_2:
                record["null_score"] = _finite(r["null_score"])
            out.append(record)
        return out


def _finite(x) -> float | None:
    return round(float(x), 5) if x is not None and math.isfinite(x) else None


def entities(tokens: list[str], tags: list[str]) -> list[dict]:
    """BIO tags -> spans {"type", "start", "end" (word indices, end exclusive), "text"}.
    An I- tag that does not continue a span of its type starts one (as seqeval does)."""
    spans, current = [], None
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, kind = tag.partition("-")
        continues = current is not None and prefix == "I" and kind == current["type"]
        if current is not None and not continues:
            current["end"] = i
            current["text"] = " ".join(tokens[current["start"]:i])
            spans.append(current)
            current = None
        if prefix in ("B", "I") and kind and not continues:
            current = {"type": kind, "start": i}
    return spans


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


def _plain(lines: Iterable[str], kind: str, source: str, pair: bool) -> Iterator[dict]:
    """Plain text: one example per line; a pair (nli, and runs trained on pairs) as two
    tab-separated fields. Tagging splits each line into words at whitespace."""
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if kind == "tag":
            yield {"tokens": line.split()}
            continue
        if not pair:
            yield {"text": line}
            continue
        fields = line.split("\t")
        if len(fields) > 2 or len(fields) == 1 and kind != "regression":
            raise BertctlError(f"{source} line {n} has {len(fields)} tab-separated field(s); this {kind} run "
                               "takes two texts separated by one tab", fix="put one pair per line: TEXT<TAB>TEXT")
        yield {"text": fields[0], **({"text_pair": fields[1]} if len(fields) == 2 else {})}


def column_map(kind: str, columns: dict, available: list[str], source: str) -> dict[str, str]:
    """role -> column of the input: the run's recipe mapping (or --column), else the
    task's default names; a missing required column names the available ones."""
    from bertctl.finetune.data import DEFAULT_COLUMNS

    required, optional = ROLES[kind]
    mapping = {}
    for role in required + optional:
        if role == "text_pair" and kind == "cls" and not columns.get(role):
            continue  # cls reads a second text only when its recipe mapped one
        chosen = columns.get(role)
        if chosen is None:
            chosen = next((c for c in DEFAULT_COLUMNS[kind].get(role, [role]) if c in available), None)
        if chosen in available:
            mapping[role] = chosen
        elif role in required or columns.get(role):
            tried = chosen or " / ".join(DEFAULT_COLUMNS[kind].get(role, [role]))
            raise BertctlError(f"{source}: no column {tried!r} for the {role} of a {kind} example; "
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
    if kind == "qa" and fmt == "text":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise BertctlError(f"unknown input format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")
    if path is not None and not Path(path).is_file():
        raise BertctlError(f"{path}: no such file", fix="check the path, or pipe the input on stdin")
    return _iter_rows(path, kind, columns or {}, fmt, stdin)


def _iter_rows(path, kind: str, columns: dict, fmt: str, stdin) -> Iterator[dict]:
    source = str(path) if path else "stdin"
    handle = open(path, encoding="utf-8", newline="") if path else (stdin or sys.stdin)
    try:
        if fmt == "text":
            pair = kind in ("nli", "regression") or kind == "cls" and bool(columns.get("text_pair"))
            yield from _plain(handle, kind, source, pair)
            return
        mapping = None
        for row in _records(handle, fmt, source):
            if mapping is None:
                mapping = column_map(kind, columns, list(row), source)
            out = {role: row.get(col) for role, col in mapping.items()}
            if kind == "tag" and not isinstance(out["tokens"], list):
                out["tokens"] = str(out["tokens"] or "").split()
            if kind in ("cls", "dna", "nli", "regression"):
                out = {k: "" if v is None else str(v) for k, v in out.items()}
            yield out
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
