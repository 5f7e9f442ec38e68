"""Run folders: where a command writes everything, never silently overwriting anything.

Layout of a run folder:

    recipe.yaml        the resolved recipe (after overrides)
    log.txt            what was printed, with timestamps
    metrics.jsonl      one line per logged step (step, loss, lr, tokens/s, ...)
    metrics.json       final metrics
    checkpoints/step-000200/   model.safetensors, optimizer.safetensors, state.json
    model/             final model in Hugging Face format (safetensors + tokenizer)

Every file is written to a temporary name and moved into place with `os.replace`, and a
checkpoint folder is renamed into place only once complete, so a `kill -9` at any moment
leaves either the old state or the new one, never half of one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bertctl.errors import BertctlError

CHECKPOINTS = "checkpoints"


def _disk_error(path: Path, e: OSError) -> BertctlError:
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
        raise _disk_error(path, e) from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the only one that writes files and prints."""
    return int(os.environ.get("RANK", "0")) == 0


class Run:
    """One run folder. Only the main process writes; other ranks get a no-op view."""

    def __init__(self, path: Path, command: str, main: bool = True):
        self.path = Path(path)
        self.command = command
        self.main = main

    # -------------------------------------------------------------------- creation
    @classmethod
    def create(cls, out: str | Path | None, command: str, resume: bool = False) -> "Run":
        main = is_main_process()
        if out is None:
            if resume:
                raise BertctlError("--resume needs the run folder", fix=f"pass --out runs/{command}-... of the run to continue")
            out = default_folder(command)
        path = Path(out)
        if resume:
            if not path.is_dir():
                raise BertctlError(f"cannot resume: {path} does not exist", fix="pass the --out folder of an earlier run")
        elif main and path.exists() and (not path.is_dir() or _holds_results(path)):
            # rank 0 only: under torchrun it may already have filled the folder when another rank looks
            raise BertctlError(f"run folder {path} already exists and is not empty",
                               fix="pass --resume to continue it, or choose another --out")
        if main:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _disk_error(path, e) from None
        return cls(path, command, main)

    # ---------------------------------------------------------------------- files
    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        if self.main:
            write_json(self.path / name, obj)
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        if self.main:
            atomic_write_text(self.path / name, text)
        return self.path / name

    def log(self, message: str) -> None:
        if not self.main:
            return
        with open(self.path / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{datetime.now().isoformat(timespec='seconds')} {message}\n")

    def log_metrics(self, row: dict) -> None:
        if not self.main:
            return
        try:
            with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row, default=_json_default) + "\n")
        except OSError as e:
            raise _disk_error(self.path / "metrics.jsonl", e) from None

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop lines logged after the checkpoint so the log reads as one run."""
        path = self.path / "metrics.jsonl"
        if not self.main or not path.exists():
            return
        keep = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= after_step]
        atomic_write_text(path, "".join(line + "\n" for line in keep))

    def metrics_history(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    # ---------------------------------------------------------------- checkpoints
    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first. Temporary (half-written) folders are ignored."""
        root = self.path / CHECKPOINTS
        if not root.is_dir():
            return []
        done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / "state.json").exists()]
        return sorted(done, key=lambda p: int(p.name.split("-")[1]))

    def latest_checkpoint(self) -> Path | None:
        ckpts = self.checkpoints()
        return ckpts[-1] if ckpts else None

    def new_checkpoint_dir(self, step: int) -> Path:
        """A temporary folder to fill; `commit_checkpoint` renames it into place."""
        root = self.path / CHECKPOINTS
        tmp = root / f".tmp-step-{step:07d}-{os.getpid()}"
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                tmp.mkdir(parents=True)
            except OSError as e:
                raise _disk_error(tmp, e) from None
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, keep: int | None = None) -> Path:
        final = self.path / CHECKPOINTS / f"step-{step:07d}"
        if not self.main:
            return final
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step after a resume: replace it whole
            old = final.with_name(f".old-{final.name}-{time.time_ns()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
        # clear leftovers of runs killed mid-write
        for stale in final.parent.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if keep:
            for old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return final


def _new_folder_name(command: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / f"{command}-{stamp}"
    n = 1
    while out.exists():  # two runs in the same second get distinct folders
        n += 1
        out = Path("runs") / f"{command}-{stamp}-{n}"
    return out


def default_folder(command: str) -> Path:
    """runs/<command>-<time>. Under torchrun/accelerate rank 0 picks the name and sends it
    to the other ranks: each computing its own would give different times (and folders)
    as soon as the processes start a second apart."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _new_folder_name(command)
    from accelerate.utils import broadcast_object_list

    from bertctl.train import process_state

    process_state()  # starts the process group if nothing did yet
    name = [str(_new_folder_name(command)) if is_main_process() else None]
    broadcast_object_list(name, from_process=0)
    return Path(name[0])


STARTED = {"recipe.yaml", "log.txt"}  # what a command writes into its folder before any result


def _holds_results(path: Path) -> bool:
    """Whether a run folder holds anything to protect. A command that stopped on bad input
    before producing anything (say, a model path that is not a model) leaves only its
    recipe.yaml, log.txt and empty files: rerunning the corrected command into the same
    --out must work, not fail with 'already exists'."""
    return any(p.is_file() and p.name not in STARTED and p.stat().st_size > 0 for p in path.rglob("*"))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        for child in Path(path).iterdir():
            if child.is_file():
                with open(child, "rb") as f:
                    os.fsync(f.fileno())
        os.fsync(fd)
    finally:
        os.close(fd)
