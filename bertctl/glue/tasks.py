"""The GLUE tasks as data: one table row per task, no per-task branches in the code.

Everything the suite needs to know about a task lives in its `GlueTask` entry: which
columns hold the text and the label, the label strings (or None for regression), the
official metrics, the file names in the GLUE download script's layout, the matching
splits of the Hugging Face `nyu-mll/glue` dataset, and the leaderboard submission file
names. (Cramming keeps its GLUE task descriptions the same way, one small record each.)

Pure Python: importing this module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One official number of a task: `key` names it in result dicts."""

    key: str      # "mcc", "f1_binary", "accuracy", "pearson", "m_accuracy", ...
    label: str    # how the table heads it: "MCC", "F1", "Acc", "m", ...
    split: str    # which evaluation split it is measured on (an `Eval.name`)
    measure: str  # the key in bertctl.metrics' output: accuracy|f1_binary|mcc|pearson|spearman


@dataclass(frozen=True)
class Eval:
    """A labelled evaluation split (dev). MNLI has two: matched and mismatched."""

    name: str   # "dev", "m", "mm"
    file: str   # path under the task folder in the GLUE layout
    hub: str    # "<config>/<split>" in nyu-mll/glue


@dataclass(frozen=True)
class Test:
    """An unlabelled split the leaderboard scores: predictions go to `submission`."""

    submission: str  # file name inside submission.zip ("MNLI-m.tsv")
    file: str        # path relative to the GLUE root ("MNLI/test_matched.tsv")
    hub: str         # "<config>/<split>"
    index: str = "index"                   # the id column the leaderboard wants echoed back


@dataclass(frozen=True)
class GlueTask:
    name: str                       # folder name in the GLUE layout, and the table row
    inputs: tuple[str, ...]         # text column(s) of train/dev (one sentence or a pair)
    label: str                      # label column of train/dev
    labels: tuple[str, ...] | None  # label strings as in the files and on the leaderboard; None = regression
    metrics: tuple[Metric, ...]     # official metrics, in the order GLUE prints them
    evals: tuple[Eval, ...]
    tests: tuple[Test, ...]
    hub_train: str                  # "<config>/train"
    hub_inputs: tuple[str, ...]     # text columns in nyu-mll/glue
    hub_labels: tuple[str, ...] | None = None  # hub class id -> label string (None: str(id))
    lenient: bool = False           # drop malformed rows (QQP's files have a few), as reference loaders do

    @property
    def kind(self) -> str:
        """The `bertctl finetune` task kind."""
        if self.labels is None:
            return "regression"
        return "nli" if len(self.inputs) == 2 else "cls"

    @property
    def regression(self) -> bool:
        return self.labels is None

    def metric_keys(self) -> list[str]:
        return [m.key for m in self.metrics]


def _one(measures: tuple[tuple[str, str], ...]) -> tuple[Metric, ...]:
    return tuple(Metric(key, label, "dev", key) for key, label in measures)


def _dev(config: str) -> tuple[Eval, ...]:
    return (Eval("dev", "dev.tsv", f"{config}/validation"),)


def _test(name: str, config: str, **kw) -> tuple[Test, ...]:
    return (Test(f"{name}.tsv", f"{name}/test.tsv", f"{config}/test", **kw),)


BINARY = ("0", "1")
NLI3 = ("entailment", "neutral", "contradiction")  # nyu-mll/glue class-id order
NLI2 = ("entailment", "not_entailment")

