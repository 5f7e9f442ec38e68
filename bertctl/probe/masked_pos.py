"""Masked-word accuracy per part of speech: what the pretraining objective itself gets
right, class by class (Chiang, Huang and Lee 2020, "Pretrained Language Model Embryology").

Every word of a tagged sentence is masked once: the words of a sentence are dealt into
`1 / rate` groups (word i goes to group i mod k), and each group is masked in its own copy
of the sentence, all sub-tokens of a word at once (whole-word masking, so a word's other
pieces do not give it away). A word counts as predicted when the model's top token at
every one of its masked positions is the word's own piece. Accuracy is then grouped by
the word's tag (UPOS in UD data), so nouns, verbs and function words get a curve each.
"""

from __future__ import annotations

from collections import defaultdict

# UPOS tags that name function words (closed classes): one extra row sums them up
FUNCTION_TAGS = ("ADP", "AUX", "CCONJ", "DET", "PART", "PRON", "SCONJ")


def masked_copies(sentences: list[tuple[list[str], list[str]]], rate: float = 0.15):
    """(words, tags, masked word indexes) per copy: every word masked in exactly one copy."""
    groups = max(1, round(1 / rate))
    for words, tags in sentences:
        for g in range(min(groups, len(words))):
            picked = list(range(g, len(words), groups))
            if picked:
                yield words, tags, picked


def accuracy_by_tag(model, tokenizer, sentences: list[tuple[list[str], list[str]]], precision,
                    device: str = "cpu", batch_size: int = 64, max_length: int = 128, rate: float = 0.15) -> dict:
    """{tag: {"correct": n, "total": n, "accuracy": x}} plus "ALL" and "FUNCTION" rows.
    `model` is a masked LM (e.g. AutoModelForMaskedLM) in eval mode on `device`."""
    import torch

    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    copies = list(masked_copies(sentences, rate))
    for start in range(0, len(copies), batch_size):
        chunk = copies[start:start + batch_size]
        enc = tokenizer([c[0] for c in chunk], is_split_into_words=True, truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        ids = enc["input_ids"].clone()
        targets = []  # (row, [positions], gold ids, tag)
        for row, (words, tags, picked) in enumerate(chunk):
            positions = defaultdict(list)
            for pos, wid in enumerate(enc.word_ids(row)):
                if wid is not None:
                    positions[wid].append(pos)
            for wi in picked:
                if positions.get(wi):  # a word cut off by max_length, or with no pieces, is not scored
                    targets.append((row, positions[wi], ids[row, positions[wi]].tolist(), tags[wi]))
                    ids[row, positions[wi]] = tokenizer.mask_token_id
        with torch.no_grad(), precision.autocast_context(device):
            logits = model(input_ids=ids.to(device), attention_mask=enc["attention_mask"].to(device)).logits
        top = logits.argmax(-1).cpu()
        for row, positions, gold, tag in targets:
            hit = top[row, positions].tolist() == gold
            for name in (tag, "ALL") + (("FUNCTION",) if tag in FUNCTION_TAGS else ()):
                total[name] += 1
                correct[name] += hit
    return {tag: {"correct": correct[tag], "total": total[tag], "accuracy": correct[tag] / total[tag]}
            for tag in sorted(total, key=lambda t: -total[t])}


def half_final_step(steps: list[int], values: list[float]) -> int | None:
    """The first step at which a curve reaches half of its final value (None: it never
    rises above zero). Chiang et al. read 'when is a class learnt' off such curves."""
    if not values or values[-1] <= 0:
        return None
    return next(s for s, v in zip(steps, values) if v >= values[-1] / 2)
