"""Files written whole: to a temporary name, then moved into place with `os.replace`, so a
`kill -9` at any moment leaves the old file or the new one, never half of one. Ground
floor (imports only errors.py); runs.py and jsonl.py write through it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from bertctl.errors import BertctlError


def disk_error(path: Path, e: OSError) -> BertctlError:
    if e.errno == errno.ENOSPC:
        return BertctlError(f"disk full while writing {path}", fix="free some space (earlier files are intact) and rerun with --resume")
    return BertctlError(f"cannot write {path}: {e.strerror or e}", fix="check the folder's permissions and free space")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise disk_error(path, e) from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
