"""Where the GLUE data comes from, and turning every task into the same plain rows.

Two sources, tried in this order:
  1. a local folder in the layout the GLUE download script writes (`--glue-dir`, the
     recipe's `glue_dir`, or $GLUE_DIR): CoLA/{train,dev,test}.tsv, SST-2/..., MNLI/
     {train,dev_matched,dev_mismatched,test_matched,test_mismatched}.tsv, diagnostic/
     diagnostic.tsv. Files are read with `read_glue_tsv`, which knows the quirks
     (CoLA train/dev without a header, MRPC's bare quotes and byte-order mark).
  2. the Hugging Face dataset `nyu-mll/glue`, when the hub is reachable.

Whatever the source, a task comes out as `TaskData` with rows in one shape:
    {"sentence1": str, "sentence2": str (pairs only), "label": str | float}   train/dev
    {"idx": str, "sentence1": ..., "sentence2": ...}                          test
Labels are the strings the files and the leaderboard use ("0"/"1", "entailment", ...);
STS-B scores are floats. So the fine-tuning step never sees a GLUE quirk.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.glue.tasks import TASKS, GlueTask

HUB_ID = "nyu-mll/glue"
HOW_TO_PROVIDE = (
    "Pass --glue-dir DIR (the folder the GLUE download script writes: CoLA/, SST-2/, MRPC/, STS-B/, QQP/, "
    "MNLI/, QNLI/, RTE/, WNLI/ with train/dev/test .tsv files), or set GLUE_DIR, or go online so the "
    f"Hugging Face dataset {HUB_ID} can be downloaded"
)


@dataclass
class TaskData:
    task: GlueTask
    train: list[dict]
    evals: dict[str, list[dict]]           # Eval.name -> labelled rows
    tests: dict[str, list[dict]]           # Test.submission -> unlabelled rows with "idx"
    origin: str                            # where it was read from (for the log)
    notes: list[str] = field(default_factory=list)  # dropped rows, caps, missing test files


# ------------------------------------------------------------------------- sources


@dataclass
class LocalGlue:
    root: Path

    kind = "local"

    def describe(self) -> str:
        return str(self.root)

    def missing(self, task: GlueTask) -> str | None:
        """Why a task cannot run from this folder (None = it can)."""
        folder = self.root / task.name
        if not folder.is_dir():
            return f"no {task.name}/ folder"
        needed = ["train.tsv"] + [e.file for e in task.evals]
        absent = [f for f in needed if not (folder / f).is_file()]
        return f"{task.name}/ lacks {', '.join(absent)}" if absent else None

    def read(self, task: GlueTask, split: str, kind: str) -> tuple[list[dict], int]:
        """Raw rows of one file and how many malformed lines were dropped: split is a file
        under the task folder (train/dev) or a path under the root (tests)."""
        path = self.root / task.name / split if kind != "test" else self.root / split
        return _read_tsv(path, task)

    def has_test(self, task: GlueTask, test) -> bool:
        return (self.root / test.file).is_file()

    def origin(self, task: GlueTask) -> str:
        return str(self.root / task.name)


@dataclass
class HubGlue:
    """nyu-mll/glue through `datasets` (downloaded once, then cached)."""

    kind = "hub"
    _cache: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"Hugging Face dataset {HUB_ID}"

    def _split(self, spec: str):
        if spec not in self._cache:
            from datasets import load_dataset

            config, split = spec.split("/")
            self._cache[spec] = load_dataset(HUB_ID, config, split=split)
        return self._cache[spec]

    def missing(self, task: GlueTask) -> str | None:
        try:
            self._split(task.hub_train)
        except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
            return f"not downloadable ({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})"
        return None

    def read(self, task: GlueTask, spec: str, kind: str) -> tuple[list[dict], int]:
        ds = self._split(spec)
        examples = ds.to_list() if hasattr(ds, "to_list") else ds  # one Arrow conversion, not 400k row reads
        columns = list(task.hub_inputs)
        rows = []
        for ex in examples:
            row = {out: ex[col] for out, col in zip(task.inputs, columns)}
            row["idx"] = str(ex["idx"])
            if kind != "test":
                label = ex["label"]
                if task.regression:
                    row[task.label] = float(label)
                elif label >= 0:
                    row[task.label] = task.hub_labels[label] if task.hub_labels else str(label)
                else:
                    row[task.label] = ""
            rows.append(row)
        return rows, 0

    def has_test(self, task: GlueTask, test) -> bool:
        try:
            self._split(test.hub)
        except Exception:  # noqa: BLE001
            return False
        return True

    def origin(self, task: GlueTask) -> str:
        return f"{HUB_ID}/{task.hub_train.split('/')[0]}"


def _hub_reachable() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") in ("", "0") and os.environ.get("HF_DATASETS_OFFLINE", "") in ("", "0")


def locate(glue_dir: str | None, source: str = "auto"):
    """The GLUE source to use, or one clear error saying how to provide the data.

    An explicit folder that does not exist, or holds no task at all, is an error (a typo
    should not silently fall back to a download).
    """
    glue_dir = glue_dir or os.environ.get("GLUE_DIR") or None
    if source in ("auto", "local") and glue_dir:
        root = Path(glue_dir).expanduser()
        if not root.is_dir():
            raise BertctlError(f"GLUE folder {root} does not exist", fix=HOW_TO_PROVIDE)
        local = LocalGlue(root)
        why = [local.missing(t) for t in TASKS.values()]
        if all(why):
            # a task folder that is there but incomplete says which file it lacks (SST-2/ lacks dev.tsv)
            lacking = [w for w, t in zip(why, TASKS.values()) if (root / t.name).is_dir()]
            raise BertctlError(f"{root} holds no GLUE task ({'; '.join(lacking) or 'no CoLA/train.tsv, SST-2/train.tsv, ...'})",
                               fix=HOW_TO_PROVIDE)
        return local
    if source == "local":
        raise BertctlError("no GLUE folder given (source: local)", fix=HOW_TO_PROVIDE)
    if not _hub_reachable():
        raise BertctlError("no GLUE data: no folder given and the hub is off (HF_HUB_OFFLINE)", fix=HOW_TO_PROVIDE)
    return HubGlue()


# --------------------------------------------------------------------------- files


def _read_tsv(path: Path, task: GlueTask) -> tuple[list[dict], int]:
    """read_glue_tsv, except for tasks whose official files hold a few malformed lines
    (QQP): those lines are dropped, as the reference GLUE loaders do."""
    from bertctl.data.readers import read_glue_tsv

    try:
        return read_glue_tsv(path, task.name), 0
    except BertctlError as e:
        if not task.lenient or "fields but" not in e.message:
            raise
    return _read_tsv_lenient(path)


def _read_tsv_lenient(path: Path) -> tuple[list[dict], int]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = [line.rstrip("\r\n") for line in f if line.strip()]
    header = lines[0].split("\t")
    rows = [dict(zip(header, cells)) for cells in (line.split("\t") for line in lines[1:]) if len(cells) == len(header)]
    return rows, len(lines) - 1 - len(rows)


# ----------------------------------------------------------------------- one task


def _labelled(task: GlueTask, read: tuple[list[dict], int], where: str, notes: list[str]) -> list[dict]:
    """Canonical labelled rows; unlabelled ("-", "") rows are dropped and counted."""
    rows, dropped = read
    out = []
    for n, row in enumerate(rows, 1):
        missing = [c for c in (*task.inputs, task.label) if c not in row]
        if missing:
            raise BertctlError(f"{where}: missing column(s) {', '.join(map(repr, missing))} "
                               f"(columns: {', '.join(map(repr, row))})",
                               fix=f"{task.name} files need {', '.join(task.inputs)} and {task.label}, as the GLUE download script writes them")
        label = row[task.label]
        if isinstance(label, str):
            label = label.strip()
        if label in ("", "-", None):
            dropped += 1
            continue
        if task.regression:
            try:
                label = float(label)
            except (TypeError, ValueError):
                raise BertctlError(f"{where}: row {n}: score {label!r} is not a number",
                                   fix=f"{task.name} labels are similarity scores from 0 to 5") from None
        elif label not in task.labels:
            raise BertctlError(f"{where}: row {n}: label {label!r} is not one of {', '.join(task.labels)}",
                               fix=f"check the file is the {task.name} file of the GLUE download")
        out.append({**_texts(task, row), "label": label})
    if dropped:
        notes.append(f"{where}: dropped {dropped} malformed or unlabelled row(s)")
    if not out:
        raise BertctlError(f"{where} holds no labelled rows", fix="check the file or download it again")
    return out


def _texts(task: GlueTask, row: dict) -> dict:
    names = ("sentence1", "sentence2")
    return {names[i]: (row[col] or "").strip() for i, col in enumerate(task.inputs)}


def _unlabelled(task: GlueTask, read: tuple[list[dict], int], index: str, where: str) -> list[dict]:
    rows, _ = read
    out = []
    for row in rows:
        missing = [c for c in task.inputs if c not in row]
        if missing:
            raise BertctlError(f"{where}: missing column(s) {', '.join(map(repr, missing))}",
                               fix="check the file is the one the GLUE download script writes")
        idx = row.get(index, row.get("idx"))
        if idx is None:
            raise BertctlError(f"{where}: no {index!r} column", fix="the leaderboard needs the test ids echoed back")
        out.append({"idx": str(idx).strip(), **_texts(task, row)})
    return out


def subsample(rows: list, cap: int | None, seed: int = 0) -> list:
    """At most `cap` rows, a seeded random subset kept in file order (files are often
    sorted by source, so the first N rows would be a biased sample)."""
    if cap is None or len(rows) <= cap:
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), cap))
    return [rows[i] for i in keep]


def load_task(source, task: GlueTask, max_train: int | None = None, max_eval: int | None = None,
              max_test: int | None = None, tests: bool = True) -> TaskData:
    notes: list[str] = []
    local = source.kind == "local"
    where = (lambda f: f"{task.name}/{f}") if local else (lambda spec: f"{HUB_ID} {spec}")
    train_split = "train.tsv" if local else task.hub_train
    train = _labelled(task, source.read(task, train_split, "train"), where(train_split), notes)
    evals = {}
    for e in task.evals:
        split = e.file if local else e.hub
        rows = _labelled(task, source.read(task, split, "eval"), where(split), notes)
        if max_eval is not None and len(rows) > max_eval:
            notes.append(f"{e.name} capped at {max_eval:,} of {len(rows):,} rows: not comparable to full-dev scores")
        evals[e.name] = subsample(rows, max_eval)
    test_rows = {}
    for t in task.tests if tests else ():
        if not source.has_test(task, t):
            notes.append(f"no {t.file if local else t.hub}: {t.submission} is not written")
            continue
        split = t.file if local else t.hub
        where_t = t.file if local else where(t.hub)
        test_rows[t.submission] = subsample(_unlabelled(task, source.read(task, split, "test"), t.index, where_t), max_test)
    if max_train is not None and len(train) > max_train:
        notes.append(f"train capped at {max_train:,} of {len(train):,} rows")
    if max_test is not None and test_rows:
        notes.append(f"test capped at {max_test:,} rows: the submission is incomplete")
    return TaskData(task, subsample(train, max_train), evals, test_rows, source.origin(task), notes)
