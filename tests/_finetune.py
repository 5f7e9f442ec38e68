"""A small fine-tuning recipe on World data, shared by the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def recipe(model_path: Path | str, task: str = "cls", **extra):
    """A small FinetuneRecipe on World data: fp32 (bf16 is slower for tiny matmuls)."""
    from bertctl.finetune.config import FinetuneRecipe

    base = {"task": task, "model": {"name_or_path": str(model_path), "max_length": 64},
            "data": {"world": {"train": 96, "dev": 32}},
            "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "precision": "fp32", "log_every": 1,
                      "keep_checkpoints": 1, "warmup": 0.0}}
    return FinetuneRecipe.model_validate(_merge(base, extra))
