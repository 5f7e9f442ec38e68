"""`tag` (aliases `pos`, `ner`): one label per word.

Words are split into sub-tokens by the tokenizer; the *first* sub-token of each word
carries the word's label and the others get -100, which the loss ignores (the BERT
paper's recipe). At prediction time each word takes the prediction of its first
sub-token. Words cut off by max_length (or that tokenize to nothing) are predicted as
the most frequent training tag and counted in the metrics as `words_unseen`.
Metrics: word accuracy; entity-level precision/recall/F1 (seqeval) when tags are BIO.
"""

from __future__ import annotations

from bertctl import metrics
from bertctl.errors import BertctlError
from bertctl.finetune.base import Task, batched_outputs, model_inputs

IGNORE = -100


def align_labels(word_ids: list[int | None], tag_ids: list[int] | None) -> tuple[list[int], list[int]]:
    """For one tokenized sentence: the label of each sub-token (first sub-token of a
    word -> its tag id, everything else -> -100) and, per word, the position of its
    first sub-token (-1 when the word got no sub-token, e.g. after truncation)."""
    n_words = max((w for w in word_ids if w is not None), default=-1) + 1
    n_words = max(n_words, len(tag_ids or []))
    first = [-1] * n_words
    labels = []
    previous = None
    for pos, word in enumerate(word_ids):
        if word is None or word == previous:
            labels.append(IGNORE)
        else:
            first[word] = pos
            labels.append(tag_ids[word] if tag_ids is not None else IGNORE)
        previous = word
    return labels, first


class TagTask(Task):
    kind = "tag"
    auto_class = "AutoModelForTokenClassification"
    pipeline_task = "token-classification"
    needs_fast_tokenizer = True

    def fallback(self) -> str:
        return "O" if "O" in (self.labels or []) else self.labels[0]

    def encode(self, tokenizer, rows, train):
        if not getattr(tokenizer, "is_fast", False):
            raise BertctlError("the tag task needs a fast tokenizer (to map sub-tokens back to words)",
                               fix="use a model folder that has tokenizer.json")
        enc = tokenizer([r["tokens"] for r in rows], is_split_into_words=True, truncation=True,
                        max_length=self.max_length)
        features = []
        for i, row in enumerate(rows):
            tag_ids = [self.label2id[t] for t in row["tags"]] if "tags" in row else None
            labels, first = align_labels(enc.word_ids(i), tag_ids)
            first += [-1] * (len(row["tokens"]) - len(first))
            f = {"input_ids": enc["input_ids"][i], "labels": labels, "first": first[:len(row["tokens"])]}
            if "token_type_ids" in enc:
                f["token_type_ids"] = enc["token_type_ids"][i]
            features.append(f)
        return features

    def units(self, batch):
        return {"tag": (batch["labels"] != IGNORE).sum()}  # a tensor: int() of a GPU batch's count is a host sync

    def losses(self, model, batch):
        import torch.nn.functional as F

        logits = model(**model_inputs(batch)).logits.float()  # (B, T, C)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE, reduction="sum")
        return {"tag": loss}, {}

    def predict(self, model, rows, features):
        outputs = batched_outputs(model, features, self.collate, self.recipe.eval_batch_size, per_token=True)
        fallback = self.fallback()
        preds = []
        for out, f in zip(outputs, features):
            ids = out[0].argmax(-1).tolist()  # (T,)
            preds.append([self.labels[ids[p]] if p >= 0 else fallback for p in f["first"]])
        self._unseen = sum(p < 0 for f in features for p in f["first"])
        return preds

    def score(self, rows, predictions):
        out = metrics.tagging([r["tags"] for r in rows], predictions)
        out["words_unseen"] = getattr(self, "_unseen", 0)
        return out

    def records(self, rows, predictions):
        return [{"index": i, "tokens": r["tokens"], **({"gold": r["tags"]} if "tags" in r else {}), "prediction": p}
                for i, (r, p) in enumerate(zip(rows, predictions))]
