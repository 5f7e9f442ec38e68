"""`bertctl finetune`: data loading, label handling, sub-token alignment, batching, recipes.

Unit tests here are fast (no training). End-to-end runs are in test_finetune_e2e.py,
LoRA/QLoRA in test_finetune_methods.py, real data in test_finetune_realdata.py. The
`tiny` model is a conftest fixture; the `recipe` helper is in tests/helpers.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertctl.errors import BertctlError

from .helpers import recipe

# ----------------------------------------------------------------------------- helpers


def data_settings(**kw):
    from bertctl.finetune.config import DataSettings

    return DataSettings.model_validate(kw)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- alignment


def test_align_labels_first_subtoken_only():
    from bertctl.finetune.tag import IGNORE, align_labels

    # [CLS] un ##flinch ##ingly bleak [SEP]: word 0 has three pieces
    labels, first = align_labels([None, 0, 0, 0, 1, None], [7, 3])
    assert labels == [IGNORE, 7, IGNORE, IGNORE, 3, IGNORE]
    assert first == [1, 4]
    # a word cut off by truncation has no first sub-token
    labels, first = align_labels([None, 0, 1, None], [5, 6, 7])
    assert first == [1, 2, -1] and labels == [IGNORE, 5, 6, IGNORE]


def test_tag_encode_with_a_real_wordpiece_tokenizer(tiny):
    from bertctl.models import load_tokenizer, resolve
    from bertctl.finetune.tag import IGNORE, TagTask

    tok = load_tokenizer(resolve(str(tiny)))
    rows = [{"tokens": ["unflinchingly", "bleak", "."], "tags": ["ADV", "ADJ", "PUNCT"]}]
    task = TagTask(recipe(tiny, "tag"), ["ADJ", "ADV", "PUNCT"])
    task.setup(tok)
    (f,) = task.encode(tok, rows, train=True)
    pieces = tok.convert_ids_to_tokens(f["input_ids"])
    assert len(pieces) > 5  # "unflinchingly" is several word pieces
    labelled = [(pieces[i], lab) for i, lab in enumerate(f["labels"]) if lab != IGNORE]
    assert labelled == [("un", 1), ("bleak", 0), (".", 2)]
    assert [pieces[p] for p in f["first"]] == ["un", "bleak", "."]
    # prediction reads each word's first sub-token back
    import torch

    class Fake:
        def parameters(self):
            yield torch.zeros(1)

        def __call__(self, **batch):
            n = batch["input_ids"].shape[1]
            logits = torch.zeros(1, n, 3)
            for word, pos in enumerate(f["first"]):
                logits[0, pos, [1, 0, 2][word]] = 5.0  # ADV, ADJ, PUNCT
            return type("Out", (), {"logits": logits})()

    assert task.predict(Fake(), rows, [f]) == [["ADV", "ADJ", "PUNCT"]]


# ----------------------------------------------------------------------------- bad input


def test_missing_column_names_the_available_ones(tmp_path):
    from bertctl.finetune.data import load_splits

    train = write(tmp_path / "train.tsv", "sentence\tlabel\nit is good\t1\nit is bad\t0\n")
    with pytest.raises(BertctlError) as e:
        load_splits(data_settings(train=str(train), dev=str(train), columns={"text": "review"}), "cls")
    msg = str(e.value)
    assert "'review'" in msg and "'sentence'" in msg and "'label'" in msg and "data.columns.text" in msg


def test_nli_without_a_second_text_column_is_an_error(tmp_path):
    from bertctl.finetune.data import load_splits

    train = write(tmp_path / "t.jsonl", '{"text": "a", "label": "x"}\n')
    with pytest.raises(BertctlError, match="text_pair.*available columns: 'text', 'label'"):
        load_splits(data_settings(train=str(train), dev=str(train)), "nli")


def test_empty_file_is_an_error(tmp_path):
    from bertctl.finetune.data import load_splits

    empty = write(tmp_path / "train.tsv", "")
    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\nok\t1\n")
    with pytest.raises(BertctlError, match="is empty"):
        load_splits(data_settings(train=str(empty), dev=str(dev)), "cls")


def test_dev_label_not_in_train_is_named(tmp_path):
    from bertctl.finetune.data import load_splits

    train = write(tmp_path / "train.jsonl", '{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n')
    dev = write(tmp_path / "dev.jsonl", '{"text": "c", "label": "pos"}\n{"text": "d", "label": "meh"}\n')
    with pytest.raises(BertctlError) as e:
        load_splits(data_settings(train=str(train), dev=str(dev)), "cls")
    assert "'meh'" in str(e.value) and "dev.jsonl" in str(e.value)


def test_unseen_tag_in_dev_is_named(tmp_path):
    from bertctl.finetune.data import load_splits

    train = write(tmp_path / "train.conll", "the DET\ncat NOUN\n\n")
    dev = write(tmp_path / "dev.conll", "a DET\ndog PROPN\n\n")
    with pytest.raises(BertctlError, match="'PROPN'"):
        load_splits(data_settings(train=str(train), dev=str(dev)), "tag")


def test_mixed_label_types_are_refused(tmp_path):
    from bertctl.finetune.data import load_splits

    train = write(tmp_path / "train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "positive"}\n')
    with pytest.raises(BertctlError, match="mixes numbers"):
        load_splits(data_settings(train=str(train), dev=str(train)), "cls")


def test_regression_needs_numbers(tmp_path):
    from bertctl.finetune.data import load_splits

    train = write(tmp_path / "train.jsonl", '{"sentence1": "a", "sentence2": "b", "score": "high"}\n')
    with pytest.raises(BertctlError, match="regression needs numeric labels"):
        load_splits(data_settings(train=str(train), dev=str(train)), "regression")


def test_snli_dash_labels_are_dropped_with_a_count(tmp_path):
    from bertctl.finetune.data import load_splits

    lines = [{"sentence1": f"p{i}", "sentence2": f"h{i}", "gold_label": lab}
             for i, lab in enumerate(["entailment", "-", "neutral", "contradiction", "-", "neutral"])]
    path = write(tmp_path / "snli.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    splits = load_splits(data_settings(train=str(path), dev=str(path)), "nli")
    assert len(splits.train) == 4 and "-" not in {r["label"] for r in splits.train}
    assert any("dropped 2 row(s)" in n for n in splits.notes)
    assert splits.labels == ["contradiction", "entailment", "neutral"]


def test_tokens_and_tags_of_different_lengths(tmp_path):
    from bertctl.finetune.data import load_splits

    path = write(tmp_path / "t.jsonl", '{"tokens": ["a", "b"], "tags": ["X"]}\n')
    with pytest.raises(BertctlError, match="2 words but 1 tags"):
        load_splits(data_settings(train=str(path), dev=str(path)), "tag")


def test_no_dev_data_says_how_to_split(tmp_path):
    from bertctl.finetune.data import load_splits

    path = write(tmp_path / "t.jsonl", '{"text": "a", "label": "x"}\n')
    with pytest.raises(BertctlError, match="data.split"):
        load_splits(data_settings(train=str(path)), "cls")


def test_unknown_task_lists_the_names():
    with pytest.raises(BertctlError, match="sentiment"):
        from bertctl.finetune.kinds import canonical_task

        canonical_task("summarize")


# ----------------------------------------------------------------------------- data sources


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    from bertctl.finetune.data import load_splits

    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(50)]
    path = write(tmp_path / "all.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    a = load_splits(data_settings(train=str(path), split=0.8, seed=3), "cls")
    b = load_splits(data_settings(train=str(path), split=0.8, seed=3), "cls")
    c = load_splits(data_settings(train=str(path), split=0.8, seed=4), "cls")
    assert (len(a.train), len(a.dev)) == (40, 10)
    assert a.train == b.train and a.dev == b.dev
    assert {r["text"] for r in a.dev} != {r["text"] for r in c.dev}
    assert {r["text"] for r in a.train} | {r["text"] for r in a.dev} == {r["text"] for r in rows}
    assert not {r["text"] for r in a.train} & {r["text"] for r in a.dev}


def test_data_root_is_resolved_against_the_current_directory(tmp_path, monkeypatch):
    from bertctl.finetune.data import load_splits

    (tmp_path / "data" / "glue" / "X").mkdir(parents=True)
    write(tmp_path / "data" / "glue" / "X" / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    monkeypatch.chdir(tmp_path)
    s = load_splits(data_settings(root="data", train="glue/X/train.tsv", dev="glue/X/train.tsv"), "cls")
    assert len(s.train) == 2 and s.names["train"] == str(tmp_path / "data" / "glue" / "X" / "train.tsv")
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(BertctlError, match="data.root data does not exist.*data.root=/path/to/data"):
        load_splits(data_settings(root="data", train="glue/X/train.tsv", dev="glue/X/train.tsv"), "cls")


def test_builtin_real_data_recipes_keep_paths_relative_to_data_root():
    from bertctl.recipe import load
    from bertctl.finetune.config import FinetuneRecipe

    r, _ = load(FinetuneRecipe, "finetune_sst2", [], "finetune_sst2")
    assert r.data.root == "../shared/data" and r.data.train == "glue/SST-2/train.tsv"


def test_max_samples_take_the_first_rows(tmp_path):
    from bertctl.finetune.data import load_splits

    rows = "".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(20))
    path = write(tmp_path / "t.jsonl", rows)
    s = load_splits(data_settings(train=str(path), dev=str(path), max_train_samples=6, max_eval_samples=4), "cls")
    assert [r["text"] for r in s.train] == [f"t{i}" for i in range(6)] and len(s.dev) == 4


def test_glue_tsv_conllu_and_squad_formats(tmp_path):
    from bertctl.finetune.data import load_splits

    cola = tmp_path / "CoLA"
    cola.mkdir()
    write(cola / "train.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tThe more books.\n")
    s = load_splits(data_settings(train=str(cola / "train.tsv"), dev=str(cola / "train.tsv"),
                                  columns={"text": "sentence"}), "cls")
    assert s.train[0] == {"text": "The sailors rode the breeze.", "label": "1"}

    conllu = write(tmp_path / "x.conllu", "# text = Hi there\n1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n"
                                          "2\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t_\t_\n\n")
    s = load_splits(data_settings(train=str(conllu), dev=str(conllu), tag_column="xpos"), "tag")
    assert s.train == [{"tokens": ["Hi", "there"], "tags": ["UH", "RB"]}] and s.labels == ["RB", "UH"]

    squad = {"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "q2", "question": "Who?", "answers": [], "is_impossible": True}]}]}]}
    path = write(tmp_path / "squad.json", json.dumps(squad))
    s = load_splits(data_settings(train=str(path), dev=str(path)), "qa")
    assert s.train[0]["answers"] == {"text": ["France"], "answer_start": [12]} and s.labels is None


def test_local_hf_dataset_with_class_label_names(tmp_path):
    import datasets

    from bertctl.finetune.data import load_splits

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    ds = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]}, features=features),
        "validation": datasets.Dataset.from_dict({"sentence": ["great"], "label": [1]}, features=features),
    })
    ds.save_to_disk(str(tmp_path / "ds"))
    s = load_splits(data_settings(hf={"name": str(tmp_path / "ds")}), "cls")
    assert s.labels == ["negative", "positive"] and s.dev == [{"text": "great", "label": "positive"}]
    with pytest.raises(BertctlError, match="no split 'test'.*train, validation"):
        load_splits(data_settings(hf={"name": str(tmp_path / "ds"), "dev": "test"}), "cls")


def test_world_default_data_for_every_task():
    from bertctl.finetune.data import load_splits
    from bertctl.finetune.kinds import KINDS

    for kind in KINDS:
        s = load_splits(data_settings(world={"train": 12, "dev": 6}), kind)
        assert len(s.train) == 12 and len(s.dev) == 6, kind
    s = load_splits(data_settings(world={"train": 30, "dev": 6, "tags": "bio"}), "tag")
    assert set(s.labels) <= {"B-NAME", "I-NAME", "O"} and "B-NAME" in s.labels


# ----------------------------------------------------------------------------- batching


def test_length_grouped_batches_are_seeded_complete_and_tight():
    import random

    from bertctl.finetune.base import length_grouped_batches

    rng = random.Random(0)
    lengths = [rng.randint(5, 60) for _ in range(1000)]
    a = length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert a == length_grouped_batches(lengths, 32, seed=1, epoch=0)  # a pure function: exact resume
    assert a != length_grouped_batches(lengths, 32, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(1000))
    assert sum(len(b) < 32 for b in a) == 1  # only one short batch
    plain = length_grouped_batches(lengths, 32, seed=1, epoch=0, group=False)

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    real = sum(lengths)
    assert padded(a) < 1.1 * real < padded(plain)  # grouping removes nearly all padding


def test_pad_features_pads_to_the_longest_in_the_batch():
    from bertctl.finetune.base import pad_features

    b = pad_features([{"input_ids": [1, 2, 3], "labels": 1}, {"input_ids": [4], "labels": 0}], pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    t = pad_features([{"input_ids": [1, 2], "labels": [5, -100]}, {"input_ids": [3], "labels": [6]}], pad_id=0)
    assert t["labels"].tolist() == [[5, -100], [6, -100]]
    r = pad_features([{"input_ids": [1], "labels": 2.5}], pad_id=0)
    assert r["labels"].dtype.is_floating_point


# ----------------------------------------------------------------------------- recipes and models


def test_builtin_finetune_recipes_validate_and_say_how_to_launch():
    from bertctl.recipe import builtin_recipes, launch_line, validate_file

    names = [n for n in builtin_recipes() if n.startswith("finetune")]
    for task in ("cls", "nli", "tag", "ner", "qa", "regression", "dna", "sst2", "mrpc", "rte", "stsb",
                 "ewt_pos", "snli", "squad2", "lora", "qlora"):
        assert f"finetune_{task}" in names
    for name in names:
        path = builtin_recipes()[name]
        assert launch_line(path).startswith("bertctl finetune"), name
        assert validate_file(path).command == "finetune"


def test_recipe_errors_name_the_key():
    from pydantic import ValidationError

    from bertctl.finetune.config import FinetuneRecipe

    with pytest.raises(ValidationError, match="unknown task"):
        FinetuneRecipe.model_validate({"task": "summarize"})
    with pytest.raises(ValidationError, match="data.split makes the dev set"):
        FinetuneRecipe.model_validate({"data": {"train": "a.tsv", "dev": "b.tsv", "split": 0.8}})
    assert FinetuneRecipe.model_validate({"task": "sentiment"}).kind == "cls"
    assert FinetuneRecipe.model_validate({"task": "pair"}).kind == "nli"


def test_default_model_is_the_latest_pretrain_run_else_minilm(tmp_path, monkeypatch, tiny):
    import shutil

    from bertctl.finetune.methods import pick_model

    monkeypatch.chdir(tmp_path)
    source, line = pick_model(None)
    assert "minilm" in line and "no `bertctl pretrain` run" in line
    run = tmp_path / "runs" / "pretrain-20250101-000000"
    shutil.copytree(tiny, run / "model")
    source, line = pick_model(None)
    assert "minilm" in line, "a folder named pretrain-* that records no finished pretrain run is not one"
    (run / "metrics.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"command": "pretrain", "status": "finished",
                                              "finished": "2025-01-01T00:00:00"}))
    source, line = pick_model(None)
    assert source.kind == "run" and "pretrain-20250101-000000" in line and "latest" in line


def test_dna_words_are_fixed_distinct_single_tokens(tiny):
    from bertctl.models import load_tokenizer, resolve
    from bertctl.finetune.dna import kmers, word_map

    tok = load_tokenizer(resolve(str(tiny)))
    for k in (1, 2, 3):
        m = word_map(tok.get_vocab(), k)
        assert len(m) == 4 ** k and len(set(m.values())) == 4 ** k
        assert m == word_map(tok.get_vocab(), k)
        assert all(len(tok.tokenize(w)) == 1 for w in m.values())
    assert kmers("GATTACA", 3, 3) == ["GAT", "TAC"] and kmers("gat", 1, 1) == ["G", "A", "T"]


def test_max_length_is_capped_at_the_models_positions():
    from types import SimpleNamespace

    from bertctl.finetune.base import Task

    task = Task(recipe("unused", "cls", model={"max_length": 128}), ["a"])
    huge = SimpleNamespace(model_max_length=int(1e30))  # a tokenizer that does not know its model
    line = task.fit_length(huge, SimpleNamespace(max_position_embeddings=64, model_type="bert", pad_token_id=0))
    assert task.max_length == 64 and "using 64" in line
    roberta = Task(recipe("unused", "cls", model={"max_length": 1024}), ["a"])
    roberta.fit_length(huge, SimpleNamespace(max_position_embeddings=514, model_type="roberta", pad_token_id=1))
    assert roberta.max_length == 512
    fine = Task(recipe("unused", "cls", model={"max_length": 128}), ["a"])
    assert fine.fit_length(SimpleNamespace(model_max_length=512), None) is None and fine.max_length == 128


def test_hub_dataset_while_offline_is_one_clear_error(monkeypatch):
    from bertctl.finetune.data import load_splits

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BertctlError, match="HF_HUB_OFFLINE is set: pass a local dataset folder"):
        load_splits(data_settings(hf={"name": "nyu-mll/glue", "config": "sst2"}), "cls")


def test_compare_init_needs_full_fine_tuning(tmp_path):
    from bertctl.runs import Run
    from bertctl.finetune.run import finetune

    r = recipe("minilm", "cls", method="lora", compare_init=True)
    with pytest.raises(BertctlError, match="compare_init.*method=full"):
        finetune(r, Run.create(tmp_path / "x", "finetune"), quiet=True)
