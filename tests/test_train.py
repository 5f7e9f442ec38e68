"""The shared training loop: resume equivalence, accumulation, NaN stop, Ctrl-C, checkpoints."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from bertctl.config import TrainSettings
from bertctl.errors import BertctlError
from bertctl.runs import Run
from bertctl.train import Interrupted, fit

from . import _tiny


def settings(**kw) -> TrainSettings:
    base = dict(epochs=3, batch_size=32, lr=2e-3, save_every=4, log_every=1, precision="fp32")
    return TrainSettings(**{**base, **kw})


def test_learns_and_writes_metrics(tmp_path):
    run = Run.create(tmp_path / "r", "test")
    res = fit(_tiny.model(), _tiny.job(), settings(epochs=6), run)
    assert res.steps == 36
    assert res.final["eval_accuracy"] > 0.8  # x[0] > 32 is learnable; chance is ~0.5
    rows = run.metrics_history()
    assert {"step", "loss", "lr", "tokens_per_s"} <= set(rows[0])
    assert [p.name for p in run.checkpoints()][-1] == "step-0000036"


def test_resume_gives_identical_final_metrics(tmp_path):
    ref = fit(_tiny.model(), _tiny.job(), settings(), Run.create(tmp_path / "a", "test"))

    class Crash(Exception):
        pass

    def crash(n):  # die in the middle of step 10, after the step-8 checkpoint
        if n == 10:
            raise Crash

    run_b = Run.create(tmp_path / "b", "test")
    with pytest.raises(Crash):
        fit(_tiny.model(), _tiny.job(on_step=crash), settings(), run_b)
    assert run_b.latest_checkpoint().name == "step-0000008"
    res = fit(_tiny.model(), _tiny.job(), settings(), Run.create(tmp_path / "b", "test", resume=True), resume=True)
    assert res.final == ref.final
    losses_a = [r["loss"] for r in Run(tmp_path / "a", "t").metrics_history() if "loss" in r]
    losses_b = [r["loss"] for r in run_b.metrics_history() if "loss" in r]
    assert losses_a == losses_b  # the resumed log reads as one uninterrupted run


def test_grad_accumulation_matches_big_batch(tmp_path):
    a = fit(_tiny.model(0.0), _tiny.job(batch_size=32), settings(epochs=1), Run.create(tmp_path / "a", "t"))
    b = fit(_tiny.model(0.0), _tiny.job(batch_size=16), settings(epochs=1, batch_size=16, grad_accum=2),
            Run.create(tmp_path / "b", "t"))
    assert a.steps == b.steps == 6
    assert a.final["eval_loss"] == pytest.approx(b.final["eval_loss"], rel=1e-4)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    run = Run.create(tmp_path / "r", "test")
    with pytest.raises(BertctlError, match=r"loss became nan at step 6.*step-0000004") as e:
        fit(_tiny.model(), _tiny.job(nan_at=6), settings(), run)
    assert "lower train.lr" in e.value.line()
    assert [p.name for p in run.checkpoints()] == ["step-0000004"]


def test_ctrl_c_saves_checkpoint_and_prints_resume_command(tmp_path):
    def interrupt(n):
        if n == 3:
            os.kill(os.getpid(), signal.SIGINT)

    run = Run.create(tmp_path / "r", "test")
    with pytest.raises(Interrupted) as e:
        fit(_tiny.model(), _tiny.job(on_step=interrupt), settings(), run)
    assert e.value.exit_code == 130
    assert "--resume" in e.value.line() and str(run.path) in e.value.line()
    assert run.latest_checkpoint().name == "step-0000003"
    res = fit(_tiny.model(), _tiny.job(), settings(), Run.create(run.path, "test", resume=True), resume=True)
    assert res.steps == 18


def test_stop_flag_sigterm_and_repeated_signals():
    """SIGTERM asks for a stop like Ctrl-C; copies arriving together (terminal + torchrun,
    SLURM + torchrun) and further SIGTERMs do not interrupt at once; a second Ctrl-C later does."""
    from bertctl.train import _StopFlag

    with _StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # within a second of the first request
        assert stop.requested and stop.reason == "SIGTERM"
        stop._at -= 2  # a second later
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    with _StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.reason == "Ctrl-C"


def test_half_written_checkpoint_is_ignored(tmp_path):
    run = Run.create(tmp_path / "r", "test")
    fit(_tiny.model(), _tiny.job(), settings(epochs=1), run)
    (run.path / "checkpoints" / ".tmp-step-0000099-1").mkdir()  # a kill -9 mid-write leaves this
    (run.path / "checkpoints" / "step-0000100").mkdir()          # no state.json: incomplete
    assert run.latest_checkpoint().name == "step-0000006"


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    run = Run.create(tmp_path / "r", "test")
    fit(_tiny.model(), _tiny.job(), settings(epochs=1), run)
    ckpt = run.latest_checkpoint()
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(BertctlError, match="damaged.*delete"):
        fit(_tiny.model(), _tiny.job(), settings(epochs=2), Run.create(run.path, "test", resume=True), resume=True)


def test_checkpoint_holds_no_pickle(tmp_path):
    run = Run.create(tmp_path / "r", "test")
    fit(_tiny.model(), _tiny.job(), settings(epochs=1), run)
    names = sorted(p.name for p in run.latest_checkpoint().iterdir())
    assert names == ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    json.loads((run.latest_checkpoint() / "state.json").read_text())


def test_batch_must_split_over_processes(tmp_path, monkeypatch):
    from bertctl import train

    class FakeAcc:
        process_index, num_processes = 0, 3

    monkeypatch.setattr(train, "make_accelerator", lambda p: FakeAcc())
    with pytest.raises(BertctlError, match="does not split over 3 processes"):
        fit(_tiny.model(), _tiny.job(), settings(), Run.create(tmp_path / "r", "t"))
