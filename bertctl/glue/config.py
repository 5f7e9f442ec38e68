"""The `bertctl eval-glue` recipe (pure pydantic: importing it never imports torch).

One shared fine-tuning setting for every task: Cramming's "GLUE-sane" rule (at most 5
epochs, the same hyper-parameters for all tasks, no per-task search), so a GLUE score
measures the pretrained model rather than the tuning budget. `per_task` can still
override anything for one task; the results then say the run was not GLUE-sane.

The model, method (full/LoRA/QLoRA), LoRA/quantisation and train blocks are
`bertctl finetune`'s own blocks: each task runs as one `bertctl finetune` recipe.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from bertctl.config import TrainSettings
from bertctl.recipe import OptionalPath, Section
from bertctl.finetune.config import LoraSettings, ModelSettings, QuantSettings

SANE_MAX_EPOCHS = 5


def _sane_train() -> TrainSettings:
    # Cramming's GLUE-sane setting: 5 epochs, batch 16, lr 4e-5, 10% warm-up, cosine decay.
    return TrainSettings(epochs=5, batch_size=16, lr=4e-5, warmup=0.1, schedule="cosine", log_every=50)


class GlueRecipe(Section):
    command: Literal["eval-glue"] = "eval-glue"
    model: ModelSettings = Field(default_factory=lambda: ModelSettings(name_or_path="minilm"))
    method: Literal["full", "lora", "qlora"] = "full"
    lora: LoraSettings = LoraSettings()
    quant: QuantSettings = QuantSettings()
    train: TrainSettings = Field(default_factory=_sane_train)
    eval_batch_size: int = Field(128, gt=0)

    glue_dir: OptionalPath = Field(None, description="GLUE folder as the download script writes it (else $GLUE_DIR, else the hub)")
    source: Literal["auto", "local", "hub"] = Field("auto", description="auto = glue_dir / $GLUE_DIR if set, else nyu-mll/glue")
    tasks: list[str] | None = Field(None, description="task names (CoLA, SST-2, ...); empty = all nine")
    seeds: int = Field(1, ge=1, description="runs per task (seeds train.seed, train.seed+1, ...); the table shows mean ± std")
    max_train_rows: int | None = Field(None, gt=0, description="train on a seeded random subset of at most N rows per task (CPU runs)")
    max_eval_rows: int | None = Field(None, gt=0, description="evaluate on at most N dev rows (quick checks only: not comparable)")
    max_test_rows: int | None = Field(None, gt=0, description="predict at most N test rows (quick checks only: incomplete submission)")
    submission: bool = Field(True, description="predict the test sets and write submission/*.tsv and submission.zip")
    keep_checkpoints: bool = Field(False, description="keep each finished task's training checkpoints (its model/ is always kept)")
    per_task: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="task -> overrides of this recipe's keys for that task, e.g. {RTE: {train: {epochs: 5}}}")

    @field_validator("tasks", mode="before")
    @classmethod
    def _split_tasks(cls, value):
        """`tasks=CoLA,RTE` on the command line arrives as one string."""
        if isinstance(value, str):
            value = [v for v in value.replace(" ", ",").split(",") if v]
        return value or None

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value):
        if value:
            from bertctl.glue.tasks import ALIASES

            for item in value:
                key = item.strip().lower().replace("-", "").replace("_", "")
                if key not in ALIASES and key not in ("mnlim", "mnlimm"):
                    raise ValueError(f"unknown GLUE task {item!r} (valid: {', '.join(ALIASES.values())})")
        return value

    @field_validator("per_task")
    @classmethod
    def _known_per_task(cls, value):
        from bertctl.glue.tasks import ALIASES

        out = {}
        for name, overrides in value.items():
            key = str(name).lower().replace("-", "").replace("_", "")
            if key not in ALIASES:
                raise ValueError(f"per_task: unknown GLUE task {name!r} (valid: {', '.join(ALIASES.values())})")
            if not isinstance(overrides, dict):
                raise ValueError(f"per_task.{name} must be a mapping of keys to values")
            bad = set(overrides) - PER_TASK_KEYS
            if bad:
                raise ValueError(f"per_task.{name}: unknown key(s) {', '.join(sorted(bad))} "
                                 f"(valid: {', '.join(sorted(PER_TASK_KEYS))})")
            out[ALIASES[key]] = overrides
        return out


# What `per_task` may change: the fine-tuning blocks and the train-size cap.
PER_TASK_KEYS = {"model", "method", "lora", "quant", "train", "eval_batch_size", "max_train_rows"}
