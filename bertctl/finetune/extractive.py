"""`qa`: extractive question answering as a task kind of the fine-tuning loop.

The QA machinery (windows over long contexts, span labels, n-best decoding with SQuAD
2.0 null answers) lives in bertctl.finetune.qa; this module only plugs it into the
Task interface: features are windows, so one row can give several training examples,
and predictions are decoded back to one answer per question. Metrics: the official
SQuAD exact match and F1 (0-100), with has/no-answer breakdowns on SQuAD 2.0 data.
"""

from __future__ import annotations

import json
import math

from bertctl import metrics
from bertctl.errors import BertctlError
from bertctl.finetune import qa
from bertctl.finetune.base import Task, batched_outputs, model_inputs


class QaTask(Task):
    kind = "qa"
    title = "question answering"
    columns = {"id": ["id"], "question": ["question"], "context": ["context"], "answers": ["answers"]}
    required = ("id", "question", "context", "answers")
    gold = "answers"
    pair = "never"
    json_format = "squad"
    settings = "qa"
    has_label_set = False
    inputs = ("question", "context")
    input_extras = ("id",)
    plain_text = False
    auto_class = "AutoModelForQuestionAnswering"
    peft_task_type = "QUESTION_ANS"
    pipeline_tag = "question-answering"
    has_pipeline = False  # transformers 5 removed the question-answering pipeline
    main_metric = "f1"
    outputs = ("start_logits", "end_logits")
    per_token = True

    @classmethod
    def world_rows(cls, world, n, settings, task):
        return world.qa(n)

    @classmethod
    def clean(cls, rows, source, notes, dropped):
        """Every answer where its answer_start says (all misplaced ones listed at once, or
        skipped into `dropped`)."""
        kept = qa.check_answers(rows, source, dropped)
        if not kept:
            raise BertctlError(f"{source}: no question left after skipping misplaced answers",
                               fix="fix the answer_start offsets of that file")
        return kept

    def __init__(self, recipe, labels):
        super().__init__(recipe, None)
        self.version_2 = recipe.qa.version_2

    def config_kwargs(self):
        return {}

    def observe(self, rows):
        """SQuAD 2.0 decoding (may answer "") when the data has unanswerable questions."""
        if self.version_2 is None:
            self.version_2 = any(not r["answers"]["text"] for r in rows if "answers" in r)

    def encode(self, tokenizer, rows, train):
        q = self.recipe.qa
        prepare = qa.prepare_train_features if train else qa.prepare_eval_features
        return prepare(tokenizer, rows, self.max_length, q.doc_stride)

    def collate(self, features):
        return qa.collate_qa(features, self.pad_id)

    def units(self, batch):
        return {"span": len(batch["input_ids"])}

    def losses(self, model, batch):
        out = model(**model_inputs(batch))
        return {"span": qa.span_loss_sum(out.start_logits, out.end_logits,
                                         batch["start_positions"], batch["end_positions"])}, {}

    def predict(self, model, rows, features):
        q = self.recipe.qa
        outputs = batched_outputs(model, features, self.collate, self.recipe.eval_batch_size,
                                  names=self.outputs, per_token=self.per_token)
        answers = qa.best_answers(rows, features, [o[0] for o in outputs], [o[1] for o in outputs],
                                  q.max_answer_length, q.n_best, bool(self.version_2), q.null_threshold)
        return [answers[r["id"]] for r in rows]  # {"text", "start", "end", "score", "null_odds"}

    def score(self, rows, predictions):
        return metrics.squad({r["id"]: p["text"] for r, p in zip(rows, predictions)}, rows)

    def records(self, rows, predictions):
        return [{"index": i, "id": r["id"], "question": r["question"],
                 **({"gold": r["answers"]["text"]} if "answers" in r else {}), "prediction": p["text"],
                 "start": p["start"], "end": p["end"], "score": p["score"]}
                for i, (r, p) in enumerate(zip(rows, predictions))]

    def official_files(self, rows, predictions):
        return qa.official_files(rows, predictions, bool(self.version_2))

    def restore(self, run_dir):
        """Whether the run answers "no answer": the recipe says so, or its dev set had
        unanswerable questions (training decided from its data the same way)."""
        if self.version_2 is not None:
            return
        path = run_dir / "predictions_dev.jsonl"
        self.version_2 = False
        if path.exists():
            with open(path, encoding="utf-8") as f:
                self.version_2 = any(json.loads(line).get("gold") == [] for line in f if line.strip())

    @classmethod
    def input_row(cls, row):
        return row  # JSON values as they are: decoding reads the context's characters

    def predict_rows(self, rows, first_index):
        return [{**r, "id": str(r.get("id", first_index + i))} for i, r in enumerate(rows)]

    def output_records(self, rows, features, outputs):
        q = self.recipe.qa
        nbest = qa.decode_nbest(rows, features, [o[0] for o in outputs], [o[1] for o in outputs],
                                q.max_answer_length, q.n_best)
        out = []
        for row in rows:
            r = nbest[row["id"]]
            top = r["candidates"][0] if r["candidates"] else None
            record = {"id": row["id"]}
            if top is None or (self.version_2 and r["null_score"] > top["score"] + q.null_threshold):
                record.update(answer="", start=None, end=None, score=_finite(r["null_score"]))
            else:
                record.update(answer=top["text"], start=top["start"], end=top["end"], score=round(top["score"], 5))
            if self.version_2:
                record["null_score"] = _finite(r["null_score"])
            out.append(record)
        return out

    def texts(self, rows):
        return [r["question"] for r in rows] + list(dict.fromkeys(r["context"] for r in rows))


def _finite(x) -> float | None:
    return round(float(x), 5) if x is not None and math.isfinite(x) else None
