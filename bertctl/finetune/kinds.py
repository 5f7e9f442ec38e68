"""The fine-tuning task kinds as one table: a kind is a `Task` subclass in a module of its
own (what it reads, its World data, label cleaning, head, decoding, metrics: see
bertctl.finetune.base.Task), and one line here. Nothing else in the package asks which
kind it holds.

Importing this is cheap (no torch): recipes validate their `task` against it.
"""

from __future__ import annotations

from bertctl.errors import BertctlError
from bertctl.finetune.base import Task
from bertctl.finetune.cls import ClsTask
from bertctl.finetune.dna import DnaTask
from bertctl.finetune.qa_task import QaTask
from bertctl.finetune.nli import NliTask
from bertctl.finetune.regression import RegressionTask
from bertctl.finetune.tag import TagTask

# in the order `--help` and error messages list them
KINDS: dict[str, type[Task]] = {t.kind: t for t in (ClsTask, TagTask, NliTask, QaTask, RegressionTask, DnaTask)}

# every name users type -> the kind that runs ("sentiment" -> "cls", "ner" -> "tag", ...)
ALIASES: dict[str, str] = {name: t.kind for t in KINDS.values() for name in (t.kind, *t.aliases)}


def canonical_task(name: str) -> str:
    """The kind a task name runs; an unknown name is one error listing the known ones."""
    kind = ALIASES.get(str(name).lower())
    if kind is None:
        raise BertctlError(f"unknown task {name!r}", fix=f"use one of: {', '.join(ALIASES)}")
    return kind


def get_task(kind: str) -> type[Task]:
    """The Task class of a task kind (or of any of its names)."""
    return KINDS[ALIASES[kind]]
