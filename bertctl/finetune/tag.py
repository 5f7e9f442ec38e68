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
from bertctl.finetune.base import Task, input_text, model_inputs

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
    aliases = ("pos", "ner")
    columns = {"tokens": ["tokens", "words"], "tags": ["tags", "upos", "ner_tags", "pos_tags"]}
    required = ("tokens", "tags")
    gold = "tags"
    pair = "never"
    inputs = ("tokens",)
    answer = "tags"
    shown = ("tokens",)
    tag_schemes = {"ner": "bio"}  # the tags World data gets for a task name (data.world.tags empty); else upos
    auto_class = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    pipeline_tag = "token-classification"
    per_token = True

    @classmethod
    def world_rows(cls, world, n, settings, task):
        """World's tagged sentences: UPOS, or BIO spans over proper nouns (data.world.tags;
        empty = bio for task ner, else upos)."""
        rows = [{"tokens": [w for w, _ in s], "tags": [t for _, t in s]} for s in world.tagged_sentences(n)]
        if (settings.tags or cls.tag_schemes.get(task, "upos")) == "bio":
            for row in rows:
                row["tags"] = bio_from_upos(row["tags"])
        return rows

    @classmethod
    def clean(cls, rows, source, notes, dropped):
        """One tag per word; words and tags as strings; empty sentences dropped."""
        for i, row in enumerate(rows, 1):
            if len(row["tokens"]) != len(row["tags"]):
                raise BertctlError(f"{source}: sentence {i} has {len(row['tokens'])} words but {len(row['tags'])} tags",
                                   fix="give exactly one tag per word")
        return [{"tokens": [str(t) for t in r["tokens"]], "tags": [str(t) for t in r["tags"]]} for r in rows if r["tokens"]]

    @classmethod
    def gold_labels(cls, row):
        return row.get("tags", [])

    @classmethod
    def read_line(cls, line, pair, n, source):
        return {"tokens": line.split()}  # words at whitespace

    @classmethod
    def input_row(cls, row, n, source):
        """Words as a list (numbers written as words, as training reads them) or one text
        split at spaces; a null word is refused with its line."""
        tokens = row["tokens"]
        if not isinstance(tokens, list):
            return {**row, "tokens": input_text(tokens, "tokens", n, source).split()}
        return {**row, "tokens": [input_text(t, f"word {i} of tokens", n, source) for i, t in enumerate(tokens, 1)]}

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

    def word_tags(self, features, outputs) -> list[list[str]]:
        """Each word's tag: the prediction at its first sub-token; words cut off by
        max_length (or without a sub-token) get the fallback tag."""
        fallback = self.fallback()
        preds = []
        for out, f in zip(outputs, features):
            ids = out[0].argmax(-1).tolist()  # (T,)
            preds.append([self.labels[ids[p]] if p >= 0 else fallback for p in f["first"]])
        return preds

    def decode(self, rows, features, outputs):
        """Tags per word; words cut off by max_length are counted for the metrics (words_unseen)."""
        self._unseen = sum(p < 0 for f in features for p in f["first"])
        return self.word_tags(features, outputs)

    def fields(self, row, prediction):
        bio = any(l.startswith(("B-", "I-")) for l in self.labels)
        return {"tags": prediction, **({"entities": entities(row["tokens"], prediction)} if bio else {})}

    def score(self, rows, predictions):
        out = metrics.tagging([r["tags"] for r in rows], predictions)
        out["words_unseen"] = getattr(self, "_unseen", 0)
        return out


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


def entities(tokens: list[str], tags: list[str]) -> list[dict]:
    """BIO tags -> spans {"type", "start", "end" (word indices, end exclusive), "text"}.
    An I- tag that does not continue a span of its type starts one (as seqeval does)."""
    spans, current = [], None
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, name = tag.partition("-")
        continues = current is not None and prefix == "I" and name == current["type"]
        if current is not None and not continues:
            current["end"] = i
            current["text"] = " ".join(tokens[current["start"]:i])
            spans.append(current)
            current = None
        if prefix in ("B", "I") and name and not continues:
            current = {"type": name, "start": i}
    return spans
