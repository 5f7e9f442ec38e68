"""`cls` (alias `sentiment`): one sequence -> one class.

Encoder + linear layer + softmax over the [CLS] representation (the Hugging Face
`*ForSequenceClassification` head). A second sequence is used when `text_pair` is mapped,
which is exactly what the `nli` kind always does.
Metrics: accuracy, F1 (binary for two classes, macro otherwise), Matthews correlation.
"""

from __future__ import annotations

from bertctl import metrics
from bertctl.finetune.base import Task, batched_outputs, model_inputs


def _text(value) -> str:
    return "" if value is None else str(value)


def sequence_features(tokenizer, rows: list[dict], max_length: int, pair: bool, label) -> list[dict]:
    """One feature per row: its text (or text pair joined with [SEP]) tokenized, unpadded,
    and `label(row)` as the target (None for unlabelled rows)."""
    texts = [_text(r["text"]) for r in rows]
    pairs = [_text(r.get("text_pair")) for r in rows] if pair else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    features = []
    for i, row in enumerate(rows):
        f = {"input_ids": enc["input_ids"][i]}
        if "token_type_ids" in enc:
            f["token_type_ids"] = enc["token_type_ids"][i]
        f["labels"] = label(row) if "label" in row else None
        features.append(f)
    return features


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
        return sequence_features(tokenizer, rows, self.max_length, self.uses_pair(rows), lambda r: self.label2id[r["label"]])

    def units(self, batch):
        return {"cls": len(batch["labels"])}

    def losses(self, model, batch):
        import torch.nn.functional as F

        logits = model(**model_inputs(batch)).logits.float()  # (B, C)
        return {"cls": F.cross_entropy(logits, batch["labels"], reduction="sum")}, {}

    def predict(self, model, rows, features):
        outputs = batched_outputs(model, features, self.collate, self.recipe.eval_batch_size)
        return [self.labels[int(o[0].argmax())] for o in outputs]

    def score(self, rows, predictions):
        y_true = [self.label2id[r["label"]] for r in rows]
        y_pred = [self.label2id[p] for p in predictions]
        return metrics.classification(y_true, y_pred, n_classes=len(self.labels))
