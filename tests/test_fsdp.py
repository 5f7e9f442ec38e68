"""Checkpoints and final models of sharded training (FSDP, DeepSpeed).

accelerate turns FSDP on only for GPU runs (on CPU it silently runs DDP), so the FSDP test
applies torch's `fully_shard` (FSDP2) and `FullyShardedDataParallel` (FSDP1) by hand in 2
gloo processes on CPU and drives bertctl's checkpoint helpers with them (fsdp_job.py says
what is checked). DeepSpeed is not installed here: its checkpoint path is exercised with
a stand-in for accelerate's `get_state_dict`, and resuming from such a checkpoint must be
one clear error.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from .helpers import torchrun

JOB = Path(__file__).with_name("fsdp_job.py")


@pytest.mark.slow
def test_checkpoints_and_final_model_under_fsdp_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(JOB.parents[1]), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = torchrun(str(tmp_path), env=env, job=JOB)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary))
    assert summary["world"] == 2 and summary["rank0_shard_rows"] == 32  # rank 0 held half the embedding rows
    assert summary["checkpoint_weights"] == 42 and summary["final_tensors"] == 42
    # the usual checkpoint files; the run folder holds only what rank 0 wrote
    assert sorted(p.name for p in (tmp_path / "fsdp2" / "checkpoints" / "step-0000002").iterdir()) == \
        ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    assert sorted(p.name for p in (tmp_path / "fsdp2").iterdir()) == ["checkpoints", "model"]


class _FakeDeepSpeed:
    """Stands in for an Accelerator under DeepSpeed ZeRO-1/2 (get_state_dict: the full weights)."""

    def __init__(self, model):
        from accelerate.utils import DistributedType

        self.distributed_type, self.model = DistributedType.DEEPSPEED, model

    def get_state_dict(self, model):
        return {k: v.clone() for k, v in model.state_dict().items()}

    def unwrap_model(self, model):
        return model


def test_deepspeed_checkpoints_keep_weights_and_refuse_resume(tmp_path):
    import torch
    from safetensors.torch import load_file

    from bertctl.config import TrainSettings
    from bertctl.errors import BertctlError
    from bertctl.runs import Run
    from bertctl.checkpoints import DEEPSPEED, PLAIN, load_checkpoint, save_checkpoint, sharding, trainable_state
    from bertctl.train import lr_lambda, make_optimizer
    from tests import _tiny

    model = _tiny.model()
    s = TrainSettings(max_steps=4)
    opt = make_optimizer(model, s)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(s, 4))
    acc = _FakeDeepSpeed(model)
    assert sharding(model, acc) == DEEPSPEED and sharding(model) == PLAIN
    run = Run.create(tmp_path / "run", "x")
    ckpt = save_checkpoint(run, 1, model, opt, sched, {"epoch": 0, "batch": 1}, None, DEEPSPEED, None, acc)
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.safetensors", "rng.safetensors", "state.json"]
    weights = load_file(str(ckpt / "model.safetensors"))
    assert weights.keys() == trainable_state(model).keys()
    assert json.loads((ckpt / "state.json").read_text())["optimizer_saved"] is False
    for kind in (PLAIN, DEEPSPEED):  # resuming it without DeepSpeed, or with
        with pytest.raises(BertctlError) as e:
            load_checkpoint(ckpt, _tiny.model(), opt, sched, kind)
        assert "holds no optimizer state" in e.value.line() or "not the optimizer state" in e.value.line()
        assert "start a new run" in e.value.line() and "docs/scaling.md" in e.value.line()
