"""Frozen features for probing: contextual vectors of words (or sentences) at every layer.

Everything goes through character spans, located with the fast tokenizer's offset mapping:
a word is the set of tokens whose character offsets overlap its span, and its vector is
the mean (or the first) of those tokens' vectors. That one rule covers

- English words split into several sub-tokens ("unbelievably" -> un ##bel ##ie ##va ##bly),
- Chinese text, which has no spaces: "苹果" is found by its character offsets in
  "我吃了一个苹果", never by splitting on whitespace,
- pre-split treebank words (CoNLL-U): the words are joined with spaces and each word's
  span is known exactly.

`hidden_states` index 0 is the embedding layer's output (token + position + type, after
LayerNorm); index i is the output of transformer block i. The *static* vector of a word
is the mean of its tokens' rows in the input embedding matrix (no position, no context).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bertctl.errors import BertctlError

Span = tuple[int, int]  # [start, end) character offsets into one text


# ----------------------------------------------------------------------- encoders


@dataclass
class Encoder:
    """A frozen encoder, its fast tokenizer, and a label for tables."""

    model: object
    tokenizer: object
    label: str
    device: str
    precision: object  # a bertctl.precision.ResolvedPrecision

    def hidden_states(self, batch: dict):
        """The model's outputs with every layer's hidden states: no gradients, in the
        probe's precision (autocast); callers turn them into float32."""
        import torch

        with torch.no_grad(), self.precision.autocast_context(self.device.split(":")[0]):
            return self.model(**batch, output_hidden_states=True)

    @property
    def n_layers(self) -> int:
        """How many hidden_states the model returns (embeddings + one per block)."""
        return int(self.model.config.num_hidden_layers) + 1

    def limit(self, max_length: int) -> int:
        """Tokens per text at most: the request, capped by the model's position table (a
        bertctl pretrain model may have only 64 positions) and the tokenizer's limit."""
        caps = [max_length, getattr(self.model.config, "max_position_embeddings", None),
                getattr(self.tokenizer, "model_max_length", None)]
        return min(int(c) for c in caps if isinstance(c, int) and c > 0)


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BertctlError("device=cuda but no CUDA GPU is visible", fix="use device=auto or device=cpu")
    return device


def load_encoder(name_or_path: str, device: str = "auto", trust_remote_code: bool = False,
                 allow_pickle: bool = False, precision: str = "auto") -> Encoder:
    """A model (bertctl run folder, local folder, hub id or embedded name) as a bare encoder."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from bertctl.models import load_model, load_tokenizer, resolve

    hf_logging.disable_progress_bar()  # the probe prints its own tables; no per-tensor bars
    hf_logging.set_verbosity_error()    # loading an encoder from a model with heads lists the unused head
    #                                     weights ("UNEXPECTED"): expected here, not worth a screenful

    source = resolve(name_or_path, allow_pickle=allow_pickle)
    if source.kind == "gguf":
        raise BertctlError(f"{source.label} is a GGUF causal LM; probing needs a Hugging Face encoder",
                           fix="pass a BERT-style model folder, a bertctl run folder or 'minilm'")
    tokenizer = load_tokenizer(source, trust_remote_code)
    model = load_model(AutoModel, source, trust_remote_code, allow_pickle)
    return wrap(model, tokenizer, source.label, device, precision)


def wrap(model, tokenizer, label: str, device: str = "auto", precision="auto") -> Encoder:
    """`precision`: auto/bf16/fp16/fp32, or an already resolved one."""
    from bertctl.precision import ResolvedPrecision, resolve

    check_fast(tokenizer, label)
    if tokenizer.pad_token is None:  # GPT-style tokenizers: padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    device = pick_device(device)
    model.to(device).eval()
    if not isinstance(precision, ResolvedPrecision):
        precision = resolve(precision, device)
    return Encoder(model, tokenizer, label, device, precision)


def check_fast(tokenizer, label: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise BertctlError(f"the tokenizer of {label} is not a fast (Rust) tokenizer, so it has no offset mapping",
                           fix="save the model with a tokenizer.json (any `tokenizers`-backed tokenizer)")


def seeded_init(config, seed: int = 0, auto_cls=None):
    """A fresh model of `config`'s architecture (`auto_cls`, AutoModel by default),
    initialised under a fixed seed: every random-init control is this one."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(seed)
    return (auto_cls or AutoModel).from_config(config)


