"""Readers for the file formats users bring: GLUE TSVs, CSV/JSON(L) tables, CoNLL-U,
CoNLL-2003, SQuAD JSON and plain-text pretraining corpora.

Everything here returns plain Python lists of dicts (no torch, no pandas) so the
readers are cheap to import and easy to test. Every problem a user can fix in their
file raises `BertctlError` naming the file and, where it helps, the line or column;
raw `UnicodeDecodeError`/`csv.Error`/`JSONDecodeError`/`KeyError` never escape.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.jsonl import parse

# Long fields (whole documents in one cell) trip csv's 128 KiB default limit.
csv.field_size_limit(2**31 - 1)

_QUOTING = {"none": csv.QUOTE_NONE, "minimal": csv.QUOTE_MINIMAL}
_FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "json"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# The GLUE download script writes CoLA train/dev without a header row.
COLA_COLUMNS = ["source", "label", "original_label_mark", "sentence"]


# --------------------------------------------------------------------------- files


def check_path(path) -> Path:
    """A path that can be read: a broken symbolic link, a link loop or an unreadable
    path is an error saying which (pathlib's exists() says only "no")."""
    import errno
    import os

    path = Path(path)
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BertctlError(f"{path} is a loop of symbolic links", fix="point the link at a real file") from None
        if e.errno == errno.ENOENT and os.path.islink(path):
            raise BertctlError(f"{path} is a broken symbolic link (to {os.readlink(path)}, which does not exist)",
                               fix="point the link at an existing file, or pass the file itself") from None
        if e.errno == errno.ENOENT:
            raise BertctlError(f"{path}: no such file", fix="check the path") from None
        raise BertctlError(f"{path} cannot be read ({e.strerror or e})", fix="check the path and its permissions") from None
    return path


def _existing_file(path) -> Path:
    path = check_path(path)
    if not path.is_file():
        raise BertctlError(f"{path} is not a file" + (" but a folder" if path.is_dir() else ""),
                           fix="pass a file, not a folder" if path.is_dir() else "pass a regular file")
    return path


def _first_bad_line(path: Path, encoding: str) -> int | None:
    """Find the line of the first undecodable byte (only called on the error path)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError:
                return number
    return None


def _lines(path: Path, encoding: str = "utf-8", newline: str | None = None) -> Iterator[str]:
    """Stream a text file's lines, turning decode failures into a fixable error.

    UTF-8 is read as "utf-8-sig": some GLUE files (MRPC train/dev) start with a byte-order
    mark that would otherwise end up glued to the first column name.
    """
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        with open(path, encoding=codec, newline=newline) as f:
            yield from f
    except UnicodeDecodeError:
        line = _first_bad_line(path, codec)
        where = f" (line {line})" if line else ""
        raise BertctlError(
            f"{path} is not valid {encoding.upper()} text{where}",
            fix="re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`",
        ) from None


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    text = "".join(_lines(path, encoding, newline=""))
    if not text.strip():
        raise BertctlError(f"{path} is empty", fix="check the path or regenerate the file")
    return text


# -------------------------------------------------------------------------- tables


def read_table(
    path,
    *,
    fmt: str | None = None,
    header: bool | None = True,
    names: list[str] | None = None,
    quoting: str | None = None,
    encoding: str = "utf-8",
) -> list[dict]:
    """Read a .tsv/.csv/.jsonl/.json file into a list of row dicts.

    fmt: "tsv" | "csv" | "jsonl" | "json"; by default taken from the file extension.
    header: True = first row names the columns; False = no header row; None = guess
      (a header row is one whose cells are not numbers where the data below are).
    names: column names to use instead of (header=True) or in the absence of
      (header=False) a header row. Without names or header, columns are "0", "1", ...
    quoting: "none" (default for TSV: GLUE files contain bare `"` inside fields, see
      MRPC) or "minimal" (default for CSV: standard RFC-4180 quoting).
    Values are kept as strings for TSV/CSV so nothing is guessed; see check_label_types.
    """
    path = _existing_file(path)
    fmt = fmt or _FORMATS.get(path.suffix.lower())
    if fmt in ("jsonl", "json"):
        return read_jsonl(path, encoding=encoding) if fmt == "jsonl" else _read_json_rows(path, encoding)
    if fmt not in ("tsv", "csv"):
        raise BertctlError(
            f"{path}: cannot tell the file format from its extension",
            fix="use .tsv, .csv, .jsonl or .json, or pass the format explicitly",
        )
    quoting = quoting or ("none" if fmt == "tsv" else "minimal")
    if quoting not in _QUOTING:
        raise BertctlError(f"unknown quoting {quoting!r}", fix="use 'none' or 'minimal'")
    reader = csv.reader(
        _lines(path, encoding, newline=""),
        delimiter="\t" if fmt == "tsv" else ",",
        quoting=_QUOTING[quoting],
    )
    try:
        rows = [(reader.line_num, row) for row in reader if row]  # skip blank lines
    except csv.Error as e:
        raise BertctlError(
            f"{path}: line {reader.line_num}: {e}",
            fix="fix the quoting on that line, or try the other quoting mode",
        ) from None
    if not rows:
        raise BertctlError(f"{path} is empty", fix="check the path or regenerate the file")

    if header is None:
        header = _looks_like_header(rows[0][1], [r for _, r in rows[1:50]])
    columns = [c.strip().lstrip("\ufeff") for c in rows[0][1]] if header else None
    if names is not None:
        columns = list(names)
    if columns is None:
        columns = [str(i) for i in range(len(rows[0][1]))]
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise BertctlError(
            f"{path}: duplicate column name(s) {', '.join(duplicates)}",
            fix="give every column a distinct name in the header row",
        )
    data = rows[1:] if header else rows
    if not data:
        raise BertctlError(f"{path} has a header but no rows", fix="check the path or regenerate the file")
    out = []
    for line, row in data:
        if len(row) != len(columns):
            raise BertctlError(
                f"{path}: line {line} has {len(row)} fields but {len(columns)} columns are expected "
                f"({', '.join(columns)})",
                fix=f"look for a stray delimiter or quote there (quoting is {quoting!r}; GLUE TSVs need 'none')",
            )
        out.append(dict(zip(columns, row)))
    return out


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) or (isinstance(value, str) and bool(_NUMBER.match(value.strip())))


def _looks_like_header(first: list[str], rest: list[list[str]]) -> bool:
    """Same idea as csv.Sniffer.has_header without its delimiter guessing: a cell that
    is text above a column of numbers votes "header", a number there votes "data".
    All-text columns give no evidence; then assume a header, the common case."""
    votes = 0
    for i, cell in enumerate(first):
        column = [row[i] for row in rest if i < len(row)]
        if column and all(_is_number(v) for v in column):
            votes += -1 if _is_number(cell) else 1
    return votes >= 0


def read_jsonl(path, *, encoding: str = "utf-8") -> list[dict]:
    """One JSON object per line; blank lines are ignored. Errors name the line."""
    path = _existing_file(path)
    rows = [row for _, row in parse(_lines(path, encoding), path, torn_last_line="error")]
    if not rows:
        raise BertctlError(f"{path} is empty", fix="check the path or regenerate the file")
    return rows


def _read_json_rows(path: Path, encoding: str) -> list[dict]:
    """A .json table: a list of objects, or {"data": [...]}. `datasets.Dataset.to_json`
    writes JSON *lines* under a .json name, so "extra data" falls back to JSONL."""
    data = _load_json(path, encoding, jsonl_fallback=True)
    if data is None:
        return read_jsonl(path, encoding=encoding)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise BertctlError(
            f"{path}: expected a list of objects (or {{\"data\": [...]}})",
            fix="write the table as JSON lines, one object per line",
        )
    if not data:
        raise BertctlError(f"{path} holds no rows", fix="check the path or regenerate the file")
    return data


def _load_json(path: Path, encoding: str, jsonl_fallback: bool = False):
    text = _read_text(path, encoding)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if jsonl_fallback and e.msg == "Extra data":
            return None
        raise BertctlError(
            f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg})",
            fix="fix the file; a truncated download is a common cause",
        ) from None


def read_glue_tsv(path, task: str | None = None) -> list[dict]:
    """Read a GLUE TSV exactly as the GLUE download script writes it.

    Only CoLA breaks the "first row is the header" rule: its train/dev files have no
    header (columns COLA_COLUMNS) while its test.tsv has one ("index", "sentence").
    The task defaults to the name of the file's folder (e.g. glue/CoLA/dev.tsv).
    """
    path = _existing_file(path)
    task = (task or path.parent.name).lower()
    if task == "cola":
        first = next(_lines(path), "")
        if first.split("\t")[0].strip().lower() != "index":
            return read_table(path, fmt="tsv", header=False, names=COLA_COLUMNS)
    return read_table(path, fmt="tsv", header=True)


def require_columns(rows: list[dict], columns: Iterable[str], path) -> None:
    """Fail early, and helpfully, when a configured column is not in the data."""
    columns = list(columns)
    available = list(rows[0]) if rows else []
    for number, row in enumerate(rows, 1):
        missing = [c for c in columns if c not in row]
        if missing:
            where = "" if number == 1 else f" in row {number}"
            raise BertctlError(
                f"{path}: missing column(s) {', '.join(map(repr, missing))}{where}; "
                f"available columns: {', '.join(map(repr, available))}",
                fix="pick column names from the available ones",
            )


# ------------------------------------------------------------------------- tagging


def read_conllu(path, tag_column: str = "upos", *, encoding: str = "utf-8") -> list[dict]:
    """Read a CoNLL-U treebank into [{"tokens": [...], "tags": [...]}] per sentence.

    Multiword-token ranges ("1-2  don't") and empty nodes ("8.1") are skipped: the
    syntactic words under the range carry the tags, and empty nodes are not in the text.
    """
    path = _existing_file(path)
    field = {"upos": 3, "xpos": 4}.get(tag_column)
    if field is None:
        raise BertctlError(f"unknown CoNLL-U tag column {tag_column!r}", fix="use 'upos' or 'xpos'")
    sentences, tokens, tags = [], [], []
    for number, line in enumerate(_lines(path, encoding), 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise BertctlError(
                f"{path}: line {number} has {len(cols)} tab-separated fields, CoNLL-U needs 10",
                fix="check the file is CoNLL-U (tabs, not spaces), or use the CoNLL reader",
            )
        if "-" in cols[0] or "." in cols[0]:
            continue
        tokens.append(cols[1])
        tags.append(cols[field])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    if not sentences:
        raise BertctlError(f"{path} holds no sentences", fix="check the path or regenerate the file")
    return sentences


def looks_like_conll(path, lines: int = 20) -> bool:
    """Whether a file of unknown extension (CoNLL's own names: eng.train, esp.testa) is
    CoNLL: its first lines are -DOCSTART- or token lines of 2+ columns ending in an
    IOB tag (O, B-X, I-X)."""
    from bertctl.metrics import is_iob_tag

    seen = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                cols = line.split()
                if not cols:
                    continue
                if cols[0] == "-DOCSTART-":
                    return True
                if len(cols) < 2 or not is_iob_tag(cols[-1]):
                    return False
                seen += 1
                if seen >= lines:
                    break
    except OSError:
        return False
    return seen > 0


def read_conll(path, token_col: int = 0, tag_col: int = -1, *, encoding: str = "utf-8") -> list[dict]:
    """Read CoNLL-2003-style files (word POS chunk NER) and CoNLL-2002's three columns
    (word POS NER): whitespace-separated columns, one token per line, the tag last, blank
    lines between sentences, "-DOCSTART-" lines marking documents (skipped)."""
    path = _existing_file(path)
    sentences, tokens, tags = [], [], []
    for number, line in enumerate(_lines(path, encoding), 1):
        cols = line.split()
        if not cols or cols[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        try:
            token, tag = cols[token_col], cols[tag_col]
        except IndexError:
            raise BertctlError(
                f"{path}: line {number} has {len(cols)} columns; token column {token_col} "
                f"and tag column {tag_col} do not both exist",
                fix="fix that line or choose other token/tag columns",
            ) from None
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    if not sentences:
        raise BertctlError(f"{path} holds no sentences", fix="check the path or regenerate the file")
    return sentences


# ---------------------------------------------------------------------------- SQuAD


def misplaced_answer(context: str, text, start) -> str | None:
    """Why an answer is not where answer_start says (None when it is). A misplaced
    answer_start (often a byte offset, or an offset into a differently cleaned context)
    would silently train on the wrong span."""
    if isinstance(text, str) and isinstance(start, int) and not isinstance(start, bool) and start >= 0 \
            and context[start:start + len(text)] == text:
        return None
    found = context.find(text) if isinstance(text, str) and text else -1
    where = f" (the text occurs at character {found})" if found >= 0 else ""
    return f"answer {text!r} is not at answer_start {start!r} in its context{where}"


def first_misplaced(context: str, texts, starts) -> str | None:
    """Why the first misplaced answer of a question is not at its answer_start (None: all fit)."""
    return next(filter(None, (misplaced_answer(context, t, s) for t, s in zip(texts, starts))), None)


def settle_bad_answers(source, problems: list[tuple[str, str]], dropped: list | None) -> None:
    """Raise for the misplaced answers found, or (data.on_bad_rows=skip: a `dropped` list)
    record their question ids there."""
    if dropped is not None:
        dropped.extend(q for q, _ in problems)
    elif problems:
        raise bad_answers_error(source, problems)


def bad_answers_error(source, problems: list[tuple[str, str]]) -> BertctlError:
    """All misplaced answers of a file in one line: the count and the first few ids."""
    qid, why = problems[0]
    more = ""
    if len(problems) > 1:
        others = ", ".join(q for q, _ in problems[1:6]) + (", ..." if len(problems) > 6 else "")
        more = f" ({len(problems)} questions in all have a misplaced answer: also {others})"
    return BertctlError(f"{source}: question {qid}: {why}{more}",
                        fix="fix answer_start (a character offset into the context) or the answer text, "
                            "or drop such questions with data.on_bad_rows=skip")


def read_squad(path, *, encoding: str = "utf-8", dropped: list | None = None) -> list[dict]:
    """Flatten SQuAD v1.1/v2.0 JSON into one dict per question.

    Answers come back as {"text": [...], "answer_start": [...]} (the `datasets` layout),
    with the article's "title" (so a split can keep an article on one side). Each answer
    is checked against its context; misplaced ones are reported all at once, or, when a
    `dropped` list is given, their questions are left out and their ids appended to it.
    v1.1 has no is_impossible; it defaults to False.
    """
    path = _existing_file(path)
    data = _load_json(path, encoding)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise BertctlError(
            f'{path}: not SQuAD JSON (expected an object with a "data" list)',
            fix="pass a SQuAD v1.1 or v2.0 file such as dev-v2.0.json",
        )
    out, seen, qid, bad = [], set(), None, []
    try:
        for a, article in enumerate(data["data"]):
            title = str(article.get("title", f"article {a + 1}"))
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    qid = qa.get("id") if isinstance(qa, dict) else None
                    row = _squad_question(path, qa, context, seen)
                    why = first_misplaced(context, row["answers"]["text"], row["answers"]["answer_start"])
                    if why is None:
                        out.append({**row, "title": title})
                    else:
                        bad.append((str(qid), why))
    except (KeyError, TypeError, AttributeError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else "a field of the wrong type"
        where = f" at question {qid}" if qid is not None else ""
        raise BertctlError(
            f"{path}: malformed SQuAD entry{where}: {what}",
            fix="each article needs paragraphs, each paragraph context and qas, "
            "each question id, question and answers (text, answer_start)",
        ) from None
    settle_bad_answers(path, bad, dropped)
    if not out:
        raise BertctlError(f"{path} holds no questions" + (f" with well-placed answers ({len(bad)} dropped)" if bad else ""),
                           fix="check the path or regenerate the file")
    return out


def _squad_question(path: Path, qa: dict, context: str, seen: set) -> dict:
    qid = qa["id"]
    if qid in seen:
        raise BertctlError(f"{path}: question id {qid} appears twice", fix="give every question a unique id")
    seen.add(qid)
    question, impossible = qa["question"], bool(qa.get("is_impossible", False))
    texts, starts = [], []
    for answer in qa["answers"]:
        text, start = answer["text"], answer["answer_start"]
        texts.append(text)
        starts.append(start)
    if impossible and texts:
        raise BertctlError(
            f"{path}: question {qid} is marked is_impossible but has answers",
            fix="empty its answers (SQuAD 2.0 keeps them in plausible_answers) or unmark it",
        )
    if not impossible and not texts:
        raise BertctlError(
            f"{path}: question {qid} has no answers",
            fix='add an answer, or set "is_impossible": true (SQuAD 2.0)',
        )
    return {
        "id": qid,
        "question": question,
        "context": context,
        "answers": {"text": texts, "answer_start": starts},
        "is_impossible": impossible,
    }


# ---------------------------------------------------------------------- pretraining


def read_text_documents(path_or_dir, *, encoding: str = "utf-8") -> Iterator[list[str]]:
    """Yield documents (lists of non-blank, stripped lines) from a text file or a folder
    of .txt files (recursively, in sorted order). Blank lines and file ends separate
    documents, as in BERT's create_pretraining_data.py.

    This streams: only the current document is in memory, so corpora larger than RAM
    work (as long as each single document fits). Path problems are raised here, at call
    time, not at the first next().
    """
    path = Path(path_or_dir)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise BertctlError(f"{path} contains no .txt files", fix="point at a text file or a folder of .txt files")
    else:
        files = [_existing_file(path)]
    return _documents(path, files, encoding)


def _documents(root: Path, files: list[Path], encoding: str) -> Iterator[list[str]]:
    found = False
    for file in files:
        document = []
        for line in _lines(file, encoding):
            line = line.strip()
            if line:
                document.append(line)
            elif document:
                found = True
                yield document
                document = []
        if document:
            found = True
            yield document
    if not found:
        raise BertctlError(f"{root} holds no text", fix="check the path; the file(s) are empty")


# -------------------------------------------------------------------------- labels


def drop_unlabelled(rows: list[dict], column: str, bad=frozenset({"-", ""})) -> tuple[list[dict], int]:
    """Drop rows whose label is missing or a no-label marker (SNLI uses "-" where the
    annotators reached no consensus); return the kept rows and how many were dropped."""
    kept = [
        r for r in rows
        if r.get(column) is not None and not (isinstance(r[column], str) and r[column].strip() in bad)
    ]
    return kept, len(rows) - len(kept)


def check_label_types(labels: Iterable, path) -> str:
    """Refuse a label column that mixes numbers and text (usually a stray header row or
    a shifted column); return "number" or "text" for the caller to act on."""
    numbers, texts = [], []
    for label in labels:
        (numbers if _is_number(label) else texts).append(label)
    if numbers and texts:
        raise BertctlError(
            f"{path}: label column mixes numbers ({len(numbers)} rows, e.g. {numbers[0]!r}) "
            f"and text ({len(texts)} rows, e.g. {texts[0]!r})",
            fix="use only numbers (regression) or only class names (classification); "
            "check for a stray header row or a shifted column",
        )
    if not numbers and not texts:
        raise BertctlError(f"{path}: no labels found", fix="check the label column")
    return "number" if numbers else "text"


def _label_order(label):
    """Numbers sort numerically ("2" before "10"), everything else as text."""
    return (0, float(label), "") if _is_number(label) else (1, 0.0, str(label))


def build_label_list(train_labels: Iterable, dev_labels: Iterable | None, path_dev) -> list:
    """The label vocabulary, from the training labels only and sorted so ids are
    stable across runs; a dev label never seen in training can never be predicted,
    so it is an error naming the dev file."""
    labels = sorted(set(train_labels), key=_label_order)
    if not labels:
        raise BertctlError("the training data has no labels", fix="check the label column")
    unseen = sorted(set(dev_labels or ()) - set(labels), key=_label_order)
    if unseen:
        shown = ", ".join(map(repr, unseen[:5])) + (" ..." if len(unseen) > 5 else "")
        raise BertctlError(
            f"{path_dev}: label(s) {shown} do not occur in the training data "
            f"(training labels: {', '.join(map(repr, labels[:20]))})",
            fix="fix the dev labels or check both files use the same label column",
        )
    return labels
