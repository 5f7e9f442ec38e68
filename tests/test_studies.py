"""The pretraining studies in benchmarks/ (pretrain_helps, pretrain_choices) run end to end
at tiny size: a micro pretrain run, one task, one seed. They read real data (SST-2, UD EWT)
and skip where ../shared/data is absent."""

from __future__ import annotations

import json
import sys

import pytest

from .conftest import ROOT, SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "glue" / "SST-2").is_dir(), reason="../shared/data is absent")
sys.path.insert(0, str(ROOT / "benchmarks"))

MICRO = ["data.world.n_docs=60", "tokenizer.vocab_size=200", "model.hidden=32", "model.heads=2",
         "model.intermediate=64", "model.layers=1", "model.max_length=32", "train.max_steps=4", "train.batch_size=8",
         "train.precision=fp32", "train.eval_every=0", "eval.max_sequences=16", "eval.fill_mask=0"]


def test_pretrain_helps_compares_both_inits_and_draws_its_plots(cli, tmp_path, monkeypatch):
    import pretrain_helps

    code, _, err = cli("pretrain", *MICRO, f"data.cache_dir={tmp_path / 'cache'}", "--out", tmp_path / "pre")
    assert code == 0, err
    monkeypatch.setitem(pretrain_helps.TASKS, "sst2", ("finetune_sst2", [
        "data.max_train_samples=48", "data.max_eval_samples=32", "train.epochs=1", "train.precision=fp32"]))
    out = tmp_path / "helps"
    assert pretrain_helps.main(["--model", str(tmp_path / "pre"), "--tasks", "sst2", "--seeds", "1",
                                "--curve", "24", "--curve-seeds", "1", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    row = res["tasks"]["sst2"]
    assert len(row["pretrained"]) == len(row["random"]) == 1 and row["gap"] == row["pretrained_mean"] - row["random_mean"]
    assert set(res["curve"]) == {"24", "48"}  # the curve's own size and the task's rows
    assert (out / "training_curves.png").exists() and (out / "learning_curve.png").exists()