def random_like(enc: Encoder, seed: int = 0) -> Encoder:
    """The control: the same architecture and config, freshly initialised with a fixed seed.

    A linear probe can learn a lot from random features (token identity survives random
    layers), so accuracy only means something next to this baseline.
    """
    model = seeded_init(enc.model.config, seed)
    return wrap(model, enc.tokenizer, f"random init ({enc.model.config.model_type}, seed {seed})", enc.device,
                enc.precision)


# -------------------------------------------------------------- finding the words


def _is_cjk(ch: str) -> bool:
    """Scripts written without spaces between words (no word-boundary check there)."""
    cp = ord(ch)
    return (0x3040 <= cp <= 0x30FF or 0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF
            or 0xAC00 <= cp <= 0xD7AF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F)


def _wordlike(ch: str) -> bool:
    return (ch.isalnum() or unicodedata.category(ch) == "Mn") and not _is_cjk(ch)


def find_target(text: str, target: str) -> Span | None:
    """Character span of the first occurrence of `target` as a whole word, or None.

    Exact case is preferred, then any case. An English target must not sit inside a longer
    word ("apple" is not found in "pineapple"); a Chinese target has no such check, since
    Chinese has no spaces to mark word edges.
    """
    for flags in (0, re.IGNORECASE):
        for m in re.finditer(re.escape(target), text, flags):
            before = text[m.start() - 1] if m.start() > 0 else " "
            after = text[m.end()] if m.end() < len(text) else " "
            # a non-CJK letter right next to the match means it is part of a longer word
            if (_wordlike(target[0]) and _wordlike(before)) or (_wordlike(target[-1]) and _wordlike(after)):
                continue
            return m.start(), m.end()
    return None


WORD_RE = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def word_spans(text: str) -> list[tuple[str, Span]]:
    """Words of a space-separated text with their spans (punctuation is not a word)."""
    return [(m.group(0), (m.start(), m.end())) for m in WORD_RE.finditer(text)]


def join_words(words: Sequence[str]) -> tuple[str, list[Span]]:
    """Pre-split words (CoNLL-U) -> one text and each word's exact span."""
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans


def tokens_in_span(offsets: Sequence[Span], span: Span) -> list[int]:
    """Indices of the tokens whose character range overlaps `span`.

    Special and padding tokens have the empty range (0, 0) and never match. A token that
    covers more than the span (a Chinese word inside one larger token) still counts: the
    word's meaning is in that token.
    """
    a, b = span
    return [i for i, (s, e) in enumerate(offsets) if e > s and s < b and e > a]


# ------------------------------------------------------------------------ features