TASKS: dict[str, GlueTask] = {t.name: t for t in (
    GlueTask("CoLA", ("sentence",), "label", BINARY, _one((("mcc", "MCC"),)),
             _dev("cola"), _test("CoLA", "cola"), "cola/train", ("sentence",)),
    GlueTask("SST-2", ("sentence",), "label", BINARY, _one((("accuracy", "Acc"),)),
             _dev("sst2"), _test("SST-2", "sst2"), "sst2/train", ("sentence",)),
    # MRPC: train/dev name their columns "Quality", "#1 String", ...; strings hold bare quotes
    GlueTask("MRPC", ("#1 String", "#2 String"), "Quality", BINARY, _one((("f1_binary", "F1"), ("accuracy", "Acc"))),
             _dev("mrpc"), _test("MRPC", "mrpc"), "mrpc/train", ("sentence1", "sentence2")),
    GlueTask("STS-B", ("sentence1", "sentence2"), "score", None,
             _one((("pearson", "Pearson"), ("spearman", "Spearman"))),
             _dev("stsb"), _test("STS-B", "stsb"), "stsb/train", ("sentence1", "sentence2")),
    GlueTask("QQP", ("question1", "question2"), "is_duplicate", BINARY, _one((("f1_binary", "F1"), ("accuracy", "Acc"))),
             _dev("qqp"), _test("QQP", "qqp", index="id"), "qqp/train", ("question1", "question2"), lenient=True),
    GlueTask("MNLI", ("sentence1", "sentence2"), "gold_label", NLI3,
             (Metric("m_accuracy", "m", "m", "accuracy"), Metric("mm_accuracy", "mm", "mm", "accuracy")),
             (Eval("m", "dev_matched.tsv", "mnli/validation_matched"),
              Eval("mm", "dev_mismatched.tsv", "mnli/validation_mismatched")),
             (Test("MNLI-m.tsv", "MNLI/test_matched.tsv", "mnli/test_matched"),
              Test("MNLI-mm.tsv", "MNLI/test_mismatched.tsv", "mnli/test_mismatched"),
              # the diagnostic set is predicted by the MNLI model (the leaderboard's "AX")
              Test("AX.tsv", "diagnostic/diagnostic.tsv", "ax/test")),
             "mnli/train", ("premise", "hypothesis"), hub_labels=NLI3),
    GlueTask("QNLI", ("question", "sentence"), "label", NLI2, _one((("accuracy", "Acc"),)),
             _dev("qnli"), _test("QNLI", "qnli"), "qnli/train", ("question", "sentence"), hub_labels=NLI2),
    GlueTask("RTE", ("sentence1", "sentence2"), "label", NLI2, _one((("accuracy", "Acc"),)),
             _dev("rte"), _test("RTE", "rte"), "rte/train", ("sentence1", "sentence2"), hub_labels=NLI2),
    GlueTask("WNLI", ("sentence1", "sentence2"), "label", BINARY, _one((("accuracy", "Acc"),)),
             _dev("wnli"), _test("WNLI", "wnli"), "wnli/train", ("sentence1", "sentence2")),
)}

# What users may type for a task: "sst2", "SST-2", "sts-b", "mnli" ...
ALIASES = {n.lower().replace("-", ""): n for n in TASKS}


def task_names(selection: list[str] | None) -> list[str]:
    """Canonical names, in table order, for what the user selected (None = all)."""
    from bertctl.errors import BertctlError

    if not selection:
        return list(TASKS)
    chosen = set()
    for item in selection:
        key = item.strip().lower().replace("-", "").replace("_", "")
        if key in ("mnlim", "mnlimm"):
            key = "mnli"
        if key not in ALIASES:
            raise BertctlError(f"unknown GLUE task '{item}'", fix=f"choose from: {', '.join(TASKS)}")
        chosen.add(ALIASES[key])
    return [n for n in TASKS if n in chosen]


# ---------------------------------------------------------------------- references
# GLUE leaderboard human baseline (test set) and BERT-base dev results (the BERT paper /
# the transformers run_glue example), in GLUE points (0-100), keyed by Metric.key.

HUMAN = {
    "CoLA": {"mcc": 66.4},
    "SST-2": {"accuracy": 97.8},
    "MRPC": {"f1_binary": 86.3, "accuracy": 80.8},
    "STS-B": {"pearson": 92.7, "spearman": 92.6},
    "QQP": {"f1_binary": 59.5, "accuracy": 80.4},
    "MNLI": {"m_accuracy": 92.0, "mm_accuracy": 92.8},
    "QNLI": {"accuracy": 91.2},
    "RTE": {"accuracy": 93.6},
    "WNLI": {"accuracy": 95.9},
}

BERT_BASE = {
    "CoLA": {"mcc": 56.5},
    "SST-2": {"accuracy": 92.3},
    "MRPC": {"f1_binary": 88.9, "accuracy": 84.1},
    "STS-B": {"pearson": 88.6, "spearman": 88.5},
    "QQP": {"f1_binary": 87.5, "accuracy": 90.7},  # run_glue reports QQP as acc/F1 = 90.7/87.5
    "MNLI": {"m_accuracy": 83.9, "mm_accuracy": 84.1},
    "QNLI": {"accuracy": 90.7},
    "RTE": {"accuracy": 65.7},
    "WNLI": {"accuracy": 56.3},
}

REFERENCES = {"Human baseline": HUMAN, "BERT-base dev": BERT_BASE}
