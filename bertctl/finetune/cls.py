"""`cls` (alias `sentiment`): one sequence -> one class.

Encoder + linear layer + softmax over the [CLS] representation (the Hugging Face
`*ForSequenceClassification` head). A second sequence is used when `text_pair` is mapped,
which is exactly what the `nli` kind always does.
Metrics: accuracy, F1 (binary for two classes, macro otherwise), Matthews correlation.
"""

from __future__ import annotations

from bertctl import metrics
from bertctl.errors import BertctlError
from bertctl.finetune.base import Task, model_inputs


def _text(value) -> str:
    return "" if value is None else str(value)


def sequence_features(tokenizer, rows: list[dict], max_length: int, pair: bool, label, long=None,
                      counts: dict | None = None) -> list[dict]:
    """One feature per row: its text (or text pair joined with [SEP]) tokenized, unpadded,
    and `label(row)` as the target (None for unlabelled rows). A single text longer than
    max_length is cut as `long` (a LongTextSettings; None: keep the head) says; with
    `windows` a row gives one feature per window, each carrying the row's index as "doc".
    `counts["rows_cut"]` adds the rows cut (not those read in windows)."""
    texts = [_text(r["text"]) for r in rows]
    if not pair and long is not None and long.strategy != "head":
        return _long_features(tokenizer, texts, rows, max_length, label, long, counts)
    pairs = [_text(r.get("text_pair")) for r in rows] if pair else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    if counts is not None:  # a row at max_length may have been cut: its full length says
        full = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) >= max_length]
        lengths = tokenizer([texts[i] for i in full], [pairs[i] for i in full] if pair else None)["input_ids"] if full else []
        counts["rows_cut"] = counts.get("rows_cut", 0) + sum(len(ids) > max_length for ids in lengths)
    features = []
    for i, row in enumerate(rows):
        f = {"input_ids": enc["input_ids"][i]}
        if "token_type_ids" in enc:
            f["token_type_ids"] = enc["token_type_ids"][i]
        f["labels"] = label(row) if "label" in row else None
        features.append(f)
    return features


def _long_features(tokenizer, texts: list[str], rows: list[dict], max_length: int, label, long,
                   counts: dict | None = None) -> list[dict]:
    """tail, head_tail and windows: cut the token ids, then add [CLS] ... [SEP] as the
    tokenizer would, so the model sees what it sees for a text of that length."""
    from bertctl.models import special_tokens_around

    before, after = special_tokens_around(tokenizer)
    budget = max_length - len(before) - len(after)
    overlap = budget // 4 if long.window_overlap is None else long.window_overlap
    if long.strategy == "windows" and overlap >= budget:
        raise BertctlError(f"long_text.window_overlap={overlap} leaves no new tokens in a window of "
                           f"{budget} (model.max_length {max_length} less special tokens)",
                           fix=f"use a long_text.window_overlap below {budget}, or leave it empty (a quarter)")
    head = budget // 4 if long.head_tokens is None else long.head_tokens
    if long.strategy == "head_tail" and head >= budget:
        raise BertctlError(f"long_text.head_tokens={head} leaves no tail in {budget} tokens (model.max_length "
                           f"{max_length} less special tokens)", fix=f"use a long_text.head_tokens below {budget}, "
                                                                     "or leave it empty (a quarter)")
    types = "token_type_ids" in tokenizer.model_input_names  # DistilBERT-like models take none
    features = []
    for i, (row, ids) in enumerate(zip(rows, tokenizer(texts, add_special_tokens=False)["input_ids"])):
        if len(ids) > budget and long.strategy != "windows" and counts is not None:
            counts["rows_cut"] = counts.get("rows_cut", 0) + 1
        if len(ids) <= budget:
            pieces = [ids]
        elif long.strategy == "tail":
            pieces = [ids[-budget:]]
        elif long.strategy == "head_tail":
            pieces = [ids[:head] + ids[len(ids) - (budget - head):]]
        else:  # windows: starts every budget - overlap tokens, the last one ending at the text's end
            step = budget - overlap
            starts = list(range(0, len(ids) - budget, step)) + [len(ids) - budget]
            pieces = [ids[s:s + budget] for s in starts]
        target = label(row) if "label" in row else None
        for piece in pieces:
            input_ids = before + piece + after
            f = {"input_ids": input_ids, **({"token_type_ids": [0] * len(input_ids)} if types else {}), "labels": target}
            if long.strategy == "windows":
                f["doc"] = i
            features.append(f)
    return features


def pool_windows(features: list[dict], outputs: list[tuple]) -> list[tuple]:
    """One output per row. Rows cut into windows (features carry "doc"): each row's output is
    the log of its windows' mean probabilities (Sun et al.'s pooled sliding windows), a
    one-window row's too; without windows the outputs are returned as they are."""
    if not features or "doc" not in features[0]:
        return outputs
    import torch

    groups: dict[int, list] = {}
    for f, o in zip(features, outputs):
        groups.setdefault(f["doc"], []).append(o[0].float().softmax(-1))
    return [(torch.stack(groups[doc]).mean(0).log(),) for doc in sorted(groups)]


class ClsTask(Task):
    kind = "cls"
    aliases = ("sentiment", "classification")

    @classmethod
    def world_rows(cls, world, n, settings, task):
        return world.sentiment(n)

    def text_of(self, row: dict) -> dict:
        """The row as the tokenizer sees it (the DNA task rewrites the text here)."""
        return row

    def encode(self, tokenizer, rows, train):
        rows = [self.text_of(r) for r in rows]
        return sequence_features(tokenizer, rows, self.max_length, self.uses_pair(rows),
                                 lambda r: self.label2id[r["label"]], self.recipe.long_text, self.counts)

    def units(self, batch):
        return {"cls": len(batch["labels"])}

    def losses(self, model, batch):
        import torch.nn.functional as F

        logits = model(**model_inputs(batch)).logits.float()  # (B, C)
        return {"cls": F.cross_entropy(logits, batch["labels"], reduction="sum")}, {}

    def decode(self, rows, features, outputs):
        return super().decode(rows, features, pool_windows(features, outputs))

    def score(self, rows, predictions):
        y_true = [self.label2id[r["label"]] for r in rows]
        y_pred = [self.label2id[p["label"]] for p in predictions]
        return metrics.classification(y_true, y_pred, n_classes=len(self.labels))
