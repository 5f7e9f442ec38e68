"""`dna`: the seed's non-language experiment. Sequences over A/C/G/T from the World
generator, labelled by a hidden rule (a motif, or a high GC share), classified like
`cls`.

Input that is not language: each base (kmer=1) or k-mer is either spelled as is
(map_to_words=false: "A C G T", which the tokenizer lower-cases into letter tokens) or
replaced by one fixed, whole word of the model's vocabulary (map_to_words=true, the
default: e.g. "GATA" -> "harbor"), so every unit is exactly one token whose pretrained
embedding carries meaning unrelated to DNA. Comparing `model.init: pretrained` with
`random` (`compare_init: true`) then asks whether pretraining on language helps on
such input at all. The mapping depends only on the vocabulary and k, so the pretrained
and random-init runs see identical token sequences.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter

from bertctl.errors import BertctlError
from bertctl.finetune.cls import ClsTask

BASES = "ACGT"


def kmers(sequence: str, k: int, stride: int) -> list[str]:
    sequence = sequence.strip().upper()
    if len(sequence) < k:
        return [sequence] if sequence else []
    return [sequence[i:i + k] for i in range(0, len(sequence) - k + 1, stride)]


def word_map(vocab: dict[str, int], k: int) -> dict[str, str]:
    """Each of the 4**k k-mers -> a distinct plain lower-case word of the vocabulary
    (3+ letters, not a sub-word piece or special token), chosen by a fixed seed."""
    words = sorted(w for w in vocab if re.fullmatch(r"[a-z]{3,}", w))
    units = ["".join(p) for p in itertools.product(BASES, repeat=k)]
    if len(words) < len(units):
        raise BertctlError(f"the vocabulary has {len(words)} plain words, too few for {len(units)} {k}-mers",
                           fix="use a smaller dna.kmer or dna.map_to_words=false")
    chosen = random.Random(f"bertctl-dna:{k}").sample(words, len(units))
    return dict(zip(units, chosen))


class DnaTask(ClsTask):
    kind = "dna"
    aliases = ()
    title = "dna"
    columns = {"text": ["sequence", "text"], "label": ["label"]}
    settings = "dna"

    @classmethod
    def world_rows(cls, world, n, settings, task):
        return world.dna(n)

    def setup(self, tokenizer):
        super().setup(tokenizer)
        d = self.recipe.dna
        self.stride = d.stride or d.kmer
        self.mapping = word_map(tokenizer.get_vocab(), d.kmer) if d.map_to_words else None
        self.odd_symbols: Counter = Counter()
        self.odd_sequences = 0

    def spell(self, sequence: str) -> str:
        units = kmers(str(sequence), self.recipe.dna.kmer, self.stride)
        odd = [c for c in str(sequence).strip().upper() if c not in BASES]
        if odd:  # counted, so the run says how much of the input was not DNA (N, gaps, typos)
            self.odd_symbols.update(odd)
            self.odd_sequences += 1
        if self.mapping is None:
            return " ".join(units)
        return " ".join(self.mapping.get(u, "unknown") for u in units)  # "unknown": a non-ACGT letter

    def report(self) -> list[str]:
        if not self.odd_symbols:
            return super().report()
        shown = ", ".join(f"{c!r} x{n}" for c, n in self.odd_symbols.most_common(5))
        how = "mapped to the word 'unknown'" if self.mapping is not None else "kept as letters"
        return [f"dna: {sum(self.odd_symbols.values())} symbol(s) outside A/C/G/T in {self.odd_sequences} "
                f"sequence(s) ({shown}); k-mers holding them were {how}", *super().report()]

    def text_of(self, row):
        return {**row, "text": self.spell(row["text"])}
