"""Rows for fine-tuning: read files / a Hugging Face dataset / the World generator, map
columns onto roles, split, subsample and build the label set.

Every source ends as plain lists of dicts keyed by *role*, whatever the file called
its columns, so the task modules never see file formats:

    cls, dna        {"text", "label"}            (+ "text_pair" if mapped)
    nli             {"text", "text_pair", "label"}
    regression      {"text", "label": float}     (+ "text_pair")
    tag             {"tokens": [...], "tags": [...]}
    qa              {"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}

No torch here; `datasets` is imported only for `data.hf`.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from bertctl.data import readers
from bertctl.errors import BertctlError
from bertctl.finetune.config import DataSettings

# Default column names per role, tried in order: the World's names first, then the names
# the usual public files use (GLUE, SNLI, CoNLL readers, HF datasets).
DEFAULT_COLUMNS = {
    "cls": {"text": ["text", "sentence", "sentence1"], "label": ["label", "gold_label"]},
    "dna": {"text": ["sequence", "text"], "label": ["label"]},
    "nli": {"text": ["premise", "sentence1", "text"], "text_pair": ["hypothesis", "sentence2", "text_pair"],
            "label": ["label", "gold_label"]},
    "regression": {"text": ["sentence1", "text", "premise"], "text_pair": ["sentence2", "text_pair", "hypothesis"],
                   "label": ["score", "label"]},
    "tag": {"tokens": ["tokens", "words"], "tags": ["tags", "upos", "ner_tags", "pos_tags"]},
    "qa": {"id": ["id"], "question": ["question"], "context": ["context"], "answers": ["answers"]},
}
REQUIRED = {"cls": ["text", "label"], "dna": ["text", "label"], "nli": ["text", "text_pair", "label"],
            "regression": ["text", "label"], "tag": ["tokens", "tags"], "qa": ["id", "question", "context", "answers"]}
OPTIONAL = {"regression": ["text_pair"]}
CLASSIFICATION = ("cls", "nli", "dna")

# GLUE tasks as distributed by the GLUE download script: file columns -> roles, and the
# task kind. Used by the built-in recipes and by `bertctl eval-glue`.
GLUE_TASKS = {
    "cola": ("CoLA", "cls", {"text": "sentence", "label": "label"}),
    "sst2": ("SST-2", "cls", {"text": "sentence", "label": "label"}),
    "mrpc": ("MRPC", "nli", {"text": "#1 String", "text_pair": "#2 String", "label": "Quality"}),
    "qqp": ("QQP", "nli", {"text": "question1", "text_pair": "question2", "label": "is_duplicate"}),
    "stsb": ("STS-B", "regression", {"text": "sentence1", "text_pair": "sentence2", "label": "score"}),
    "mnli": ("MNLI", "nli", {"text": "sentence1", "text_pair": "sentence2", "label": "gold_label"}),
    "qnli": ("QNLI", "nli", {"text": "question", "text_pair": "sentence", "label": "label"}),
    "rte": ("RTE", "nli", {"text": "sentence1", "text_pair": "sentence2", "label": "label"}),
    "wnli": ("WNLI", "nli", {"text": "sentence1", "text_pair": "sentence2", "label": "label"}),
}


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
               ".json": "squad" if kind == "qa" else "json"}.get(suffix)
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


def world_rows(kind: str, world, n: int, tags: str = "upos") -> list[dict]:
    """n labelled rows of the task from a `World` (its own column names)."""
    if kind == "cls":
        return world.sentiment(n)
    if kind == "nli":
        return world.nli(n)
    if kind == "regression":
        return world.similarity(n)
    if kind == "dna":
        return world.dna(n)
    if kind == "qa":
        return world.qa(n)
    sentences = world.tagged_sentences(n)
    rows = [{"tokens": [w for w, _ in s], "tags": [t for _, t in s]} for s in sentences]
    if tags == "bio":
        for row in rows:
            row["tags"] = bio_from_upos(row["tags"])
    return rows


def bio_from_upos(upos: list[str]) -> list[str]:
    """Entity-style BIO tags over runs of proper nouns (a stand-in for NER on World data)."""
    out, inside = [], False
    for tag in upos:
        if tag == "PROPN":
            out.append("I-NAME" if inside else "B-NAME")
            inside = True
        else:
            out.append("O")
            inside = False
    return out


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
    naming the available ones. `labelled=False` (test files) tolerates a missing label."""
    if not rows:
        raise BertctlError(f"{source} holds no rows", fix="check the file or the split")
    available = list(rows[0])
    mapping = {}
    for role in REQUIRED[kind] + OPTIONAL.get(kind, []):
        chosen = columns.get(role)
        if chosen is not None and chosen not in available and (labelled or role not in ("label", "tags", "answers")):
            raise BertctlError(f"{source}: no column {chosen!r} (data.columns.{role}); "
                               f"available columns: {', '.join(map(repr, available))}",
                               fix=f"set data.columns.{role} to one of the available columns")
        if chosen is None:
            chosen = next((c for c in DEFAULT_COLUMNS[kind][role] if c in available), None)
        if chosen is None:
            if role in OPTIONAL.get(kind, []) or (role in ("label", "tags", "answers") and not labelled):
                continue
            tried = columns.get(role) or " / ".join(DEFAULT_COLUMNS[kind][role])
            raise BertctlError(f"{source}: no column {tried!r} for the {role} of a {kind} example; "
                               f"available columns: {', '.join(map(repr, available))}",
                               fix=f"set data.columns.{role} to one of the available columns")
        if role in ("label", "tags", "answers") and not labelled and chosen not in available:
            continue
        mapping[role] = chosen
    readers.require_columns(rows, mapping.values(), source)
    # a column mapped explicitly for a role the task does not use (text_pair for cls) still counts
    if kind in ("cls", "dna") and columns.get("text_pair"):
        readers.require_columns(rows, [columns["text_pair"]], source)
        mapping["text_pair"] = columns["text_pair"]
    return [{role: row[col] for role, col in mapping.items()} for row in rows]


