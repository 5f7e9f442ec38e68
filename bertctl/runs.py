"""Run folders: where a command writes everything, never silently overwriting anything.

Layout of a run folder:

    recipe.yaml        the resolved recipe (after overrides)
    log.txt            what was printed, with timestamps
    metrics.jsonl      one line per logged step (step, loss, lr, tokens/s, ...); see jsonl.py
    metrics.json       final metrics, one outer layout for every command (write_metrics /
                       read_metrics): schema, command, main_metric, main_value, scores by
                       split or file, steps, timings; the command's own detail beside them
    checkpoints/step-000200/   model.safetensors, optimizer.safetensors, state.json
    model/             final model in Hugging Face format (safetensors + tokenizer)
    run.json           what the folder is, the one source of it (read_record -> RunRecord):
                       schema, command, task/kind and model, status (running / finished /
                       failed / interrupted), times, fingerprints of the input files
                       (checked on --resume), the precision the hardware resolved
    .bertctl.lock      while a command runs: its pid and host, under an flock (`_acquire_lock`);
                       a run is live exactly while that flock is held

A folder is a run folder when it has run.json, or (written before run.json existed) a
recipe.yaml with a `command:` line; such an old folder's record is inferred in one place
(`read_record`) and says so.

Every file is written to a temporary name and moved into place with `os.replace`, and a
checkpoint folder is renamed into place only once complete, so a `kill -9` at any moment
leaves either the old state or the new one, never half of one.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bertctl.atomic import atomic_write_bytes, atomic_write_text, disk_error  # noqa: F401 (importable from here too)
from bertctl.distributed import is_main_process, process_state, world_size
from bertctl.errors import BertctlError
from bertctl.jsonl import append_jsonl, jsonable, read_jsonl, write_jsonl

CHECKPOINTS = "checkpoints"
LOCK = ".bertctl.lock"
RECORD = "run.json"
METRICS = "metrics.json"
SCHEMA = 1  # of run.json and metrics.json


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=jsonable) + "\n")


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
        self._held: list[str] | None = None  # a resumed run's log lines until it got going (see resumed())

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
            run._held = []  # log.txt is the run's own: nothing goes into it before the resume is known good
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
            raise disk_error(path, e) from None
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
            run.write_record({"schema": SCHEMA, "command": command, "status": "running", "started": _now(),
                              "host": socket.gethostname()})
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
        """The command that made this folder (see read_record)."""
        record = read_record(self.path)
        return record.command if record else None

    def finished(self) -> bool:
        """Whether the run completed: run.json says so (for an older folder: its final
        metrics.json is there) and its final model/ is there."""
        record = read_record(self.path)
        return (record is not None and record.recorded == "finished" and (self.path / METRICS).is_file()
                and (self.path / "model").is_dir())

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
            # run.json is left as it is until the run finishes, and log.txt until the
            # checkpoint has loaded (resumed): a resume refused later changes no file
        else:
            self._update_record(inputs={name: fingerprint(p) for name, p in inputs.items()})
        self.started = True

    def note(self, **facts) -> None:
        """Facts learnt while running (e.g. the resolved precision) for run.json: written at
        once on a new run; on --resume at the end, as a refused resume changes no file."""
        self._facts.update(facts)
        if self.fresh:
            self._update_record(**facts)

    def resumed(self) -> None:
        """A resumed run got going: its checkpoint loaded and was checked (train.fit), or
        there was nothing to load (the command says so). The log lines held since the
        command started go into log.txt now, in order, with the times they were said; from
        here on lines are written as they come. Until then a refused --resume (a damaged or
        mismatched checkpoint) leaves log.txt as it was: `close` drops the held lines, which
        were shown on the terminal already."""
        held, self._held = self._held, None
        if held and self.main:
            with open(self.path / "log.txt", "a", encoding="utf-8") as f:
                f.writelines(held)

    def finish(self) -> None:
        """The run completed: say so in run.json and give the folder back."""
        self.resumed()
        self._mark_finished()
        self._release()
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def _mark_finished(self) -> None:
        """run.json: finished now, with the facts noted; an error line from an earlier stop goes."""
        record = {k: v for k, v in self.record().items() if k != "error"}
        self.write_record({**record, **self._facts, "status": "finished", "finished": _now()})

    def close(self, error: BaseException | None) -> None:
        """End of the command (cli.Group.invoke). A run that failed at start, in a folder
        this process made, leaves no half-made folder behind; a run that failed later is
        marked failed, with the error line in log.txt. A refused --resume (one that failed
        before `resumed`) writes nothing: not even log.txt."""
        try:
            if not self.main:
                return
            if error is None:
                self.resumed()  # a resume that needed nothing loaded and finished (e.g. --resume --merge)
                # a command that calls no finish() (eval-glue): done; resumed, its record may say
                # how it stopped before (interrupted, failed)
                if self.record().get("status") in ("running", "interrupted", "failed"):
                    self._mark_finished()
                return
            if self._held is not None:  # a --resume refused before it got going: no file changes
                self._held = None
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
        """A line in log.txt, timestamped; on --resume held until `resumed`."""
        if not self.main:
            return
        line = f"{datetime.now().isoformat(timespec='seconds')} {message}\n"
        if self._held is not None:
            self._held.append(line)
            return
        with open(self.path / "log.txt", "a", encoding="utf-8") as f:
            f.write(line)

    def log_metrics(self, row: dict) -> None:
        if self.main:
            append_jsonl(self.path / "metrics.jsonl", row)

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop lines logged after the checkpoint so the log reads as one run
        (a line torn by the kill that stopped the run goes too)."""
        path = self.path / "metrics.jsonl"
        if self.main and path.exists():
            write_jsonl(path, [r for r in self.metrics_history() if _step(r) <= after_step])

    def metrics_history(self) -> list[dict]:
        """metrics.jsonl's rows (a torn last line skipped, see jsonl.py)."""
        return read_jsonl(self.path / "metrics.jsonl")

    # ---------------------------------------------------------------- checkpoints
    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first. Temporary (half-written) folders are ignored."""
        root = self.path / CHECKPOINTS
        if not root.is_dir():
            return []
        done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")
                and p.name[5:].isdigit() and (p / "state.json").exists()]
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
                raise disk_error(tmp, e) from None
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


def _step(row: dict) -> float:
    step = row.get("step", 0)
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else 0


# ------------------------------------------------------------------------ the record


@dataclass(frozen=True)
class RunRecord:
    """What a run folder is: run.json, read once, with the status it has now. For a folder
    from before run.json, inferred from recipe.yaml, metrics.json and checkpoints
    (`inferred`, and a line in `notes`)."""

    path: Path
    command: str
    status: str  # now: running (its lock is held), finished, failed or interrupted
    recorded: str  # what run.json says (a process killed while running left "running")
    task: str = ""  # the finetune task, pretraining objective, probe, GLUE tasks, prompt task
    kind: str = ""  # the finetune task kind
    model: str = ""
    precision: dict | None = None
    started: str = ""
    finished: str = ""
    error: str = ""  # the line a failed or stopped run ended with
    inputs: dict = field(default_factory=dict)
    schema: int = 0  # run.json's version (0: written before it had one)
    inferred: bool = False
    notes: tuple[str, ...] = ()


STATUSES = ("running", "finished", "failed", "interrupted")


def read_record(path: Path) -> RunRecord | None:
    """The record of a run folder; None when `path` is not one (not a folder, or neither
    run.json nor a recipe.yaml naming its command). Never raises for a damaged folder."""
    path = Path(path)
    try:
        if not path.is_dir():
            return None
    except OSError:
        return None
    data = _json_object(path / RECORD)
    inferred = not (data and data.get("command"))
    if inferred:
        command = _recipe_command(path)
        if not command:
            return None
        data = {"command": command, "status": "finished" if _json_object(path / METRICS) is not None else "running"}
        why = "run.json is unreadable" if (path / RECORD).exists() else "no run.json (a folder from an older bertctl)"
        notes = [f"{why}: its record is inferred from recipe.yaml, metrics.json and checkpoints"]
    else:
        notes = []
    recorded = str(data.get("status"))
    status = _status_now(path, recorded, notes)
    facts = {k: str(data.get(k) or "") for k in ("task", "kind", "model", "started", "finished", "error")}
    if not (facts["task"] and facts["model"]):  # written before run.json held them
        facts.update({k: v for k, v in _infer_facts(path, str(data["command"])).items() if not facts[k]})
    schema = data.get("schema")
    return RunRecord(path, str(data["command"]), status, recorded, **facts,
                     precision=data.get("precision") if isinstance(data.get("precision"), dict) else None,
                     inputs=data.get("inputs") if isinstance(data.get("inputs"), dict) else {},
                     schema=schema if isinstance(schema, int) else 0, inferred=inferred, notes=tuple(notes))


def _status_now(path: Path, recorded: str, notes: list[str]) -> str:
    """Live while the lock is held; a record left "running" (or "finished" without its
    metrics.json) by a process that is gone: interrupted when a checkpoint remains, in it
    or in a run inside it (`--resume` continues it), else failed."""
    if is_live(path):
        return "running"
    if recorded == "finished" and not (path / METRICS).exists():
        notes.append("run.json says finished, but metrics.json is gone")
    elif recorded in STATUSES and recorded != "running":
        return recorded
    elif recorded != "running":
        notes.append(f"run.json holds an unknown status {recorded!r}")
    return "interrupted" if _progress_kept(path) else "failed"


def _progress_kept(path: Path) -> bool:
    """A checkpoint in the folder, or a run inside it (eval-glue's TASK/seedN, compare-init's
    random-init/) that finished or holds one: what `--resume` continues from."""
    if Run(path, "?").latest_checkpoint():
        return True
    for sub in (*path.glob("*/" + RECORD), *path.glob("*/*/" + RECORD)):
        record = _json_object(sub) or {}
        if record.get("status") == "finished" or Run(sub.parent, "?").latest_checkpoint():
            return True
    return False


def is_live(path: Path) -> bool:
    """Whether a command holds the folder's lock now (the kernel drops the flock when its
    holder dies, however it dies: no clock, no pid guessing)."""
    import fcntl

    try:
        if str(Path(path).resolve()) in _HELD:
            return True
        fd = os.open(Path(path) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a shared flock taken just now
    return False


def _json_object(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_recipe(path: Path) -> tuple[str, dict]:
    """recipe.yaml of a run folder: its text (undecodable bytes replaced) and its mapping
    ({} when it is missing or not YAML)."""
    import yaml

    try:
        text = (Path(path) / "recipe.yaml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text, {}
    return text, data if isinstance(data, dict) else {}


def _recipe_command(path: Path) -> str | None:
    text, _ = read_recipe(path)
    for line in text.splitlines():
        if line.startswith("command:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


def _infer_facts(path: Path, command: str) -> dict:
    """Task and model of a folder whose run.json does not name them, from its recipe and
    metrics.json (older folders)."""
    _, recipe = read_recipe(path)
    metrics = _json_object(path / METRICS) or {}
    model = recipe.get("model")
    if isinstance(metrics.get("model"), str):
        name = metrics["model"].split(" (")[0]
    elif command == "prompt":
        name = ", ".join(map(str, recipe.get("models") or []))
    elif isinstance(model, dict) and command == "pretrain":
        name = str(model.get("init") or f"{model.get('arch', 'bert')} {model.get('layers', '?')}x{model.get('hidden', '?')}")
    else:
        name = str(model.get("name_or_path") or "") if isinstance(model, dict) else ""
    if command == "pretrain":
        objective = recipe.get("objective")
        task = metrics.get("objective") or (objective.get("kind") if isinstance(objective, dict) else "")
    elif command == "eval-glue":
        task = "glue " + str(recipe.get("tasks") or "all")
    elif command.startswith("probe-"):
        task = command.split("-", 1)[1]
    else:
        task = recipe.get("task") or metrics.get("task") or ""
    return {"task": str(task or ""), "model": name}


# ------------------------------------------------------------------------ metrics.json


def write_metrics(run: Run, detail: dict, *, scores: dict[str, dict] | None = None, main_metric: str | None = None,
                  main_value: Any = None, steps: int | None = None) -> dict:
    """metrics.json in the one outer layout: schema, the run's command, the main metric's
    name and value (by default `main_metric` in the first of `scores`), scores by split or
    file, steps, timings; then `detail`, the command's own keys as they were (older tools
    read them). What is not given is taken from `detail` as `read_metrics` reads an older
    file (finetune's `dev`, `main_metric` and `steps` say it all). Returns what was written."""
    outer = {**_outer(detail), "schema": SCHEMA, "command": run.command}
    given = {"scores": scores, "main_metric": main_metric, "steps": steps}
    outer.update({k: v for k, v in given.items() if v is not None})
    if main_metric is not None:
        outer["main_value"] = main_value if main_value is not None else _main_value(outer["scores"], main_metric, detail)
    data = {**outer, **{k: v for k, v in detail.items() if k not in outer}}
    run.write_json(METRICS, data)
    return data


def read_metrics(path: Path) -> dict:
    """metrics.json of a run folder (or the file itself) in the one outer layout, whatever
    bertctl version wrote it: {} when there is none; a BertctlError when it is unreadable
    (cut short, or not a JSON object)."""
    path = Path(path)
    file = path / METRICS if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:  # a torn file, bytes that are not UTF-8, a folder
        raise BertctlError(f"{file} is unreadable ({e})", fix="rerun the command that wrote it") from None
    if not isinstance(data, dict):
        raise BertctlError(f"{file} is unreadable (a JSON {type(data).__name__}, not an object)",
                           fix="rerun the command that wrote it")
    if data.get("schema") == SCHEMA and isinstance(data.get("scores"), dict):
        return data
    return {**_outer(data), **{k: v for k, v in data.items() if k not in _OUTER}}


_OUTER = ("schema", "command", "main_metric", "main_value", "scores", "steps", "timings")
_TIMINGS = ("train_seconds", "train_samples_per_s", "train_tokens_per_s", "tokens_per_s")
_OLD_MAIN = ("glue_score", "mlm_accuracy", "perplexity", "lm_accuracy", "best_accuracy", "accuracy", "top1", "gap",
             "best")  # what each command's metrics.json held before it named its main metric


def _outer(data: dict) -> dict:
    """The outer layout's keys for a metrics.json in a command's own layout, the one place
    that knows them: finetune's `dev`/`test` with `main_metric` and `steps`, an eval-only's
    scores under its file's name (`split`), a multi-file eval's `results`, pretrain's flat
    keys with `step`, the other commands' flat keys."""
    scores = {}
    split = data.get("split")
    for name in ("dev", "test", split if isinstance(split, str) else None):
        if name and isinstance(data.get(name), dict):
            scores[name] = data[name]
    if isinstance(data.get("results"), dict):
        scores.update({k: v for k, v in data["results"].items() if isinstance(v, dict)})
    main = data.get("main_metric")
    if not (isinstance(main, str) and any(main in v for v in scores.values())):
        main = next((k for k in _OLD_MAIN if k in data), None)
    steps = data.get("steps", data.get("step"))
    return {"schema": 0, "command": data.get("command"), "main_metric": main,
            "main_value": _main_value(scores, main, data), "scores": scores,
            "steps": steps if isinstance(steps, int) and not isinstance(steps, bool) else None,
            "timings": {k: data[k] for k in _TIMINGS if k in data}}


def _main_value(scores: dict, main: str | None, data: dict) -> Any:
    """The main metric in the first scores that hold it, else at the top of metrics.json."""
    return next((v[main] for v in scores.values() if isinstance(v, dict) and main in v), data.get(main))


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
            raise disk_error(path, e) from None
        if not _take(fd):
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


def _take(fd: int, tries: int = 5) -> bool:
    """The exclusive flock, retried for a moment: `bertctl runs` (is_live) holds a shared
    one for an instant when it looks."""
    import fcntl

    for n in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if n + 1 < tries:
                time.sleep(0.02)
    return False


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
