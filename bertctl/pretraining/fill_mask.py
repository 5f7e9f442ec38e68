"""Fill-in-the-blank examples from held-out text: what a pretrained MLM has learnt, shown
rather than measured. A word is blanked in a held-out passage and the finished model
(model/, loaded through transformers' own `fill-mask` pipeline, as a user would) gives its
top 3. Words are picked seeded among whole words of 3+ letters that are one token, so a
single [MASK] stands for the whole word.
"""

from __future__ import annotations

import random
from pathlib import Path


def candidates(ids: list[int], tokenizer) -> list[int]:
    """Positions of single-token alphabetic words of 3+ letters (not a word piece, and not
    followed by one)."""
    tokens = tokenizer.convert_ids_to_tokens(ids)
    out = []
    for i in range(1, len(tokens) - 1):
        t, nxt = tokens[i], tokens[i + 1]
        if t.isalpha() and len(t) >= 3 and not nxt.startswith("##"):
            out.append(i)
    return out


def examples(model_dir: Path, heldout, n: int = 5, seed: int = 0, context: int = 16) -> list[dict]:
    """[{"text": passage with [MASK], "answer": word, "top3": [[word, probability], ...]}]
    from n held-out sequences (`heldout[i].ids`), or [] for a model without an MLM head."""
    from transformers import AutoTokenizer, pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.mask_token is None or len(heldout) == 0:
        return []
    fill = pipeline("fill-mask", model=str(model_dir), tokenizer=tokenizer, top_k=3, device="cpu")
    rng, special = random.Random(seed), set(tokenizer.all_special_ids)
    out = []
    for i in rng.sample(range(len(heldout)), min(len(heldout), 8 * n)):
        ids = [int(t) for t in heldout[i].ids if t not in special]
        spots = [p for p in candidates(ids, tokenizer) if context <= p < len(ids) - 4]
        if not spots:
            continue
        at = rng.choice(spots)
        start = max(0, at - context)
        while start < at and tokenizer.convert_ids_to_tokens(ids[start]).startswith("##"):
            start += 1  # begin at a whole word
        window, k = ids[start:at + context // 2], at - start
        text = (tokenizer.decode(window[:k]) + f" {tokenizer.mask_token} " + tokenizer.decode(window[k + 1:])).strip()
        top = fill(text)
        out.append({"text": text, "answer": tokenizer.convert_ids_to_tokens(ids[at]),
                    "top3": [[p["token_str"].strip(), round(float(p["score"]), 3)] for p in top]})
        if len(out) == n:
            break
    return out


def markdown(rows: list[dict]) -> str:
    """The examples as a Markdown table (README, model card)."""
    lines = ["| held-out passage | answer | model's top 3 |", "|---|---|---|"]
    for r in rows:
        top = ", ".join(f"{w} ({p:.2f})" for w, p in r["top3"])
        lines.append(f"| …{r['text'].replace('|', '/')}… | {r['answer']} | {top} |")
    return "\n".join(lines) + "\n"
