"""Rows for fine-tuning: read files / a Hugging Face dataset / the World generator, map
columns onto roles, split, subsample and build the label set.

Every source ends as plain lists of dicts keyed by *role*, whatever the file called
its columns, so the task modules never see file formats:

    cls, dna        {"text", "label"}            (+ "text_pair" if mapped)
    nli             {"text", "text_pair", "label"}
    regression      {"text", "label": float}     (+ "text_pair")
    tag             {"tokens": [...], "tags": [...]}
    qa              {"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}

Which roles, which default column names, World data and label cleaning are the kind's
own (class attributes and hooks of its Task, bertctl.finetune.kinds); this module only
applies them. No torch here; `datasets` is imported only for `data.hf`.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from bertctl.data import readers
from bertctl.errors import BertctlError
from bertctl.finetune.config import DataSettings
from bertctl.finetune.kinds import get_task


@dataclass
class Splits:
    train: list[dict]
    dev: list[dict]
    test: list[dict] | None = None
    names: dict[str, str] = field(default_factory=dict)  # split -> where it came from (for messages)
    notes: list[str] = field(default_factory=list)  # things the user should see (drops, splits)
    labels: list[str] | None = None  # classification / tagging label set (from train)
    bad_rows: dict[str, int] = field(default_factory=dict)  # split -> rows skipped (data.on_bad_rows=skip)


# ------------------------------------------------------------------------ paths


def data_root(root: str | None) -> Path | None:
    """`data.root`, resolved against the current directory (see bertctl.finetune.config)."""
    if not root:
        return None
    path = Path(os.path.expanduser(root))
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_dir():
        raise BertctlError(f"data.root {root} does not exist (looked in {path.resolve()})",
                           fix="run from the project root (real-data recipes use ../shared/data) "
                               "or pass data.root=/path/to/data")
    return path.resolve()


def resolve_path(path: str, root: Path | None) -> Path:
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p
    return (root / p) if root is not None else (Path.cwd() / p)


def input_files(data: DataSettings) -> dict[str, Path]:
    """The local files a run reads (fingerprinted in run.json, checked on --resume)."""
    if data.source == "files":
        root = data_root(data.root)
        paths = {f"data.{split}": resolve_path(getattr(data, split), root)
                 for split in ("train", "dev", "test") if getattr(data, split)}
        return {name: path for name, path in paths.items() if path.exists()}
    if data.source == "hf" and Path(data.hf.name).expanduser().exists():  # a local dataset folder
        return {"data.hf.name": Path(data.hf.name).expanduser()}
    return {}


# ------------------------------------------------------------------------ reading


def read_file(path: Path, kind: str, data: DataSettings, dropped: list | None = None) -> list[dict]:
    """Raw rows of one file, with the reader its format (or extension) calls for
    (`dropped`: SQuAD questions with misplaced answers are left out and listed there)."""
    readers.check_path(path)  # a broken link or a link loop: said as such, not as a format problem
    fmt = data.format
    suffix = path.suffix.lower()
    if fmt == "auto":
        fmt = {".tsv": "glue", ".csv": "csv", ".jsonl": "jsonl", ".conllu": "conllu", ".conll": "conll",
               ".json": get_task(kind).json_format}.get(suffix)
        if fmt is None and readers.looks_like_conll(path):  # CoNLL's own names: eng.train, esp.testa, ned.testb
            fmt = "conll"
        if fmt is None:
            raise BertctlError(f"{path}: cannot tell the format from the extension {suffix or '(none)'}",
                               fix="set data.format (glue, tsv, csv, jsonl, json, conllu, conll, squad)")
    if fmt == "glue":
        return readers.read_glue_tsv(path)
    if fmt in ("tsv", "csv", "jsonl", "json"):
        return readers.read_table(path, fmt=fmt)
    if fmt == "conllu":
        return readers.read_conllu(path, data.tag_column)
    if fmt == "conll":
        return readers.read_conll(path, *data.conll_columns)
    return readers.read_squad(path, dropped=dropped)


def hf_rows(hf, split: str | None) -> tuple[list[dict], str] | tuple[None, str]:
    """Rows of one split of a Hugging Face dataset; ClassLabel ids become their names."""
    if split is None:
        return None, ""
    dataset = _hf_dataset(hf)
    if split not in dataset:
        raise BertctlError(f"dataset {hf.name} has no split {split!r} (splits: {', '.join(dataset)})",
                           fix="set data.hf.train / data.hf.dev / data.hf.test to existing split names")
    part = dataset[split]
    rows = part.to_list()
    for column, feature in part.features.items():
        names = _class_names(feature)
        if names is None:
            continue
        for row in rows:
            value = row[column]
            if isinstance(value, list):
                row[column] = [names[v] for v in value]
            elif isinstance(value, int) and value >= 0:  # -1 marks "no label" in GLUE test splits
                row[column] = names[value]
            else:
                row[column] = None
    return rows, f"{hf.name}{'/' + hf.config if hf.config else ''}[{split}]"


def _class_names(feature) -> list[str] | None:
    names = getattr(feature, "names", None)
    if names is None:
        inner = getattr(feature, "feature", None)  # Sequence(ClassLabel) / List(ClassLabel)
        names = getattr(inner, "names", None)
    return list(names) if names else None


_HF_CACHE: dict = {}


def _hf_dataset(hf):
    key = (hf.name, hf.config)
    if key in _HF_CACHE:
        return _HF_CACHE[key]
    import datasets

    datasets.disable_progress_bars()
    path = Path(hf.name).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.Dataset):
                loaded = datasets.DatasetDict({"train": loaded})
        else:
            loaded = datasets.load_dataset(str(path) if path.exists() else hf.name, hf.config)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise BertctlError(f"cannot load dataset {hf.name}{' (' + hf.config + ')' if hf.config else ''}: {first}",
                           fix=("HF_HUB_OFFLINE is set: pass a local dataset folder (save_to_disk) or data files"
                                if offline else "check the dataset id/config, or pass local files as data.train/dev")) from None
    _HF_CACHE[key] = loaded
    return loaded


# ------------------------------------------------------------------------ columns


def map_columns(rows: list[dict], kind: str, columns: dict, source: str, labelled: bool = True) -> list[dict]:
    """Rename the configured (or default) columns to roles; a missing column is an error
    naming the available ones. `labelled=False` (test files) tolerates a missing gold."""
    if not rows:
        raise BertctlError(f"{source} holds no rows", fix="check the file or the split")
    task = get_task(kind)
    available = list(rows[0])
    mapping = {}
    for role in task.required + task.optional:
        optional = role in task.optional or (role == task.gold and not labelled)
        chosen = columns.get(role)
        if chosen is not None and chosen not in available and (labelled or role != task.gold):
            raise BertctlError(f"{source}: no column {chosen!r} (data.columns.{role}); "
                               f"available columns: {', '.join(map(repr, available))}",
                               fix=f"set data.columns.{role} to one of the available columns")
        if chosen is None:
            chosen = next((c for c in task.columns[role] if c in available), None)
        if chosen is None or chosen not in available:
            if optional:
                continue
            tried = columns.get(role) or " / ".join(task.columns[role])
            raise BertctlError(f"{source}: no column {tried!r} for the {role} of a {kind} example; "
                               f"available columns: {', '.join(map(repr, available))}",
                               fix=f"set data.columns.{role} to one of the available columns")
        mapping[role] = chosen
    readers.require_columns(rows, mapping.values(), source)
    # a second text only when the recipe maps one (cls reads text_pair then)
    if task.pair == "mapped" and columns.get("text_pair"):
        readers.require_columns(rows, [columns["text_pair"]], source)
        mapping["text_pair"] = columns["text_pair"]
    return [{role: row[col] for role, col in mapping.items()} for row in rows]


# ------------------------------------------------------------------------ labels


def check_known_labels(kind: str, rows: list[dict], labels: list[str] | None, source: str) -> None:
    """Eval-only: every gold label of the new file must be one the model can predict."""
    if labels is None or not rows:
        return
    readers.build_label_list(labels, [l for r in rows for l in get_task(kind).gold_labels(r)], source)


# ------------------------------------------------------------------------ splits


def split_rows(rows: list[dict], share: float, seed: int, by: str | None = None) -> tuple[list[dict], list[dict]]:
    """Seeded shuffle, then the first `share` for training, the rest held out (order of
    each part kept as in the file, so a subsample with max_train_samples is stable).

    With `by` (a column, e.g. a SQuAD article's "title") rows sharing its value stay on
    one side and `share` counts groups, not rows: questions about one paragraph in both
    train and dev would make the dev score a memory test."""
    if by is not None:
        missing = next((i for i, r in enumerate(rows, 1) if by not in r), None)
        if missing is not None:
            raise BertctlError(f"data.split_by={by}: row {missing} has no column {by!r}; "
                               f"available: {', '.join(map(repr, rows[0]))}",
                               fix="set data.split_by to a column every row has (SQuAD files: title), or leave it empty")
    keys = [str(r[by]) if by is not None else i for i, r in enumerate(rows)]
    groups = list(dict.fromkeys(keys))  # first-seen order, so the shuffle is reproducible
    random.Random(f"bertctl-split:{seed}").shuffle(groups)
    cut = int(round(share * len(groups)))
    what = f"{len(groups)} groups of {by}" if by is not None else f"{len(rows)} rows"
    if cut == 0 or cut == len(groups):
        raise BertctlError(f"data.split={share} of {what} leaves an empty part",
                           fix="use a share strictly between the two, or more rows")
    train_groups = set(groups[:cut])
    keep = [r for r, k in zip(rows, keys) if k in train_groups]
    held = [r for r, k in zip(rows, keys) if k not in train_groups]
    return keep, held


def load_splits(data: DataSettings, kind: str, need_train: bool = True, task: str | None = None) -> Splits:
    """Read train/dev/test for a task kind, as role-keyed rows, with the label set.
    `task` is the name the user typed (World data for "ner" gets BIO tags)."""
    kind_task = get_task(kind)
    columns = data.columns.model_dump()
    notes: list[str] = []
    names: dict[str, str] = {}
    bad_rows: dict[str, int] = {}
    raw: dict[str, list[dict] | None] = {"train": None, "dev": None, "test": None}
    if data.source == "world":
        from bertctl.data.world import World

        w = data.world
        rows = kind_task.world_rows(World(w.seed, w.language), w.train + w.dev + w.test, w, task)
        raw = {"train": rows[:w.train], "dev": rows[w.train:w.train + w.dev], "test": rows[w.train + w.dev:] or None}
        label = f"World(seed={w.seed}, language={w.language!r})"
        names = {s: f"{label} {s}" for s, rows in raw.items() if rows is not None}
    elif data.source == "hf":
        for split in ("train", "dev", "test"):
            raw[split], names[split] = hf_rows(data.hf, getattr(data.hf, split))
    else:
        root = data_root(data.root)
        for split in ("train", "dev", "test"):
            value = getattr(data, split)
            if value:
                path = resolve_path(value, root)
                dropped: list | None = [] if data.on_bad_rows == "skip" else None
                raw[split], names[split] = read_file(path, kind, data, dropped), str(path)
                _note_skipped(dropped, split, str(path), bad_rows, notes)
    if raw["train"] is None and need_train:
        raise BertctlError("no training data", fix="set data.train (a file), data.hf, or leave both empty for World data")

    if data.split is not None:
        if raw["train"] is None:
            raise BertctlError("data.split needs data.train", fix="set data.train to the file to split")
        raw["train"], raw["dev"] = split_rows(raw["train"], data.split, data.seed, data.split_by)
        by = f" by {data.split_by}" if data.split_by else ""
        names["dev"] = f"{names['train']} (held-out {1 - data.split:.0%}{by}, seed {data.seed})"
        names["train"] = f"{names['train']} ({data.split:.0%}{by}, seed {data.seed})"
        notes.append(f"split {names['train'].split(' (')[0]}: {len(raw['train'])} train / {len(raw['dev'])} dev rows")
    if raw["dev"] is None:
        raise BertctlError("no dev data to evaluate on",
                           fix="set data.dev, or data.split (e.g. 0.8) to hold out part of data.train")

    out = {}
    for split, rows in raw.items():
        if rows is None:
            out[split] = None
            continue
        limit = data.max_train_samples if split == "train" else data.max_eval_samples
        rows = rows[:limit] if limit else rows
        mapped = kind_task.number(map_columns(rows, kind, columns, names[split], labelled=split != "test"))
        if not kind_task.labelled(mapped):  # an unlabelled test file: predictions only
            out[split] = mapped
            continue
        dropped = [] if data.on_bad_rows == "skip" else None
        out[split] = kind_task.clean(mapped, names[split], notes, dropped)
        _note_skipped(dropped, split, names[split], bad_rows, notes)
    labels = kind_task.label_set(out["train"], out["dev"], names["dev"]) if out["train"] is not None else None
    if labels is not None and out["test"]:  # before training: a label the model cannot predict, in the test file
        check_known_labels(kind, out["test"], labels, names["test"])
    return Splits(out["train"] or [], out["dev"], out["test"], names, notes, labels, bad_rows)


def _note_skipped(dropped: list | None, split: str, source: str, bad_rows: dict, notes: list[str]) -> None:
    if dropped:
        bad_rows[split] = bad_rows.get(split, 0) + len(dropped)
        shown = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
        notes.append(f"skipped {len(dropped)} question(s) of {source} whose answer is not at its answer_start "
                     f"(data.on_bad_rows=skip): {shown}")
