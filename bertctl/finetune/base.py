"""What every task kind shares: the `Task` interface, length-grouped batches, padding to
the longest example of a batch, and batched inference in length order.

A task turns role-keyed rows (see bertctl.finetune.data) into *features* (plain lists of
token ids), collates features into tensors, computes summed losses for the training
loop (bertctl.train: sums + counts, never means), and turns model outputs back into
one prediction per row plus metrics.

Why length grouping: SST-2 sentences are ~13 tokens but a random batch of 32 pads to
its longest (~41), so two thirds of the compute is padding. Sorting inside large
random chunks and then shuffling the batches keeps batches random across the epoch
while each batch holds similar lengths. It is a pure function of (seed, epoch), as the
loop requires for exact resume.
"""

from __future__ import annotations

import math
import random
from typing import Any

from bertctl.errors import BertctlError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                           group: bool = True, chunk_batches: int = 50) -> list[list[int]]:
    """Batches of example indices for one epoch.

    group=False: a plain seeded shuffle cut into batches. group=True: shuffle, cut into
    chunks of `chunk_batches` batches, sort each chunk by length, cut it into batches,
    then shuffle the batches (the chunk size is a multiple of the batch size, so only
    the very last batch can be short)."""
    order = list(range(len(lengths)))
    rng = random.Random(f"bertctl-batches:{seed}:{epoch}")
    rng.shuffle(order)
    if not group:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_features(features: list[dict], pad_id: int, label_pad: int = -100) -> dict:
    """Pad to the longest feature of this batch (never to a fixed max_length).

    Scalar labels become a (B,) tensor (long for class ids, float for regression);
    list labels (tagging) are padded with -100, which the loss ignores."""
    import torch

    n = max(len(f["input_ids"]) for f in features)
    batch: dict[str, Any] = {
        "input_ids": torch.tensor([f["input_ids"] + [pad_id] * (n - len(f["input_ids"])) for f in features]),
        "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (n - len(f["input_ids"])) for f in features]),
    }
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = torch.tensor([f["token_type_ids"] + [0] * (n - len(f["token_type_ids"])) for f in features])
    if features[0].get("labels") is not None:
        first = features[0]["labels"]
        if isinstance(first, list):
            batch["labels"] = torch.tensor([f["labels"] + [label_pad] * (n - len(f["labels"])) for f in features])
        elif isinstance(first, float):
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        else:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
    return batch


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS}