# ------------------------------------------------------------------------ labels


def clean_labels(rows: list[dict], kind: str, source: str, notes: list[str]) -> list[dict]:
    """Drop no-consensus rows ("-", empty: SNLI), refuse mixed label types, normalise
    classification labels to strings and regression labels to floats."""
    if kind == "qa" or not rows or "label" not in rows[0] and "tags" not in rows[0]:
        return rows
    if kind == "tag":
        for i, row in enumerate(rows, 1):
            if len(row["tokens"]) != len(row["tags"]):
                raise BertctlError(f"{source}: sentence {i} has {len(row['tokens'])} words but {len(row['tags'])} tags",
                                   fix="give exactly one tag per word")
        return [{"tokens": [str(t) for t in r["tokens"]], "tags": [str(t) for t in r["tags"]]} for r in rows if r["tokens"]]
    rows, dropped = readers.drop_unlabelled(rows, "label")
    if dropped:
        notes.append(f"dropped {dropped} row(s) without a gold label ('-' or empty) from {source}")
    if not rows:
        raise BertctlError(f"{source}: no labelled rows left", fix="check the label column")
    kind_of = readers.check_label_types([r["label"] for r in rows], source)
    if kind == "regression":
        if kind_of != "number":
            example = rows[0]["label"]
            raise BertctlError(f"{source}: regression needs numeric labels, got text such as {example!r}",
                               fix="map data.columns.label to a numeric column, or use a classification task")
        bad = [(i, r["label"]) for i, r in enumerate(rows, 1) if not math.isfinite(float(r["label"]))]
        if bad:  # a NaN target makes every loss NaN; an infinite one, every gradient
            raise BertctlError(f"{source}: {len(bad)} label(s) are NaN or infinite (row {bad[0][0]}: {bad[0][1]!r})",
                               fix="drop or fix those rows")
        return [{**r, "label": float(r["label"])} for r in rows]
    if kind_of == "number":
        bad = [(i, r["label"]) for i, r in enumerate(rows, 1) if not _whole(r["label"])]
        if bad:  # 0.37 or NaN as a class name: almost always a regression target given to a classifier
            raise BertctlError(f"{source}: the {kind} task needs class labels, but {len(bad)} label(s) are fractional, "
                               f"NaN or infinite numbers (row {bad[0][0]}: {bad[0][1]!r})",
                               fix="use --task regression for numeric targets, or map data.columns.label to a class column")
    return [{**r, "label": _label_str(r["label"])} for r in rows]


def _whole(value) -> bool:
    number = float(value)
    return math.isfinite(number) and number.is_integer()


def _label_str(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def label_set(kind: str, train: list[dict], dev: list[dict], dev_source: str) -> list[str] | None:
    """Labels from train only (sorted, so ids are stable), checked against dev."""
    if kind in CLASSIFICATION:
        return readers.build_label_list([r["label"] for r in train], [r["label"] for r in dev if "label" in r], dev_source)
    if kind == "tag":
        return readers.build_label_list([t for r in train for t in r["tags"]],
                                        [t for r in dev if "tags" in r for t in r["tags"]], dev_source)
    return None


def check_known_labels(kind: str, rows: list[dict], labels: list[str] | None, source: str) -> None:
    """Eval-only: every gold label of the new file must be one the model can predict."""
    if labels is None or not rows:
        return
    readers.build_label_list(labels, [l for r in rows for l in ([r["label"]] if "label" in r else r.get("tags", []))],
                             source)


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
    columns = data.columns.model_dump()
    notes: list[str] = []
    names: dict[str, str] = {}
    bad_rows: dict[str, int] = {}
    raw: dict[str, list[dict] | None] = {"train": None, "dev": None, "test": None}
    if data.source == "world":
        from bertctl.data.world import World

        w = data.world
        tags = w.tags or ("bio" if task == "ner" else "upos")
        rows = world_rows(kind, World(w.seed, w.language), w.train + w.dev + w.test, tags)
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
        mapped = map_columns(rows, kind, columns, names[split], labelled=split != "test")
        out[split] = clean_labels(mapped, kind, names[split], notes) if split != "test" or _has_labels(mapped) else mapped
    if kind == "qa":
        from bertctl.finetune import qa

        for split in ("train", "dev", "test"):
            if out[split] is not None and (split != "test" or _has_labels(out[split])):
                dropped = [] if data.on_bad_rows == "skip" else None
                out[split] = qa.check_answers(out[split], names[split], dropped)
                _note_skipped(dropped, split, names[split], bad_rows, notes)
                if not out[split]:
                    raise BertctlError(f"{names[split]}: no question left after skipping misplaced answers",
                                       fix="fix the answer_start offsets of that file")
    labels = label_set(kind, out["train"], out["dev"], names["dev"]) if out["train"] is not None else None
    return Splits(out["train"] or [], out["dev"], out["test"], names, notes, labels, bad_rows)


def _note_skipped(dropped: list | None, split: str, source: str, bad_rows: dict, notes: list[str]) -> None:
    if dropped:
        bad_rows[split] = bad_rows.get(split, 0) + len(dropped)
        shown = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
        notes.append(f"skipped {len(dropped)} question(s) of {source} whose answer is not at its answer_start "
                     f"(data.on_bad_rows=skip): {shown}")


def _has_labels(rows: list[dict]) -> bool:
    return bool(rows) and any(k in rows[0] for k in ("label", "tags", "answers"))