@dataclass
class SpanFeatures:
    layers: np.ndarray   # [L+1, n, H]  contextual vectors, hidden_states order
    static: np.ndarray   # [n, H]       mean input-embedding rows of the span's tokens
    found: np.ndarray    # [n] bool     False: the span fell outside max_length (vectors are 0)
    unk: np.ndarray      # [n] bool     some token of the span is the tokenizer's unknown token
    n_tokens: np.ndarray  # [n] int     tokens per span


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of text indices, shortest texts together: far less padding than file order.
    (Results are written back by index, so the order never shows in the output.)"""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]


def span_features(enc: Encoder, texts: Sequence[str], spans: Sequence[Sequence[Span]], pool: str = "mean",
                  batch_size: int = 32, max_length: int = 128, center: np.ndarray | None = None) -> SpanFeatures:
    """Vectors of every span of every text, at every layer. Spans come out flattened in order.

    pool="mean" averages the span's tokens; pool="first" takes its first token.
    center [L+1, P, H]: subtract center[:, p] from each token at position p first (see
    `position_means`); the static vectors are never centred.
    """
    import torch

    if len(texts) != len(spans):
        raise ValueError("one list of spans per text")
    max_length = enc.limit(max_length)
    n_total = sum(len(s) for s in spans)
    L, H = enc.n_layers, int(enc.model.config.hidden_size)
    layers = np.zeros((L, n_total, H), dtype=np.float32)
    static = np.zeros((n_total, H), dtype=np.float32)
    found = np.zeros(n_total, dtype=bool)
    unk = np.zeros(n_total, dtype=bool)
    n_tokens = np.zeros(n_total, dtype=np.int64)
    unk_id = getattr(enc.tokenizer, "unk_token_id", None)
    emb = enc.model.get_input_embeddings()

    starts = np.concatenate([[0], np.cumsum([len(s) for s in spans])]).astype(int)  # first output row per text
    for order in length_batches([len(t) for t in texts], batch_size):
        batch_texts = [texts[i] for i in order]
        batch = enc.tokenizer(batch_texts, padding=True, truncation=True, max_length=max_length,
                              return_offsets_mapping=True, return_tensors="pt")
        offsets = batch.pop("offset_mapping").tolist()        # [B, T, 2]
        B, T = batch["input_ids"].shape
        # pooling matrix: row r averages the tokens of span r over the flattened [B*T] positions
        targets = [row for i in order for row in range(starts[i], starts[i + 1])]  # output row of each span
        P = torch.zeros(len(targets), B * T)
        r = 0
        for b, i in enumerate(order):
            for span in spans[i]:
                idx = tokens_in_span(offsets[b], span)
                if pool == "first":
                    idx = idx[:1]
                if idx:
                    P[r, [b * T + t for t in idx]] = 1.0 / len(idx)
                    found[targets[r]] = True
                    n_tokens[targets[r]] = len(idx)
                    unk[targets[r]] = unk_id is not None and any(int(batch["input_ids"][b, t]) == unk_id for t in idx)
                r += 1
        batch = {k: v.to(enc.device) for k, v in batch.items()}
        out = enc.hidden_states(batch)
        with torch.no_grad():
            hs = torch.stack(out.hidden_states).float()       # [L+1, B, T, H]
            if center is not None:
                hs = hs - torch.as_tensor(center[:, :T], device=hs.device)[:, None]
            P = P.to(hs.device)
            layers[:, targets] = (P @ hs.reshape(L, B * T, H)).cpu().numpy()   # [L+1, spans, H]
            e = emb(batch["input_ids"]).float().reshape(B * T, H)
            static[targets] = (P @ e).cpu().numpy()
    return SpanFeatures(layers, static, found, unk, n_tokens)


def position_means(enc: Encoder, texts: Sequence[str], skip: Sequence[Span] | None = None, batch_size: int = 32,
                   max_length: int = 128) -> np.ndarray:
    """[L+1, max_length, H]: the mean hidden state at each position over the real tokens
    (no special, padding or `skip` span tokens) of `texts`; positions never seen get the
    mean over all positions.

    Why: every BERT vector carries a component that depends on its position alone (at
    random initialisation the position embedding is as large as the word's own). Two
    occurrences of a word at the same position look alike for that reason only.
    Subtracting each position's mean over a reference corpus removes that component, so
    similarity is left to the word and its context.
    """
    import torch

    L, H = enc.n_layers, int(enc.model.config.hidden_size)
    max_length = enc.limit(max_length)
    sums = np.zeros((L, max_length, H), dtype=np.float64)
    counts = np.zeros(max_length, dtype=np.float64)
    for order in length_batches([len(t) for t in texts], batch_size):
        batch = enc.tokenizer([texts[i] for i in order], padding=True, truncation=True, max_length=max_length,
                              return_offsets_mapping=True, return_tensors="pt")
        offsets = batch.pop("offset_mapping").tolist()
        B, T = batch["input_ids"].shape
        keep = np.zeros((B, T), dtype=bool)
        for b, i in enumerate(order):
            held = set(tokens_in_span(offsets[b], skip[i])) if skip is not None else set()
            keep[b] = [e > s and t not in held for t, (s, e) in enumerate(offsets[b])]
        batch = {k: v.to(enc.device) for k, v in batch.items()}
        hs = torch.stack(enc.hidden_states(batch).hidden_states).float().cpu().numpy()
        w = keep.astype(np.float64)                                    # [B, T]
        sums[:, :T] += np.einsum("lbth,bt->lth", hs, w)
        counts[:T] += w.sum(0)
    if counts.sum() == 0:
        raise BertctlError("no tokens to estimate position means from", fix="give more reference sentences")
    overall = sums.sum(1) / counts.sum()                              # [L+1, H]
    means = np.where(counts[None, :, None] > 0, sums / np.maximum(counts, 1)[None, :, None], overall[:, None])
    return means.astype(np.float32)


def word_features(enc: Encoder, sentences: Sequence[Sequence[str]], pool: str = "mean", batch_size: int = 32,
                  max_length: int = 128) -> SpanFeatures:
    """Vectors of every word of pre-split sentences (treebanks), flattened in order."""
    texts, spans = zip(*(join_words(s) for s in sentences)) if sentences else ((), ())
    return span_features(enc, texts, spans, pool, batch_size, max_length)


CAUSAL_TYPES = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "qwen2", "phi", "phi3", "opt", "bloom",
                "falcon", "gemma", "gemma2", "smollm3"}


def is_causal(enc: Encoder) -> bool:
    return getattr(enc.model.config, "model_type", "") in CAUSAL_TYPES


def sentence_features(enc: Encoder, texts: Sequence[str], pairs: Sequence[str] | None = None, pool: str = "mean",
                      batch_size: int = 32, max_length: int = 128) -> np.ndarray:
    """[L+1, n, H] sentence vectors: mean over non-padding tokens, or the first ([CLS]) token
    (the last real token for a left-to-right model, whose first token sees nothing else)."""
    import torch

    L, H = enc.n_layers, int(enc.model.config.hidden_size)
    max_length = enc.limit(max_length)
    out = np.zeros((L, len(texts), H), dtype=np.float32)
    lengths = [len(t) + (len(pairs[i]) if pairs is not None else 0) for i, t in enumerate(texts)]
    for order in length_batches(lengths, batch_size):
        args = [[texts[i] for i in order]] + ([[pairs[i] for i in order]] if pairs is not None else [])
        batch = enc.tokenizer(*args, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        batch = {k: v.to(enc.device) for k, v in batch.items()}
        hs = torch.stack(enc.hidden_states(batch).hidden_states).float()  # [L+1, B, T, H]
        if pool == "cls" and is_causal(enc):  # a left-to-right model sums up a text in its last token
            mask = batch["attention_mask"]
            last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(1)           # [B], any padding side
            vec = hs[:, torch.arange(hs.shape[1], device=hs.device), last]
        elif pool == "cls":
            vec = hs[:, :, 0]
        else:
            mask = batch["attention_mask"].to(hs.dtype)[None, :, :, None]                        # [1, B, T, 1]
            vec = (hs * mask).sum(2) / mask.sum(2).clamp(min=1)
        out[:, order] = vec.cpu().numpy()
    return out


# --------------------------------------------------------------------- similarity


def cosine_matrix(X: np.ndarray) -> np.ndarray:
    """[n, H] -> [n, n] cosine similarities (a zero vector has similarity 0 to everything)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    U = X / np.where(norms == 0, 1.0, norms)
    return U @ U.T


def resolve_layer(layer: int, n_layers: int) -> int:
    """-1 -> last; out-of-range -> a clear error naming the valid range."""
    if not -n_layers <= layer < n_layers:
        raise BertctlError(f"layer {layer} does not exist: this model has hidden_states 0..{n_layers - 1}",
                           fix=f"use 0 (embeddings) to {n_layers - 1} (last), or -1")
    return layer % n_layers
