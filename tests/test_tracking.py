"""Experiment trackers read back for real, offline (TensorBoard events, an MLflow file:
store, a W&B offline run folder), the missing-extra error, and the progress lines."""

from __future__ import annotations

import importlib.util
import json

import pytest

from bertctl.errors import BertctlError
from bertctl.runs import Run

from .helpers import recipe

pytestmark = pytest.mark.slow


def _need(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'bertctl[{module}]')")


def _train(tiny, path, backend, **train):
    from bertctl.finetune.run import finetune

    r = recipe(tiny, "sentiment", train={"report_to": [backend], "log_every": 2, "epochs": 2, **train})
    finetune(r, Run.create(path, "finetune"), quiet=True)
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_events_hold_loss_lr_throughput_and_eval(tmp_path, tiny):
    _need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = _train(tiny, tmp_path / "tb", "tensorboard")
    events = list((tmp_path / "tb" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    scalars = {}
    for f in events:
        acc = EventAccumulator(str(f.parent))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars[tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
    train = [r for r in rows if "loss" in r]
    assert [s for s, _ in scalars["train/loss"]] == [r["step"] for r in train]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in train], rel=1e-5)
    assert {"train/lr", "train/tokens_per_s", "eval/accuracy", "eval/train_loss"} <= set(scalars)
    assert len(scalars["eval/accuracy"]) == 2  # one per epoch


def test_mlflow_file_store_holds_metrics_and_the_recipe(tmp_path, tiny, monkeypatch):
    _need("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    rows = _train(tiny, tmp_path / "ml", "mlflow")
    client = MlflowClient(tracking_uri=(tmp_path / "ml" / "mlruns").resolve().as_uri())
    [exp] = [e for e in client.search_experiments() if e.name == "bertctl"]
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "ml" and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.001" and run.data.params["task"] == "sentiment"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [r["loss"] for r in rows if "loss" in r], rel=1e-5)
    assert "eval/accuracy" in run.data.metrics


def test_wandb_offline_writes_its_run_folder(tmp_path, tiny, monkeypatch):
    _need("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _train(tiny, tmp_path / "wb", "wandb")
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    [record] = runs[0].glob("*.wandb") if len(runs) == 1 else [None]
    data = record.read_bytes()  # offline: config and history are protobuf records in this file, to sync later
    assert b"train.lr" in data and b"train/loss" in data and b"eval/accuracy" in data


def test_missing_backend_is_one_error_naming_the_extra(tmp_path, tiny, monkeypatch):
    from bertctl import tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(BertctlError, match=r"wandb, which is not installed.*pip install 'bertctl\[wandb\]'"):
        _train(tiny, tmp_path / "x", "wandb")
    assert not (tmp_path / "x" / "metrics.jsonl").exists()


def test_unknown_backend_is_a_recipe_error():
    with pytest.raises(Exception, match="report_to"):
        recipe("minilm", train={"report_to": ["comet"]})


def test_progress_lines_when_stdout_is_not_a_terminal(tmp_path, tiny, capsys):
    from bertctl.tracking import progress_line

    line = progress_line("finetune cls", 10, 40, {"loss": 0.5, "lr": 2e-5, "tokens_per_s": 12345.6}, 83)
    assert line == "finetune cls: step 10/40 (25%) | loss 0.5000 | lr 2e-05 | 12,346 tokens/s | ETA 0:01:23"
    from bertctl.finetune.run import finetune

    finetune(recipe(tiny, "sentiment", train={"log_every": 3}), Run.create(tmp_path / "q", "finetune"), quiet=True)
    out = capsys.readouterr().err  # progress: stderr (stdout holds results only)
    lines = [l for l in out.splitlines() if l.startswith("finetune sentiment: step ")]
    assert [l.split()[3] for l in lines] == ["3/6", "6/6"] and "ETA" in lines[0] and "tokens/s" in lines[0]


def test_pretrain_reports_to_tensorboard_too(tmp_path):
    _need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bertctl.pretraining.config import PretrainRecipe
    from bertctl.pretraining.run import pretrain
    from bertctl.recipe import load

    from .helpers import PRETRAIN

    r, _ = load(PretrainRecipe, None, [*PRETRAIN, f"data.cache_dir={tmp_path / 'c'}", "train.report_to=[tensorboard]"],
                default="pretrain")
    pretrain(r, Run.create(tmp_path / "p", "pretrain"))
    [events] = list((tmp_path / "p" / "tensorboard").rglob("events.out.tfevents.*"))[:1]
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    assert {"train/loss", "train/mlm_loss", "eval/mlm_accuracy"} <= set(acc.Tags()["scalars"])
