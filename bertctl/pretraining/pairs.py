"""Segment pairs for next-sentence prediction (NSP, BERT) and sentence-order prediction
(SOP, ALBERT), built once when the corpus is prepared, as BERT's create_pretraining_data.

A document is a list of sentences (each a list of token ids). Consecutive sentences are
gathered into a chunk of about `max_tokens`, the chunk is cut at a random sentence
boundary (inside the sentence when it is alone) into A and B, and:
  NSP  label 0: B is the real continuation of A
       label 1: B is taken from another document (A's unused sentences go back)
  SOP  label 0: A then B, in the document's order
       label 1: the same two segments swapped (B then A)
An over-long pair is trimmed at its *outer* ends (front of A, back of B) so the A|B
boundary, the place the pair label is about, is always kept intact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Pair:
    a: list[int]
    b: list[int]
    label: int  # 0 = coherent (next / in order); 1 = random next (NSP) or swapped (SOP)
    doc: int  # index of A's document (tests check where B came from)


def document_pairs(doc: list[list[int]], doc_index: int, kind: str, max_tokens: int, rng: np.random.Generator,
                   others: list[list[list[int]]] | None = None, short_seq_prob: float = 0.1) -> list[Pair]:
    """All pairs from one document. `others`: documents to draw NSP's random B from
    (never `doc` itself). max_tokens excludes [CLS] and the two [SEP]s."""
    doc = [s for s in doc if s]
    target = max_tokens
    if rng.random() < short_seq_prob:  # sometimes shorter, so fine-tuning on short inputs is not new
        target = int(rng.integers(2, max_tokens + 1))
    pairs, chunk, length, i = [], [], 0, 0
    while i < len(doc):
        chunk.append(doc[i])
        length += len(doc[i])
        if i == len(doc) - 1 or length >= target:
            whole_sentences = len(chunk) >= 2 or len(chunk[0]) < 2
            if not whole_sentences:
                # a lone sentence is cut at a random token, so its second half can be B's true
                # continuation: without this, every one-sentence chunk would be an NSP negative
                # and short documents would skew the labels far from 50/50
                cut = int(rng.integers(1, len(chunk[0])))
                chunk = [chunk[0][:cut], chunk[0][cut:]]
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            a = [t for s in chunk[:a_end] for t in s]
            b = [t for s in chunk[a_end:] for t in s]
            label = 0
            if kind == "nsp" and others and (not b or rng.random() < 0.5):
                b = _random_segment(others, max(1, target - len(a)), rng)
                label = 1
                if whole_sentences:
                    i -= len(chunk) - a_end  # the sentences B did not use start the next chunk
            elif kind == "sop" and b and rng.random() < 0.5:
                a, b, label = b, a, 1
            a, b = _trim_outer(a, b, max_tokens)
            if a and b:
                pairs.append(Pair(a, b, label, doc_index))
            chunk, length = [], 0
        i += 1
    return pairs


def _random_segment(others: list[list[list[int]]], want: int, rng: np.random.Generator) -> list[int]:
    """Consecutive sentences of a random other document, from a random start, ~`want` tokens."""
    other = others[int(rng.integers(len(others)))]
    start = int(rng.integers(len(other)))
    out: list[int] = []
    for s in other[start:]:
        out.extend(s)
        if len(out) >= want:
            break
    return out


def _trim_outer(a: list[int], b: list[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """Trim the longer segment (A from its front, B from its back) until both fit; when
    both are long, they end up with half the room each."""
    if len(a) + len(b) <= max_tokens:
        return a, b
    if min(len(a), len(b)) * 2 <= max_tokens:  # the shorter one fits whole
        keep_a = len(a) if len(a) <= len(b) else max_tokens - len(b)
    else:
        keep_a = max_tokens - max_tokens // 2
    keep_b = max_tokens - keep_a
    return a[len(a) - keep_a:], b[:keep_b]


class PairStream:
    """Pairs for a stream of documents in bounded memory (push style: `add` a document,
    get the pairs that are ready). Documents are taken in blocks of `block`; NSP's random
    B segments come from the other documents of the same block (or of the previous block
    when the last block holds a single document). Deterministic in `seed`."""

    def __init__(self, kind: str, max_tokens: int, seed: int, short_seq_prob: float = 0.1, block: int = 1000):
        self.kind, self.max_tokens, self.seed, self.short_seq_prob, self.block = kind, max_tokens, seed, short_seq_prob, block
        self.buffer: list[list[list[int]]] = []
        self.previous: list[list[list[int]]] = []
        self.n_blocks = self.first_doc = 0

    def add(self, doc: list[list[int]]) -> list[Pair]:
        self.buffer.append(doc)
        return self._flush() if len(self.buffer) == self.block else []

    def finish(self) -> list[Pair]:
        return self._flush() if self.buffer else []

    def _flush(self) -> list[Pair]:
        rng = np.random.default_rng([self.seed, self.n_blocks])
        out = []
        for j, doc in enumerate(self.buffer):
            others = self.buffer[:j] + self.buffer[j + 1:] or self.previous
            out.extend(document_pairs(doc, self.first_doc + j, self.kind, self.max_tokens, rng, others,
                                      self.short_seq_prob))
        self.first_doc += len(self.buffer)
        self.previous, self.buffer, self.n_blocks = self.buffer, [], self.n_blocks + 1
        return out


def stream_pairs(docs: Iterable[list[list[int]]], kind: str, max_tokens: int, seed: int,
                 short_seq_prob: float = 0.1, block: int = 1000) -> Iterator[Pair]:
    """The pairs of a whole stream of documents (see PairStream)."""
    stream = PairStream(kind, max_tokens, seed, short_seq_prob, block)
    for doc in docs:
        yield from stream.add(doc)
    yield from stream.finish()
