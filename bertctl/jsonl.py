"""JSON lines: the one reader and writer for every `.jsonl` file bertctl reads or writes.

    parse(lines, source)          (line number, value) for each non-blank line, lazily
    read_jsonl(path)              every object of a file, as a list
    append_jsonl(path, row)       one line added (the step log: metrics.jsonl)
    write_jsonl(path, rows)       a whole file, written atomically (runs.atomic_write_text)
    dumps_line(row)               one line's text (for a file the caller keeps open)

One rule for a damaged file: a torn LAST line (a process killed while appending it) is
skipped, and `on_torn` hears about it; a bad line anywhere else is an error naming the file
and line. Lines must be JSON objects unless `objects=False`. Ground floor: imports only
atomic.py and errors.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bertctl.atomic import atomic_write_text, disk_error
from bertctl.errors import BertctlError


class BadLine(BertctlError):
    """A line that is not JSON, or not an object: `number` and `reason` ("not JSON (...)",
    "a JSON list, not an object") for a reader that words its own input's errors."""

    def __init__(self, message: str, fix: str, number: int, reason: str):
        super().__init__(message, fix=fix)
        self.number, self.reason = number, reason


def dumps_line(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False, default=jsonable) + "\n"


def jsonable(o: Any) -> Any:
    """json.dumps' `default`: numpy/torch scalars as numbers, anything else (paths) as text."""
    return o.item() if hasattr(o, "item") else str(o)


def parse(lines: Iterable[str], source: str | Path, *, torn_last_line: str = "skip", objects: bool = True,
          on_torn: Callable[[str], None] | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line. `torn_last_line`: "skip" (a file a
    bertctl command appends to) or "error" (a user's input file, where a bad last line is a
    mistake to report, not a kill to forgive)."""
    pending = None  # a bad line is an error only once a line follows it
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if pending:
            raise pending
        try:
            value = json.loads(line)
        except ValueError as e:
            pending = _not_json(source, number, e)
            continue
        if objects and not isinstance(value, dict):
            raise BadLine(f"{source}: line {number} is a JSON {_type(value)}, not an object",
                          'write each line as an object, e.g. {"text": "...", "label": 1}', number,
                          f"a JSON {_type(value)}, not an object")
        yield number, value
    if pending:
        if torn_last_line != "skip":
            raise pending
        if on_torn:
            on_torn(f"{source}: skipped its last line, cut short (a process stopped while writing it)")


def _not_json(source, number: int, e: ValueError) -> BadLine:
    where = f" at column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
    return BadLine(f"{source}: line {number} is not valid JSON ({getattr(e, 'msg', e)}{where})",
                   "fix that line; JSON lines files hold exactly one JSON object per line", number,
                   f"not JSON ({getattr(e, 'msg', e)})")


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def read_jsonl(path: str | Path, *, torn_last_line: str = "skip", objects: bool = True, encoding: str = "utf-8",
               on_torn: Callable[[str], None] | None = None) -> list:
    """Every value of a JSON lines file (see `parse`); [] for a file that does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, encoding=encoding, errors="strict") as f:
            return [v for _, v in parse(f, path, torn_last_line=torn_last_line, objects=objects, on_torn=on_torn)]
    except UnicodeDecodeError as e:
        raise BertctlError(f"{path} is not {encoding} text ({e.reason} at byte {e.start})",
                           fix=f"save it as {encoding}") from None


def append_jsonl(path: str | Path, row: Any) -> None:
    """Add one line. A kill mid-append leaves at most a torn last line, which readers skip."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(dumps_line(row))
    except OSError as e:
        raise disk_error(Path(path), e) from None


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """The whole file, atomically: the old file or the new one, never half of one."""
    atomic_write_text(Path(path), "".join(dumps_line(r) for r in rows))
    return Path(path)
