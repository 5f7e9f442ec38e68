"""`qa`: extractive question answering as a task kind of the fine-tuning loop.

The QA machinery (windows over long contexts, span labels, n-best decoding with SQuAD
2.0 null answers) lives in bertctl.finetune.qa_spans; this module only plugs it into the
Task interface: features are windows, so one row can give several training examples,
and predictions are decoded back to one answer per question. Metrics: the official
SQuAD exact match and F1 (0-100), with has/no-answer breakdowns on SQuAD 2.0 data.
"""

from __future__ import annotations

import math

from bertctl import metrics
from bertctl.errors import BertctlError
from bertctl.finetune import qa_spans as qa
from bertctl.finetune.base import Task, input_text, model_inputs


class QaTask(Task):
    kind = "qa"
    title = "question answering"
    columns = {"id": ["id"], "question": ["question"], "context": ["context"], "answers": ["answers"]}
    required = ("question", "context", "answers")
    optional = ("id",)  # questions without one are numbered by position
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
    answer = "answer"
    shown = ("id", "question")
    outputs = ("start_logits", "end_logits")
    per_token = True

    @classmethod
    def world_rows(cls, world, n, settings, task):
        return world.qa(n)

    @classmethod
    def gold_value(cls, row):
        return row["answers"]["text"]

    @classmethod
    def number(cls, rows):
        """Questions without an id (none, or null) get their position: "0", "1", ..."""
        return [r if r.get("id") is not None else {**r, "id": str(i)} for i, r in enumerate(rows)]

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
        """SQuAD 2.0 decoding (may answer "") when the data has unanswerable questions;
        a trained run's decision (`restore`) is kept."""
        if self.version_2 is None:
            self.version_2 = any(not r["answers"]["text"] for r in rows if "answers" in r)

    def decisions(self):
        return {"qa.version_2": bool(self.version_2)}

    def restore(self, decisions, run_dir):
        """Whether the run answers "no answer": the recipe (or an override) says so, else
        run.json's decision; a run from before that record decided from its dev set, whose
        gold answers its predictions_dev.jsonl holds (read once, here)."""
        if self.version_2 is not None:
            return
        if "qa.version_2" in decisions:
            self.version_2 = bool(decisions["qa.version_2"])
            return
        from bertctl.jsonl import read_jsonl

        self.version_2 = any(r.get("gold") == [] for r in read_jsonl(run_dir / "predictions_dev.jsonl"))

    def encode(self, tokenizer, rows, train):
        q = self.recipe.qa
        prepare = qa.prepare_train_features if train else qa.prepare_eval_features
        return prepare(tokenizer, rows, self.max_length, q.doc_stride, self.counts)

    def report(self):
        n = self.counts.get("questions_cut")
        return [f"{n} question(s) longer than {qa.MAX_QUERY_LENGTH} tokens were cut to {qa.MAX_QUERY_LENGTH}, "
                "as BERT's run_squad does (max_query_length)"] if n else []

    def collate(self, features):
        return qa.collate_qa(features, self.pad_id)

    def units(self, batch):
        return {"span": len(batch["input_ids"])}

    def losses(self, model, batch):
        out = model(**model_inputs(batch))
        return {"span": qa.span_loss_sum(out.start_logits, out.end_logits,
                                         batch["start_positions"], batch["end_positions"])}, {}

    def decode(self, rows, features, outputs):
        """Each question's answer (qa_spans.best_answers holds the one "no answer" rule):
        {"text", "start", "end", "score", "null_score", "null_odds"}."""
        q = self.recipe.qa
        answers = qa.best_answers(rows, features, [o[0] for o in outputs], [o[1] for o in outputs],
                                  q.max_answer_length, q.n_best, bool(self.version_2), q.null_threshold)
        return [answers[r["id"]] for r in rows]

    def fields(self, row, prediction):
        """The answer, its character span in the context and score; on SQuAD 2.0 also the
        null score and null odds (null score - best span score, SQuAD's na-prob)."""
        p = prediction
        out = {"answer": p["text"], "start": p["start"], "end": p["end"], "score": _finite(p["score"])}
        if self.version_2:
            out.update(null_score=_finite(p["null_score"]), null_odds=_finite(p["null_odds"]))
        return out

    def score(self, rows, predictions):
        return metrics.squad({r["id"]: p["text"] for r, p in zip(rows, predictions)}, rows)

    def official_files(self, rows, predictions):
        return qa.official_files(rows, predictions, bool(self.version_2))

    @classmethod
    def input_row(cls, row, n, source):
        """Question and context as text (decoding reads the context's characters); the id
        as given (None: numbered by position)."""
        return {k: v if k == "id" else input_text(v, k, n, source) for k, v in row.items()}

    def predict_rows(self, rows, first_index):
        """`bertctl predict` input: a question without an id gets its input position; an id
        given twice in the input is refused."""
        rows = [{**r, "id": str(first_index + i) if r.get("id") is None else str(r["id"])}
                for i, r in enumerate(rows)]
        seen = {}
        for i, r in enumerate(rows):
            if r["id"] in seen:
                raise BertctlError(f"input rows {first_index + seen[r['id']] + 1} and {first_index + i + 1} both have "
                                   f"question id {r['id']!r}",
                                   fix="give every question its own id, or leave id out (questions are then numbered)")
            seen[r["id"]] = i
        return rows

    def texts(self, rows):
        return [r["question"] for r in rows] + list(dict.fromkeys(r["context"] for r in rows))


def _finite(x) -> float | None:
    return round(float(x), 5) if x is not None and math.isfinite(x) else None
