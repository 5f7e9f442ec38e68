"""2 processes (gloo, CPU) give the same loss curve as 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

JOB = Path(__file__).with_name("ddp_job.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoints", "log.txt", "metrics.jsonl"]
    log = (tmp_path / "two" / "log.txt").read_text()
    assert log.count("processes") == 1 and "2 processes" in log
