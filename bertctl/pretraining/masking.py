"""Masked-language-model inputs: which tokens to hide, and what to show instead.

Three ways to choose the positions (`MaskSpec.mode`):
  token       independent tokens (BERT)
  whole_word  whole words: a word's `##` continuation pieces are always masked together
  span        runs of whole words with geometric lengths (SpanBERT: p=0.2, at most 10 words)

Each sequence masks exactly round(rate * candidates) tokens (BERT's create_pretraining_data
does the same), so every batch has the same number of predictions give or take rounding
and whole-word granularity. Each chosen token then becomes [MASK] (80 %), a random token
(10 %) or stays as it is (10 %).

Everything takes a numpy Generator. The collator makes one per example from
(seed, epoch, example index), so masks do not depend on batch composition, process
count or where a run was resumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100  # label of positions that are not predicted (PyTorch's cross-entropy default)


@dataclass(frozen=True)
class MaskSpec:
    mask_id: int
    special: np.ndarray  # bool [vocab]: never masked ([CLS], [SEP], [PAD], ...)
    continuation: np.ndarray  # bool [vocab]: "##piece" tokens that continue the previous word
    rate: float = 0.15
    mask_token: float = 0.8
    random_token: float = 0.1
    mode: str = "token"  # token | whole_word | span
    span_p: float = 0.2
    span_max: int = 10

    def __post_init__(self):
        # the ids a 'random token' is drawn from: every non-special token (computed once)
        object.__setattr__(self, "random_pool", np.flatnonzero(~self.special))


def spec_from_tokenizer(tokenizer, objective) -> MaskSpec:
    """Build the per-vocabulary lookup tables once from a Hugging Face tokenizer."""
    vocab_size = len(tokenizer)
    special = np.zeros(vocab_size, dtype=bool)
    special[[i for i in tokenizer.all_special_ids if i < vocab_size]] = True
    continuation = np.zeros(vocab_size, dtype=bool)
    for piece, i in tokenizer.get_vocab().items():
        if piece.startswith("##") and i < vocab_size:
            continuation[i] = True
    return MaskSpec(mask_id=tokenizer.mask_token_id, special=special, continuation=continuation,
                    rate=objective.mask_rate, mask_token=objective.mask_token, random_token=objective.random_token,
                    mode=objective.masking, span_p=objective.span_p, span_max=objective.span_max)


# ------------------------------------------------------------------ choosing positions


def word_groups(ids: np.ndarray, spec: MaskSpec) -> list[np.ndarray]:
    """Positions of each word (a non-## token plus the ## pieces after it); specials excluded."""
    candidates = np.flatnonzero(~spec.special[ids])
    if len(candidates) == 0:
        return []
    # a word starts at a non-continuation piece, or where the previous position is not a candidate
    starts = ~spec.continuation[ids[candidates]]
    starts[0] = True
    starts[1:] |= np.diff(candidates) != 1
    return np.split(candidates, np.flatnonzero(starts)[1:])


def choose_positions(ids: np.ndarray, spec: MaskSpec, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions to predict in one sequence of token ids."""
    candidates = np.flatnonzero(~spec.special[ids])
    if len(candidates) == 0:
        return candidates
    budget = max(1, int(round(spec.rate * len(candidates))))
    if spec.mode == "token":
        return np.sort(rng.choice(candidates, size=min(budget, len(candidates)), replace=False))
    words = word_groups(ids, spec)
    if spec.mode == "whole_word":
        chosen = _whole_words(words, budget, rng)
    elif spec.mode == "span":
        chosen = _spans(words, budget, rng, spec.span_p, spec.span_max)
    else:
        raise ValueError(f"unknown masking mode {spec.mode!r}")
    return np.sort(np.concatenate([words[w] for w in chosen]))


def _whole_words(words: list[np.ndarray], budget: int, rng: np.random.Generator) -> list[int]:
    """Random words until the budget is met; a word that would overshoot is skipped (as in BERT)."""
    chosen, count = [], 0
    for w in rng.permutation(len(words)):
        if count >= budget:
            break
        if count + len(words[w]) > budget:
            continue
        chosen.append(int(w))
        count += len(words[w])
    return chosen or [int(rng.integers(len(words)))]  # every sequence predicts something


def _spans(words: list[np.ndarray], budget: int, rng: np.random.Generator, p: float, longest: int) -> list[int]:
    """SpanBERT: span length (in words) ~ Geometric(p) clipped to `longest`, at a random
    word; spans are added until the budget of tokens is reached (never overshooting it by
    more than part of the last word)."""
    chosen: set[int] = set()
    count, tries = 0, 0
    while count < budget and tries < 10 * budget + 10:
        tries += 1
        length = min(int(rng.geometric(p)), longest)
        start = int(rng.integers(len(words)))
        for w in range(start, min(start + length, len(words))):
            if count >= budget:
                break
            if w not in chosen:
                chosen.add(w)
                count += len(words[w])
    return sorted(chosen)


# ---------------------------------------------------------------- corrupting inputs


def mask_sequence(ids: np.ndarray, spec: MaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Returns (corrupted input ids, the positions predicted). Targets are ids[positions]."""
    positions = choose_positions(ids, spec, rng)
    inputs = ids.copy()
    u = rng.random(len(positions))
    to_mask = positions[u < spec.mask_token]
    to_random = positions[(u >= spec.mask_token) & (u < spec.mask_token + spec.random_token)]
    inputs[to_mask] = spec.mask_id
    inputs[to_random] = spec.random_pool[rng.integers(len(spec.random_pool), size=len(to_random))]
    return inputs, positions
