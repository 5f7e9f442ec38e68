"""2 processes (gloo, CPU) give the same loss curve as 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import JOB, _free_port, torchrun


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(JOB.parents[1])}
    subprocess.run([sys.executable, str(JOB), str(tmp_path / "one")], check=True, env=env, capture_output=True)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                          str(JOB), str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    one, two_l = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two_l) == 12
    assert one == pytest.approx(two_l, abs=2e-4)
    # only rank 0 wrote: one metrics file, one log, one set of checkpoints
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoints", "log.txt", "metrics.jsonl", "run.json"]
    log = (tmp_path / "two" / "log.txt").read_text()
    assert log.count("processes") == 1 and "2 processes" in log


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step_and_resume_finishes(tmp_path):
    """SLURM/torchrun signal the processes one by one: a rank that got SIGTERM must not stop
    alone (the others would wait for it forever). Rank 1 alone gets SIGTERM during step 5;
    both stop after step 5, rank 0 saves the checkpoint, and --resume ends where one process
    does without interruption."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(JOB.parents[1])}
    out = tmp_path / "two"
    stopped = torchrun(str(out), "--sigterm-at", "5", env=env, timeout=120)
    assert stopped.returncode != 0 and "exitcode  : 130" in stopped.stderr, stopped.stderr[-3000:]
    lines = sorted(line for line in stopped.stdout.splitlines() if line.startswith("rank "))
    assert lines == ["rank 0: interrupted at step 5/12 (another process was stopped); checkpoint saved in " + str(out),
                     "rank 1: interrupted at step 5/12 (SIGTERM); checkpoint saved in " + str(out)], stopped.stdout
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-0000005"]

    resumed = torchrun(str(out), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step-0000005" in (out / "log.txt").read_text()
    # the reference: one process, uninterrupted (in this process)
    from bertctl.config import TrainSettings
    from bertctl.runs import Run
    from bertctl.train import fit
    from tests import _tiny

    s = TrainSettings(epochs=2, batch_size=32, lr=2e-3, log_every=1, precision="fp32", save_every=0)
    fit(_tiny.model(dropout=0.0), _tiny.job(), s, Run.create(tmp_path / "one", "ddp"))
    one, two = _losses(tmp_path / "one"), _losses(out)
    assert len(one) == len(two) == 12
    assert one == pytest.approx(two, abs=2e-4)
