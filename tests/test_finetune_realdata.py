"""The built-in real-data recipes on ../shared/data (GLUE TSVs, UD EWT CoNLL-U, SNLI
JSONL, the SQuAD 2.0 sample), kept SMALL: subsets, one epoch, mostly a tiny model.
Skipped where ../shared/data is absent. The full-size figures are one-off runs (see
the README), not tests."""

from __future__ import annotations

import json

import pytest

from bertctl.runs import Run


pytestmark = pytest.mark.slow


def _run(name, tmp_path, shared_data, overrides):
    from bertctl.recipe import load
    from bertctl.finetune.config import FinetuneRecipe
    from bertctl.finetune.run import finetune

    recipe, _ = load(FinetuneRecipe, name, [f"data.root={shared_data}", "train.epochs=1", *overrides], name)
    dev = finetune(recipe, Run.create(tmp_path / name, "finetune"), quiet=True)
    return dev, json.loads((tmp_path / name / "metrics.json").read_text())


def small(tiny, rows=64):
    return [f"model.name_or_path={tiny}", f"data.max_train_samples={rows}", "data.max_eval_samples=48",
            "train.precision=fp32", "train.lr=1e-3"]


def test_sst2_glue_tsv(tmp_path, shared_data, tiny):
    dev, s = _run("finetune_sst2", tmp_path, shared_data, small(tiny))
    assert s["labels"] == ["0", "1"] and s["n_train"] == 64 and s["n_dev"] == 48 and "accuracy" in dev


def test_mrpc_quirky_tsv_pairs(tmp_path, shared_data, tiny):
    dev, s = _run("finetune_mrpc", tmp_path, shared_data, small(tiny))
    assert s["kind"] == "nli" and s["labels"] == ["0", "1"]
    first = json.loads((tmp_path / "finetune_mrpc" / "predictions_dev.jsonl").read_text().splitlines()[0])
    assert first["text"].startswith("He said the foodservice pie business") and first["text_pair"].startswith('" The')


def test_rte_text_labels(tmp_path, shared_data, tiny):
    _, s = _run("finetune_rte", tmp_path, shared_data, small(tiny))
    assert s["labels"] == ["entailment", "not_entailment"]


def test_stsb_float_scores(tmp_path, shared_data, tiny):
    dev, s = _run("finetune_stsb", tmp_path, shared_data, small(tiny))
    assert set(dev) == {"pearson", "spearman"} and s["labels"] is None
    first = json.loads((tmp_path / "finetune_stsb" / "predictions_dev.jsonl").read_text().splitlines()[0])
    assert first["gold"] == 5.0 and isinstance(first["prediction"], float)


def test_ewt_dev_split_into_train_and_test_parts(tmp_path, shared_data, tiny):
    dev, s = _run("finetune_ewt_pos", tmp_path, shared_data, small(tiny, rows=600))
    assert s["n_train"] == 600 and "accuracy" in dev
    assert "held-out 20%" in s["data"]["dev"] and "PROPN" in s["labels"] and len(s["labels"]) >= 16
    assert any("1601 train / 400 dev" in n for n in s["notes"])  # 2,001 sentences, seeded 80/20


def test_snli_dash_labels_dropped_and_split(tmp_path, shared_data, tiny):
    _, s = _run("finetune_snli", tmp_path, shared_data, [f"model.name_or_path={tiny}", "data.max_train_samples=400",
                                                         "data.max_eval_samples=400", "train.precision=fp32"])
    assert s["labels"] == ["contradiction", "entailment", "neutral"]
    dropped = [n for n in s["notes"] if n.startswith("dropped")]
    assert dropped and all("gold label" in n for n in dropped)
    assert s["n_train"] < 400 or s["n_dev"] < 400  # "-" rows are gone from at least one of the 400-row subsets


def test_squad2_sample_end_to_end(tmp_path, shared_data, tiny):
    dev, s = _run("finetune_squad2", tmp_path, shared_data, [f"model.name_or_path={tiny}", "train.precision=fp32",
                                                             "model.max_length=192", "qa.doc_stride=64"])
    assert {"exact_match", "f1", "has_answer_f1", "no_answer_f1"} <= set(dev)
    assert s["n_train"] + s["n_dev"] == 208

