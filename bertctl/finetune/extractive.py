"""`qa`: extractive question answering as a task kind of the fine-tuning loop.

The QA machinery (windows over long contexts, span labels, n-best decoding with SQuAD
2.0 null answers) lives in bertctl.finetune.qa; this module only plugs it into the
Task interface: features are windows, so one row can give several training examples,
and predictions are decoded back to one answer per question. Metrics: the official
SQuAD exact match and F1 (0-100), with has/no-answer breakdowns on SQuAD 2.0 data.
"""

from __future__ import annotations

from bertctl import metrics
from bertctl.finetune import qa
from bertctl.finetune.base import Task, batched_outputs, model_inputs


class QaTask(Task):
    kind = "qa"
    auto_class = "AutoModelForQuestionAnswering"
    pipeline_task = None  # transformers 5 removed the question-answering pipeline
    main_metric = "f1"
    needs_fast_tokenizer = True

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
                                  names=("start_logits", "end_logits"), per_token=True)
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

    def texts(self, rows):
        return [r["question"] for r in rows] + list(dict.fromkeys(r["context"] for r in rows))
