"""`nli` (alias `pair`): two sequences joined with [SEP] -> a class (entailment /
neutral / contradiction, or any label set: MRPC paraphrase, RTE entailment).

The same head and metrics as `cls`; the only difference is that the second sequence
is required (its column defaults to premise/hypothesis, then sentence1/sentence2).
"""

from __future__ import annotations

from bertctl.finetune.cls import ClsTask


class NliTask(ClsTask):
    kind = "nli"

    def uses_pair(self, rows):
        return True