def batched_outputs(model, features: list[dict], collate, batch_size: int, names=("logits",),
                    per_token: bool = False) -> list[tuple]:
    """Run the model over features in length order (little padding), return one tuple of
    CPU float tensors per feature in the original order. per_token=True trims each
    output's sequence dimension back to the feature's own length."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    out: list[tuple | None] = [None] * len(features)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = collate([features[i] for i in idx])
        result = model(**{k: v.to(device) for k, v in model_inputs(batch).items()})
        tensors = [getattr(result, name).float().cpu() for name in names]
        for row, i in enumerate(idx):
            n = len(features[i]["input_ids"])
            out[i] = tuple(t[row, :n] if per_token else t[row] for t in tensors)
    return out  # type: ignore[return-value]


class Task:
    """One task kind: what it reads, how it trains, how it answers. A subclass is one row of
    the kind table (bertctl.finetune.kinds); it fills in encoding, loss and scoring, and
    overrides the class-level hooks below (columns, World data, label cleaning) where its
    rows differ from a classifier's.

    Class attributes (the data of the table):
        kind, aliases   the name recipes store and the other names users type
        columns         role -> default column names, tried in order (World's names first,
                        then what the usual public files call them)
        required        roles every labelled row has; `gold` is the one holding the answer
        optional        roles read when the file has them
        pair            second text: "always", "optional" (when there), "mapped" (only when
                        data.columns.text_pair names a column) or "never"
        json_format     what a .json file of this kind is ("squad" for QA)
        settings        the recipe section only this kind reads ("qa", "dna"), and `title`,
                        how errors name the kind
        inputs          the roles `bertctl predict` needs
        answer, shown   a prediction record's scored field and the inputs it repeats
        auto_class ...  the head: transformers auto class, peft task type, Hub pipeline tag
        outputs         the model outputs that decoding reads
    """

    kind = ""
    aliases: tuple[str, ...] = ()
    title = ""
    columns: dict[str, list[str]] = {"text": ["text", "sentence", "sentence1"], "label": ["label", "gold_label"]}
    required: tuple[str, ...] = ("text", "label")
    optional: tuple[str, ...] = ()
    gold = "label"
    pair = "mapped"
    json_format = "json"
    settings: str | None = None
    has_label_set = True  # labels.json holds the class (or tag) names
    inputs: tuple[str, ...] = ("text",)  # the roles `bertctl predict` needs (text_pair follows `pair`)
    input_extras: tuple[str, ...] = ()  # ... and reads when the input has them
    plain_text = True  # `bertctl predict` reads plain text lines (QA needs JSON lines)
    auto_class = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    pipeline_tag = "text-classification"  # the Hub's name for what the model does
    has_pipeline = True  # transformers.pipeline(pipeline_tag) exists (v5 has none for QA)
    main_metric = "accuracy"
    answer = "label"  # the field of a prediction scored against the gold (repeated as "prediction")
    shown = ("text", "text_pair")  # the input roles a prediction record repeats
    outputs = ("logits",)  # the model outputs prediction reads
    per_token = False  # outputs have a sequence dimension (trimmed to each feature's length)

    # ---------------------------------------------------------------- rows (before a Task exists)
    @classmethod
    def world_rows(cls, world, n: int, settings, task: str) -> list[dict]:
        """n labelled rows of this kind from a `World` (its own column names).
        settings: the recipe's data.world; task: the name the user typed."""
        raise NotImplementedError

    @classmethod
    def clean(cls, rows: list[dict], source: str, notes: list[str], dropped: list | None) -> list[dict]:
        """Labelled rows -> rows the task can train on: drop no-consensus rows ("-", empty:
        SNLI), refuse mixed label types and numbers that are no class names, make labels
        strings. `dropped` (data.on_bad_rows=skip) collects rows left out instead of refused."""
        rows, label_type = labelled_rows(rows, source, notes)
        if label_type == "number":
            bad = [(i, r["label"]) for i, r in enumerate(rows, 1) if not _whole(r["label"])]
            if bad:  # 0.37 or NaN as a class name: almost always a regression target given to a classifier
                raise BertctlError(f"{source}: the {cls.kind} task needs class labels, but {len(bad)} label(s) are "
                                   f"fractional, NaN or infinite numbers (row {bad[0][0]}: {bad[0][1]!r})",
                                   fix="use --task regression for numeric targets, or map data.columns.label to a class column")
        return [{**r, "label": _label_str(r["label"])} for r in rows]

    @classmethod
    def labelled(cls, rows: list[dict]) -> bool:
        """Whether rows carry the gold answer (a test file may not: predictions only)."""
        return bool(rows) and cls.gold in rows[0]

    @classmethod
    def number(cls, rows: list[dict]) -> list[dict]:
        """Rows given the ids the kind needs (QA numbers questions without one)."""
        return rows

    @classmethod
    def gold_value(cls, row: dict):
        """What a prediction record shows as "gold" (QA: the answer texts)."""
        return row[cls.gold]

    @classmethod
    def gold_labels(cls, row: dict) -> list:
        """The label names a row holds (for the label set and eval-only checks)."""
        return [row["label"]] if "label" in row else []

    @classmethod
    def label_set(cls, train: list[dict], dev: list[dict], dev_source: str) -> list[str] | None:
        """Labels from train only (sorted, so ids are stable), checked against dev; None
        for kinds without a label set (a number, a span)."""
        from bertctl.data import readers

        if not cls.has_label_set:
            return None
        return readers.build_label_list([l for r in train for l in cls.gold_labels(r)],
                                        [l for r in dev for l in cls.gold_labels(r)], dev_source)

    @classmethod
    def read_line(cls, line: str, pair: bool, n: int, source: str) -> dict:
        """`bertctl predict` on plain text: one example per line; a pair as two
        tab-separated fields."""
        if not pair:
            return {"text": line}
        fields = line.split("\t")
        if len(fields) > 2 or len(fields) == 1 and cls.pair != "optional":
            raise BertctlError(f"{source} line {n} has {len(fields)} tab-separated field(s); this {cls.kind} run "
                               "takes two texts separated by one tab", fix="put one pair per line: TEXT<TAB>TEXT")
        return {"text": fields[0], **({"text_pair": fields[1]} if len(fields) == 2 else {})}

    @classmethod
    def reads_pair(cls, columns: dict) -> bool:
        """`bertctl predict`: whether input rows carry a second text: always (nli), when
        there (regression), or when the run's recipe mapped one (cls)."""
        return cls.pair in ("always", "optional") or cls.pair == "mapped" and bool(columns.get("text_pair"))

    @classmethod
    def input_row(cls, row: dict, n: int, source: str) -> dict:
        """`bertctl predict`: a row read from line `n` of a table or JSON lines, as encode
        expects it; a text that is null or no text at all is refused."""
        return {k: input_text(v, k, n, source) for k, v in row.items()}

    def __init__(self, recipe, labels: list[str] | None):
        self.recipe = recipe
        self.labels = labels
        self.label2id = {l: i for i, l in enumerate(labels or [])}
        self.pad_id = 0
        self.max_length = recipe.model.max_length  # capped to the model's limit by `fit_length`
        self.counts: dict[str, int] = {}  # what encoding did to the input (rows_cut, ...), for `report`

    def fit_length(self, tokenizer, config) -> str | None:
        """Cap max_length at what the model accepts (a small `bertctl pretrain` model may
        have 64 positions); returns a line to show when it was capped."""
        limit = getattr(tokenizer, "model_max_length", None)
        if not isinstance(limit, int) or limit > 100_000:
            positions = getattr(config, "max_position_embeddings", None)
            # RoBERTa-style models number positions from padding_idx + 1
            offset = (config.pad_token_id + 1) if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
            limit = positions - offset if isinstance(positions, int) else None
        if limit and self.max_length > limit:
            self.max_length = limit
            return f"model.max_length {self.recipe.model.max_length} is more than the model's {limit} positions: using {limit}"
        return None

    # ---------------------------------------------------------------- model
    def config_kwargs(self) -> dict:
        """num_labels / id2label / label2id for the model config (pipelines read them)."""
        labels = self.labels or []
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {l: i for i, l in enumerate(labels)}}

    def auto_model_class(self):
        import transformers

        return getattr(transformers, self.auto_class)

    # ---------------------------------------------------------------- data
    def setup(self, tokenizer) -> None:
        """Called once with the tokenizer before encoding (pad id, vocabulary maps)."""
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def observe(self, rows: list[dict]) -> None:
        """Look at the training rows once (or the dev rows in eval-only) before encoding."""

    def report(self) -> list[str]:
        """Lines about what encoding did to the input that the user should know (rows cut
        at max_length, DNA symbols outside the alphabet, ...); asked after the rows are
        encoded (training and --eval-only keep them in metrics.json's notes)."""
        n = self.counts.get("rows_cut")
        return [f"{n} row(s) longer than model.max_length ({self.max_length} tokens) were cut to it"] if n else []

    def encode(self, tokenizer, rows: list[dict], train: bool) -> list[dict]:
        raise NotImplementedError

    def uses_pair(self, rows: list[dict]) -> bool:
        """Whether these rows are encoded as text pairs joined with [SEP]."""
        return self.pair == "always" or bool(rows) and "text_pair" in rows[0]

    def collate(self, features: list[dict]) -> dict:
        return pad_features(features, self.pad_id)

    def length(self, feature: dict) -> int:
        return len(feature["input_ids"])

    # ---------------------------------------------------------------- training
    def units(self, batch: dict) -> dict[str, int]:
        raise NotImplementedError

    def losses(self, model, batch: dict):
        raise NotImplementedError

    # ---------------------------------------------------------------- evaluation
    def predict(self, model, rows: list[dict], features: list[dict], batch_size: int | None = None) -> list:
        """One prediction per row (see `decode`); the caller holds the model in inference mode."""
        outputs = batched_outputs(model, features, self.collate, batch_size or self.recipe.eval_batch_size,
                                  self.outputs, per_token=self.per_token)
        return self.decode(rows, features, outputs)

    def decode(self, rows: list[dict], features: list[dict], outputs: list[tuple]) -> list:
        """The model's outputs as one prediction per row, what `score` reads (here: the
        label and every class's probability; a kind's own: a tag list, a number, an answer)."""
        out = []
        for o in outputs:
            probs = o[0].softmax(-1).tolist()
            best = max(range(len(probs)), key=probs.__getitem__)
            out.append({"label": self.labels[best],
                        "probabilities": {l: round(p, 6) for l, p in zip(self.labels, probs)}})
        return out

    def fields(self, row: dict, prediction) -> dict:
        """A prediction as the fields of its record (see prediction_records)."""
        return prediction

    def score(self, rows: list[dict], predictions: list) -> dict:
        raise NotImplementedError

    def decisions(self) -> dict:
        """What training decided from its data that using the model needs again (run.json
        keeps it; `restore` reads it back)."""
        return {}

    def official_files(self, rows: list[dict], predictions: list) -> dict[str, object]:
        """Extra prediction files in a format other tools read (QA: SQuAD's predictions.json)."""
        return {}

    def texts(self, rows: list[dict]) -> list[str]:
        """The input text of the rows, for the [UNK] rate."""
        return [" ".join(r["tokens"]) if "tokens" in r else " ".join(str(r[k]) for k in ("text", "text_pair") if k in r)
                for r in rows]

    # ---------------------------------------------------------------- `bertctl predict`
    def restore(self, decisions: dict, run_dir) -> None:
        """Settle what training decided from its data (`decisions`, from run.json)."""

    def predict_rows(self, rows: list[dict], first_index: int) -> list[dict]:
        """Input rows as encode expects them (QA numbers the questions without an id)."""
        return rows

    def describe_labels(self) -> str:
        if not self.labels:
            return ""
        shown = ", ".join(self.labels[:12]) + (" ..." if len(self.labels) > 12 else "")
        return f"{len(self.labels)} labels: {shown}"


