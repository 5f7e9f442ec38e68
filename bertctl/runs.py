"""Run folders: where a command writes everything, never silently overwriting anything.

Layout of a run folder:

    recipe.yaml        the resolved recipe (after overrides)
    log.txt            what was printed, with timestamps
    metrics.jsonl      one line per logged step (step, loss, lr, tokens/s, ...)
    metrics.json       final metrics
    checkpoints/step-000200/   model.safetensors, optimizer.safetensors, state.json
    model/             final model in Hugging Face format (safetensors + tokenizer)
    run.json           what the folder is: command, status (running/finished/failed),
                       times, fingerprints of the input files (checked on --resume), and
                       the precision the hardware resolved (`used`, `requested`, `reason`)
    .bertctl.lock      while a command runs: its pid and host (see `_acquire_lock`)

Every file is written to a temporary name and moved into place with `os.replace`, and a
checkpoint folder is renamed into place only once complete, so a `kill -9` at any moment
leaves either the old state or the new one, never half of one.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import os
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bertctl.distributed import is_main_process, process_state, world_size
from bertctl.errors import BertctlError

CHECKPOINTS = "checkpoints"
LOCK = ".bertctl.lock"
RECORD = "run.json"


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


class Run:
    """One run folder. Only the main process writes; other ranks get a no-op view."""

    def __init__(self, path: Path, command: str, main: bool = True):
        self.path = Path(path)
        self.command = command
        self.main = main
        self.created = False  # this process made the folder (a failed start may then remove it)
        self.started = False  # start() ran: training state may have changed since
        self.fresh = False  # a new run (not --resume): its run.json is this process's to update
        self._lock_fd: int | None = None
        self._facts: dict = {}  # see note()

    # -------------------------------------------------------------------- creation
    @classmethod
    def create(cls, out: str | Path | None, command: str, resume: bool = False) -> "Run":
        main = is_main_process()
        if out is None:
            if resume:
                raise BertctlError("--resume needs the run folder", fix=f"pass --out runs/{command}-... of the run to continue")
            out = default_folder(command)
        path = Path(out)
        run = cls(path, command, main)
        if resume:
            if not path.is_dir():
                raise BertctlError(f"cannot resume: {path} " + ("is a file" if path.exists() else "does not exist"),
                                   fix="pass the --out folder of an earlier run")
            recorded = run.recorded_command()
            if recorded and recorded != command:
                raise BertctlError(f"cannot resume {path}: it is a `bertctl {recorded}` run, not a {command} run",
                                   fix=f"continue it with `bertctl {recorded} ... --out {path} --resume`, "
                                       f"or pass the folder of a {command} run")
        elif main and path.exists() and not path.is_dir():
            raise BertctlError(f"run folder {path} is a file", fix="choose another --out")
        if not main:
            return run
        run.created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _disk_error(path, e) from None
        try:  # before anything else is read or written: a second command on the folder stops here
            run._lock_fd = _acquire_lock(run)
            if not resume and _holds_results(path):
                # rank 0 only: under torchrun it may already have filled the folder when another rank looks
                raise BertctlError(f"run folder {path} already exists and is not empty",
                                   fix="pass --resume to continue it, or choose another --out")
        except BaseException:
            run._release()
            raise
        _ACTIVE.append(run)
        run.fresh = not resume
        if not resume:
            run.write_record({"command": command, "status": "running", "started": _now(), "host": socket.gethostname()})
        return run

    # ---------------------------------------------------------------- the record
    def record(self) -> dict:
        """run.json (empty for folders written before it existed, or by another tool)."""
        try:
            data = read_json(self.path / RECORD)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_record(self, data: dict) -> None:
        if self.main:
            write_json(self.path / RECORD, data)

    def _update_record(self, **changes) -> None:
        self.write_record({**self.record(), **changes})

    def recorded_command(self) -> str | None:
        """The command that made this folder: run.json, else the `command:` of recipe.yaml."""
        command = self.record().get("command")
        if command:
            return str(command)
        recipe = self.path / "recipe.yaml"
        if recipe.is_file():
            for line in recipe.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("command:"):
                    return line.split(":", 1)[1].strip().strip("'\"") or None
        return None

    def finished(self) -> bool:
        """Whether the run completed: its final metrics.json and model/ are there, and
        run.json (when the folder has one: older ones do not) says it finished."""
        complete = (self.path / "metrics.json").is_file() and (self.path / "model").is_dir()
        record = self.record()
        return complete and (not record or record.get("status") == "finished")

    def keep_recipe(self, text: str, resume: bool, may_differ: tuple[str, ...] = ()) -> None:
        """Write recipe.yaml; on --resume, compare instead, before anything is written: a
        resumed run must continue the run that was started, not silently become another.
        `may_differ`: keys that only add work after training (finetune's merge)."""
        path = self.file("recipe.yaml")
        if resume and path.is_file():
            from bertctl.recipe import differing_keys

            keys = [k for k in differing_keys(path.read_text(encoding="utf-8"), text) if k not in may_differ]
            if keys:
                shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
                raise BertctlError(f"the recipe differs from the one {self.path} was started with (in {shown})",
                                   fix=f"resume with the same recipe and overrides (see {path}), "
                                       "or start a new run with another --out")
            return
        self.write_text("recipe.yaml", text)

    def start(self, inputs: dict[str, Path], resume: bool) -> None:
        """Training is about to (re)start: on --resume, refuse input files that changed
        since the run started; on a new run, record their fingerprints."""
        if resume:
            recorded = self.record().get("inputs") or {}
            changed = [f"{name} ({entry['path']}: {why})" for name, entry in recorded.items()
                       if (why := _changed(entry))]
            if changed:
                raise BertctlError(f"cannot resume {self.path}: input {'; '.join(changed)} changed since the run "
                                   "started", fix="restore the original file(s), or start a new run with another --out")
            # run.json is left as it is until the run finishes: a resume refused later
            # (a damaged checkpoint) must not have changed any file but log.txt
        else:
            self._update_record(inputs={name: fingerprint(p) for name, p in inputs.items()})
        self.started = True

    def note(self, **facts) -> None:
        """Facts learnt while running (e.g. the resolved precision) for run.json: written at
        once on a new run; on --resume at the end, as a refused resume changes only log.txt."""
        self._facts.update(facts)
        if self.fresh:
            self._update_record(**facts)

    def finish(self) -> None:
        """The run completed: say so in run.json and give the folder back."""
        self._update_record(**self._facts, status="finished", finished=_now())
        self._release()
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def close(self, error: BaseException | None) -> None:
        """End of the command (cli.Group.invoke). A run that failed at start, in a folder
        this process made, leaves no half-made folder behind; a run that failed later is
        marked failed, with the error line in log.txt. A refused --resume writes nothing."""
        try:
            if not self.main:
                return
            if error is None:
                if self.record().get("status") == "running":
                    self._update_record(**self._facts, status="finished", finished=_now())
                return
            line = error.line() if isinstance(error, BertctlError) else f"{type(error).__name__}: {error}"
            stopped = isinstance(error, KeyboardInterrupt) or getattr(error, "exit_code", 2) == 130
            if self.created and not stopped and not _holds_results(self.path):
                shutil.rmtree(self.path, ignore_errors=True)
            elif self.created or self.started:
                self.log(f"{'stopped' if stopped else 'failed'}: {line}")
                if self.fresh:  # a resumed run's run.json keeps what it said (see start)
                    self._update_record(status="interrupted" if stopped else "failed", error=line)
        except OSError:  # a full disk must not hide the error being reported
            pass
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            _release_lock(self.path, self._lock_fd)
            self._lock_fd = None

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


# ------------------------------------------------------------------------ the lock

_ACTIVE: list[Run] = []  # run folders this process holds, closed by cli.Group.invoke
_HELD: dict[str, tuple[int, int]] = {}  # folder -> (lock fd, users): one process may open a folder twice


def close_all(error: BaseException | None) -> None:
    """Release every run folder this process opened (newest first: a sub-run before its parent)."""
    while _ACTIVE:
        _ACTIVE.pop().close(error)


@atexit.register
def _release_at_exit() -> None:
    """A library caller (no CLI around it) that never closed its runs: unlock them, and
    leave their run.json as it is (the process may have stopped anywhere)."""
    while _ACTIVE:
        _ACTIVE.pop()._release()


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def _holder(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "a process that left no details"
    return (f"`bertctl {holder.get('command', '?')}`, pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"since {holder.get('since', '?')}")


def _acquire_lock(run: Run) -> int:
    """An exclusive lock on the run folder for the whole command: `.bertctl.lock` holds
    the owner's pid and host, and the owner keeps an flock on it. The kernel drops the
    flock when the owner dies however it dies (kill -9, power loss), so a lock file
    whose flock can be taken is stale: it is taken over, with a note in the log. Under
    torchrun only rank 0 locks (the other ranks write nothing)."""
    import fcntl

    key = str(run.path.resolve())
    if key in _HELD:  # this process already holds it (a library caller opening the folder again)
        fd, users = _HELD[key]
        _HELD[key] = (fd, users + 1)
        return fd
    path = run.path / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _disk_error(path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise BertctlError(f"run folder {run.path} is in use by {_describe(holder)}",
                               fix="wait for that command to finish, or choose another --out") from None
        try:  # the owner may have released (and removed) the file between our open and our flock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _holder(fd)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": run.command, "since": _now()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(mine).encode("utf-8"), 0)
    _HELD[key] = (fd, 1)
    if stale:
        note = f"note: took over the lock of {_describe(stale)}, which is no longer running"
        run.log(note)
        from bertctl.console import say

        say(note, stderr=True, soft_wrap=True)
    return fd


def _release_lock(folder: Path, fd: int) -> None:
    key = str(folder.resolve()) if folder.exists() else next((k for k, v in _HELD.items() if v[0] == fd), "")
    fd_, users = _HELD.get(key, (fd, 1))
    if users > 1:
        _HELD[key] = (fd_, users - 1)
        return
    _HELD.pop(key, None)
    try:
        (folder / LOCK).unlink(missing_ok=True)  # before closing: nobody may take a file that is going away
    except OSError:
        pass
    os.close(fd)


# ------------------------------------------------------------------------ inputs


def fingerprint(path: Path) -> dict:
    """Size, modification time and SHA-256 of an input file (or of every file in a folder),
    streamed in 1 MiB blocks."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest, size, mtime = hashlib.sha256(), 0, 0
    for f in files:
        st = f.stat()
        size, mtime = size + st.st_size, max(mtime, st.st_mtime_ns)
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return {"path": str(path.resolve()), "size": size, "mtime_ns": mtime, "sha256": digest.hexdigest()}


def _changed(entry: dict) -> str | None:
    """Why a recorded input no longer matches, or None. Only a size or content change
    counts: a file merely touched (copied with a new mtime) holds the same data."""
    path = Path(entry["path"])
    if not path.exists():
        return "gone"
    if path.is_file() and (path.stat().st_size, path.stat().st_mtime_ns) == (entry["size"], entry["mtime_ns"]):
        return None  # untouched since: no need to read a large corpus again
    now = fingerprint(path)
    if now["size"] != entry["size"]:
        return f"{entry['size']:,} bytes then, {now['size']:,} now"
    if now["sha256"] != entry["sha256"]:
        return "same size, other content"
    return None


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
    if world_size() <= 1:
        return _new_folder_name(command)
    from accelerate.utils import broadcast_object_list

    process_state()  # starts the process group if nothing did yet
    name = [str(_new_folder_name(command)) if is_main_process() else None]
    broadcast_object_list(name, from_process=0)
    return Path(name[0])


STARTED = {"recipe.yaml", "log.txt", RECORD, LOCK}  # what a command writes into its folder before any result


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
