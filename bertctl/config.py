"""Recipe blocks shared by the training commands (pure pydantic: no torch import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bertctl.recipe import Precision, Section


class TrainSettings(Section):
    """How the loop runs. `batch_size` is the global batch, whatever the number of processes."""

    epochs: float | None = Field(None, gt=0, description="passes over the data (finetune); or use max_steps")
    max_steps: int | None = Field(None, gt=0, description="optimizer steps (wins over epochs)")
    batch_size: int = Field(32, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup: float = Field(0.06, ge=0, le=1, description="fraction of steps with linear warm-up")
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Precision = Field("auto", description="auto: bf16 where the hardware computes it natively, "
                                                     "fp16 on a CUDA GPU without bf16, else fp32")
    seed: int = 0
    log_every: int = Field(10, gt=0)
    eval_every: int = Field(0, ge=0, description="steps between evaluations; 0 = each epoch end and at the end")
    save_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = each epoch end and at the end")
    keep_checkpoints: int | None = Field(None, gt=0, description="keep only the newest N (default: all)")
    compile: bool = Field(False, description="torch.compile the model (in place; the first steps are slower while "
                                             "it compiles, then each step is faster on a GPU)")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="experiment trackers besides the run folder (each an extra: "
                                          "pip install 'bertctl[tensorboard]')")

    @model_validator(mode="after")
    def _length(self):
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set train.epochs or train.max_steps")
        return self