def input_text(value, what: str, n: int, source: str) -> str:
    """A text of `bertctl predict` input: a string (a number is written as one); null, a
    list, an object or true/false is refused with its line."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    kind = {type(None): "null (or missing)", list: "a list", dict: "an object", bool: "true/false"}.get(type(value),
                                                                                                  type(value).__name__)
    raise BertctlError(f"{source} line {n}: the {what} is {kind}, not text",
                       fix=f"give every row its {what} as a string")


def prediction_records(task: Task, rows: list[dict], predictions: list, first_index: int = 0) -> list[dict]:
    """The one shape of a prediction, in predictions_<split>.jsonl and from `bertctl predict`:
    {"index", the row's inputs (task.shown), the prediction's own fields (label +
    probabilities, tags (+ entities), answer + span + score, value), "prediction": its
    scored field again, "gold": when the row has one}."""
    out = []
    for i, (row, pred) in enumerate(zip(rows, predictions)):
        fields = task.fields(row, pred)
        record = {"index": first_index + i, **{k: row[k] for k in task.shown if k in row}, **fields,
                  "prediction": fields[task.answer]}
        if task.gold in row:
            record["gold"] = task.gold_value(row)
        out.append(record)
    return out


def unk_rate(tokenizer, texts: list[str]) -> float | None:
    """Share of the tokens of these texts that are the tokenizer's unknown token: an
    English vocabulary turns much of a Chinese text into [UNK], which no fine-tuning
    can read back. None when the tokenizer has no unknown token."""
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return None
    total = hits = 0
    for lo in range(0, len(texts), 1000):
        for ids in tokenizer(texts[lo:lo + 1000], add_special_tokens=False)["input_ids"]:
            total += len(ids)
            hits += sum(i == unk for i in ids)
    return hits / total if total else 0.0


def labelled_rows(rows: list[dict], source: str, notes: list[str]) -> tuple[list[dict], str]:
    """The rows that have a gold label, and whether the labels are "number"s or "text"
    (never both: a mix is usually a stray header row or a shifted column)."""
    from bertctl.data import readers

    rows, n_dropped = readers.drop_unlabelled(rows, "label")
    if n_dropped:
        notes.append(f"dropped {n_dropped} row(s) without a gold label ('-' or empty) from {source}")
    if not rows:
        raise BertctlError(f"{source}: no labelled rows left", fix="check the label column")
    return rows, readers.check_label_types([r["label"] for r in rows], source)


def _whole(value) -> bool:
    number = float(value)
    return math.isfinite(number) and number.is_integer()


def _label_str(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()
