"""`nli` (alias `pair`): two sequences joined with [SEP] -> a class (entailment /
neutral / contradiction, or any label set: MRPC paraphrase, RTE entailment).

The same head and metrics as `cls`; the only difference is that the second sequence
is required (its column defaults to premise/hypothesis, then sentence1/sentence2).
"""

from __future__ import annotations

from bertctl.finetune.cls import ClsTask


class NliTask(ClsTask):
    kind = "nli"
    aliases = ("pair",)
    columns = {"text": ["premise", "sentence1", "text"], "text_pair": ["hypothesis", "sentence2", "text_pair"],
               "label": ["label", "gold_label"]}
    required = ("text", "text_pair", "label")
    pair = "always"
    inputs = ("text", "text_pair")

    @classmethod
    def world_rows(cls, world, n, settings, task):
        return world.nli(n)
