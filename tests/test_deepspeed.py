"""DeepSpeed ZeRO-2 through `accelerate launch`, for real, on the CPU (DeepSpeed's CPU
accelerator, gloo): bertctl builds its own batches, so the recipe's micro-batch,
accumulation and clipping must reach DeepSpeed's config, and one optimizer step must
equal the same step without DeepSpeed. Skips where deepspeed is not installed (`make`
installs it, so CI runs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ["--task", "cls", "model.max_length=32", "data.world.train=64", "data.world.dev=16",
          "train.max_steps=4", "train.batch_size=8", "train.grad_accum=2", "train.lr=1e-3", "train.warmup=0.0",
          "train.precision=fp32", "train.log_every=1", "train.save_every=2", "train.keep_checkpoints=null"]


def _launch(out: Path, *extra: str, config: Path | None = None) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--config_file", str(config)] if config else [sys.executable]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launch, "-m", "bertctl", "finetune", *RECIPE, *extra, "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _logged(run: Path, key: str) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if "loss" in r]


def test_zero2_trains_like_one_process_checkpoints_and_refuses_resume(tmp_path, tiny):
    pytest.importorskip("deepspeed")
    ds, plain = tmp_path / "zero2", tmp_path / "plain"
    done = _launch(ds, f"model.name_or_path={tiny}", config=ROOT / "docs" / "accelerate" / "deepspeed_zero2.yaml")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    log = (ds / "log.txt").read_text()
    assert "accelerate: DEEPSPEED" in log  # really DeepSpeed, not a plain run
    assert "DeepSpeed: micro-batch 8 per process, 2 accumulation step(s), clipping 1.0" in log
    assert "the accelerate config said otherwise: gradient_accumulation_steps 1 -> 2" in log
    assert sorted(p.name for p in (ds / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]

    done = _launch(plain, f"model.name_or_path={tiny}")
    assert done.returncode == 0, done.stderr[-3000:]
    # the same 4 optimizer steps of 2 micro-batches: the losses agree (the accumulation boundary
    # and the schedule), and so do the gradient norms before clipping, which AdamW's updates
    # would hide: a loss scaled by 1/grad_accum once too often halves them
    assert len(_logged(ds, "loss")) == 4
    assert _logged(ds, "loss") == pytest.approx(_logged(plain, "loss"), rel=2e-3)
    assert _logged(ds, "grad_norm") == pytest.approx(_logged(plain, "grad_norm"), rel=1e-2)

    shutil.rmtree(ds / "checkpoints" / "step-0000004")  # as a run killed after its first checkpoint leaves it
    (ds / "metrics.json").unlink()
    shutil.rmtree(ds / "model")
    done = _launch(ds, f"model.name_or_path={tiny}", "--resume",
                   config=ROOT / "docs" / "accelerate" / "deepspeed_zero2.yaml")
    assert done.returncode != 0
    assert "error: cannot resume" in done.stdout + done.stderr and "not the optimizer state" in done.stdout + done.stderr
