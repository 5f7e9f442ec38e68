"""`regression`: one or two sequences -> a number (STS-B similarity 0-5).

A one-output linear head on [CLS], trained with mean squared error (summed here; the
loop divides by the number of examples). Metrics: Pearson and Spearman correlation.
The saved config has problem_type "regression", so `pipeline("text-classification",
function_to_apply="none")` returns the raw score.
"""

from __future__ import annotations

import math

from bertctl import metrics
from bertctl.errors import BertctlError
from bertctl.finetune.base import Task, labelled_rows, model_inputs
from bertctl.finetune.cls import sequence_features


class RegressionTask(Task):
    kind = "regression"
    aliases = ("sts",)
    columns = {"text": ["sentence1", "text", "premise"], "text_pair": ["sentence2", "text_pair", "hypothesis"],
               "label": ["score", "label"]}
    optional = ("text_pair",)
    pair = "optional"
    has_label_set = False
    main_metric = "pearson"
    answer = "value"

    @classmethod
    def world_rows(cls, world, n, settings, task):
        return world.similarity(n)

    @classmethod
    def clean(cls, rows, source, notes, dropped):
        """Numbers only, finite: a NaN target makes every loss NaN; an infinite one, every gradient."""
        rows, label_type = labelled_rows(rows, source, notes)
        if label_type != "number":
            example = rows[0]["label"]
            raise BertctlError(f"{source}: regression needs numeric labels, got text such as {example!r}",
                               fix="map data.columns.label to a numeric column, or use a classification task")
        bad = [(i, r["label"]) for i, r in enumerate(rows, 1) if not math.isfinite(float(r["label"]))]
        if bad:
            raise BertctlError(f"{source}: {len(bad)} label(s) are NaN or infinite (row {bad[0][0]}: {bad[0][1]!r})",
                               fix="drop or fix those rows")
        return [{**r, "label": float(r["label"])} for r in rows]

    def decode(self, rows, features, outputs):
        return [round(float(o[0][0]), 5) for o in outputs]

    def fields(self, row, prediction):
        return {"value": prediction}

    def config_kwargs(self):
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}

    def encode(self, tokenizer, rows, train):
        return sequence_features(tokenizer, rows, self.max_length, self.uses_pair(rows), lambda r: float(r["label"]),
                                 counts=self.counts)

    def units(self, batch):
        return {"mse": len(batch["labels"])}

    def losses(self, model, batch):
        import torch.nn.functional as F

        pred = model(**model_inputs(batch)).logits.float().squeeze(-1)  # (B,)
        return {"mse": F.mse_loss(pred, batch["labels"], reduction="sum")}, {}

    def score(self, rows, predictions):
        return metrics.regression([r["label"] for r in rows], predictions)
