"""Extractive QA as users meet it on real SQuAD files: official metric rules, the
official prediction files, several evaluation files in one --eval-only, misplaced
answers (all reported, or skipped), splitting by article; plus real-data checks that
skip where ../shared/data is absent."""

from __future__ import annotations

import json

import pytest

from bertctl import metrics as m
from bertctl.errors import BertctlError
from bertctl.runs import Run

from .helpers import recipe

CONTEXT = "The Normans were the people who gave their name to Normandy, a region in France."


def squad_json(path, qas, title="Normandy", context=CONTEXT):
    path.write_text(json.dumps({"version": "1.1", "data": [
        {"title": title, "paragraphs": [{"context": context, "qas": qas}]}]}), encoding="utf-8")
    return path


def q(qid, text, start=None, context=CONTEXT):
    return {"id": qid, "question": f"What about {qid}?",
            "answers": [{"text": text, "answer_start": context.find(text) if start is None else start}]}


# ------------------------------------------------------------------ the official metric


@pytest.mark.parametrize("pred,golds,em,f1", [
    ("the Normans", ["Normans"], 1.0, 1.0),               # articles a/an/the are dropped
    ("Normans.", ["Normans"], 1.0, 1.0),                  # ASCII punctuation is dropped
    ("NORMANS", ["normans"], 1.0, 1.0),                   # case is ignored
    ("  the   Normans  ", ["Normans"], 1.0, 1.0),         # whitespace is collapsed
    ("Normans people", ["Normans"], 0.0, 2 * 0.5 * 1 / 1.5),  # P = 1/2, R = 1 -> F1 2/3
    ("France", ["Normandy", "a region in France"], 0.0, 2 * 1 * (1 / 3) / (1 + 1 / 3)),  # max over references
    ("France", ["Normandy", "France"], 1.0, 1.0),
    ("theatre", ["atre"], 0.0, 0.0),                      # "the" inside a word stays
    ("", ["Normans"], 0.0, 0.0),
])
def test_em_and_f1_follow_each_normalisation_rule(pred, golds, em, f1):
    assert m.squad_em(pred, golds) == em
    assert m.squad_f1(pred, golds) == pytest.approx(f1)


def test_cjk_characters_are_tokens_and_cjk_punctuation_is_dropped():
    assert m.squad_f1("歐洲", ["歐洲大陸"]) == pytest.approx(2 * 1 * 0.5 / 1.5)  # 2 of 4 characters
    assert m.squad_em("「歐洲」。", ["歐洲"]) == 1.0
    assert m.normalize_answer("The “quoted” – x") == "“quoted” – x"  # without CJK: the official rule only


def test_ner_metrics_have_an_f1_per_entity_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]]
    out = m.tagging(gold, pred)
    assert out["f1_PER"] == 1.0 and out["f1_LOC"] == 0.0 and out["f1_ORG"] == 1.0
    assert out["f1"] == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


# ------------------------------------------------------------------ data that does not fit


def test_every_misplaced_answer_is_reported_at_once(tmp_path):
    from bertctl.data.readers import read_squad

    qas = [q("ok", "Normans"), q("b1", "Normandy", 3), q("b2", "France", 0), q("b3", "region", 1)]
    with pytest.raises(BertctlError) as e:
        read_squad(squad_json(tmp_path / "s.json", qas))
    assert "question b1" in str(e.value) and "3 questions in all" in str(e.value) and "b2, b3" in str(e.value)
    assert "on_bad_rows=skip" in e.value.fix
    dropped = []
    rows = read_squad(tmp_path / "s.json", dropped=dropped)
    assert [r["id"] for r in rows] == ["ok"] and dropped == ["b1", "b2", "b3"]


def test_on_bad_rows_skip_counts_them_in_the_notes_and_metrics(tmp_path, tiny):
    from bertctl.finetune.data import load_splits
    from bertctl.finetune.run import finetune

    good = [q(f"g{i}", w) for i, w in enumerate(["Normans", "Normandy", "France", "region", "people"])]
    path = squad_json(tmp_path / "train.json", good + [q("bad", "France", 2)])
    dev = squad_json(tmp_path / "dev.json", good[:3])
    r = recipe(tiny, "qa", data={"train": str(path), "dev": str(dev), "on_bad_rows": "skip"}, qa={"doc_stride": 16})
    splits = load_splits(r.data, "qa")
    assert len(splits.train) == 5 and splits.bad_rows == {"train": 1}
    assert any("skipped 1 question" in n and "bad" in n for n in splits.notes)
    finetune(r, Run.create(tmp_path / "run", "finetune"), quiet=True)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["bad_rows"] == {"train": 1} and "skipped 1 question" in (tmp_path / "run" / "log.txt").read_text()
    with pytest.raises(BertctlError, match="question bad"):
        load_splits(recipe(tiny, "qa", data={"train": str(path), "dev": str(dev)}).data, "qa")


def test_split_by_keeps_each_article_on_one_side():
    from bertctl.finetune.data import split_rows

    rows = [{"title": f"a{i % 7}", "n": i} for i in range(70)]
    train, dev = split_rows(rows, 0.7, seed=3, by="title")
    assert {r["title"] for r in train}.isdisjoint({r["title"] for r in dev})
    assert len({r["title"] for r in train}) == 5 and len(train) + len(dev) == 70
    assert split_rows(rows, 0.7, seed=3, by="title") == (train, dev)  # seeded
    with pytest.raises(BertctlError, match="no column 'article'"):
        split_rows(rows, 0.5, 0, by="article")


# ------------------------------------------------------------------ official files, several files


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, tiny):
    from bertctl.finetune.run import finetune

    path = tmp_path_factory.mktemp("qa") / "run"
    finetune(recipe(tiny, "qa", qa={"doc_stride": 16}), Run.create(path, "finetune"), quiet=True)
    return path


def test_predictions_json_is_what_the_official_script_reads(qa_run):
    from bertctl.finetune.data import load_splits
    from bertctl.finetune.finished import load_run_recipe

    predictions = json.loads((qa_run / "predictions.json").read_text())
    null_odds = json.loads((qa_run / "null_odds.json").read_text())  # World QA has unanswerable questions
    dev = load_splits(load_run_recipe(qa_run, []).data, "qa", need_train=False).dev
    assert set(predictions) == set(null_odds) == {r["id"] for r in dev}
    assert all(isinstance(v, str) for v in predictions.values())
    assert all(isinstance(v, float) for v in null_odds.values())
    summary = json.loads((qa_run / "metrics.json").read_text())
    assert m.squad(predictions, dev) == pytest.approx(summary["dev"])  # the file is what was scored
    lines = [json.loads(line) for line in (qa_run / "predictions_dev.jsonl").read_text().splitlines()]
    for line in lines:
        if line["prediction"]:
            context = next(r["context"] for r in dev if r["id"] == line["id"])
            assert context[line["start"]:line["end"]] == line["prediction"]


def _as_squad(rows, path):
    """World QA rows as a SQuAD v2.0 file."""
    data = [{"title": "world", "paragraphs": [{"context": r["context"], "qas": [{
        "id": r["id"], "question": r["question"], "is_impossible": not r["answers"]["text"],
        "answers": [{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}]}
        for r in rows]
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")
    return path


def test_eval_only_on_several_files_gives_a_row_folder_and_bar_per_file(qa_run, tmp_path, cli):
    from bertctl.finetune.data import load_splits
    from bertctl.finetune.finished import load_run_recipe

    dev = load_splits(load_run_recipe(qa_run, []).data, "qa", need_train=False).dev
    _as_squad(dev[:12], tmp_path / "qa.aa.json")
    _as_squad(dev[12:20], tmp_path / "qa.bb.json")
    out = tmp_path / "evals"
    code, stdout, err = cli("finetune", "--eval-only", qa_run, f"data.dev={tmp_path}/qa.*.json", "--out", out)
    assert code == 0, err
    assert "qa.aa" in stdout and "qa.bb" in stdout and "by file" in stdout
    summary = json.loads((out / "metrics.json").read_text())
    assert [r["file"] for r in summary["rows"]] == ["qa.aa", "qa.bb"]
    assert [r["rows"] for r in summary["rows"]] == [12, 8]
    for name in ("qa.aa", "qa.bb"):
        sub = json.loads((out / name / "metrics.json").read_text())
        assert sub["split"] == name and "dev" not in sub and sub[name] == summary["results"][name]
        assert (out / name / f"predictions_{name}.jsonl").exists()
        assert (out / name / f"predictions_{name}.json").exists()
    assert (out / "scores.png").stat().st_size > 5_000
    # a list gives the same, in the order given; a single file is named after it too
    code, stdout, _ = cli("finetune", "--eval-only", qa_run, f"data.dev=[{tmp_path}/qa.bb.json]", "--out", tmp_path / "l")
    assert code == 0 and json.loads((tmp_path / "l" / "metrics.json").read_text())["rows"][0]["file"] == "qa.bb"
    code, stdout, _ = cli("finetune", "--eval-only", qa_run, f"data.dev={tmp_path}/qa.aa.json", "--out", tmp_path / "one")
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert code == 0 and single["split"] == "qa.aa" and single["qa.aa"] == summary["results"]["qa.aa"]
    assert "qa: qa.aa" in stdout and (tmp_path / "one" / "predictions_qa.aa.jsonl").exists()


def test_eval_only_several_files_bad_input(qa_run, tmp_path, cli):
    code, _, err = cli("finetune", "--eval-only", qa_run, f"data.dev={tmp_path}/none.*.json")
    assert code == 2 and "no file matches" in err
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.json").write_text("{}")
    code, _, err = cli("finetune", "--eval-only", qa_run, f"data.dev={tmp_path}/*/x.json")
    assert code == 2 and "both named x" in err
    code, _, err = cli("finetune", "--eval-only", tmp_path / "nothing-here")
    assert code == 2 and "does not exist" in err


def test_unk_rate_counts_unknown_tokens(tiny):
    from transformers import AutoTokenizer

    from bertctl.finetune.base import unk_rate

    tok = AutoTokenizer.from_pretrained(str(tiny))
    assert unk_rate(tok, ["the river is wide"]) == 0.0
    rate = unk_rate(tok, ["\U0001F9EC\U0001F9EC river"])  # emoji are not in the English vocabulary
    assert 0 < rate < 1


# ------------------------------------------------------------------ real data (skips without it)


def test_shared_squad_splits_by_article(shared_data):
    from bertctl.recipe import load
    from bertctl.finetune.config import FinetuneRecipe
    from bertctl.finetune.data import load_splits

    r, _ = load(FinetuneRecipe, "finetune_squad", [f"data.root={shared_data}"], "finetune_squad")
    splits = load_splits(r.data, "qa")
    assert len(splits.train) + len(splits.dev) == 7968
    assert 0.05 < len(splits.dev) / 7968 < 0.25
    from bertctl.data.readers import read_squad

    rows = read_squad(shared_data / "squad" / "squad1.1-dev-articles00-39.json")
    title = {r["id"]: r["title"] for r in rows}
    assert {title[r["id"]] for r in splits.train}.isdisjoint({title[r["id"]] for r in splits.dev})


def test_shared_xquad_drcd_and_conll_read(shared_data):
    from bertctl.data.readers import read_conll, read_squad

    for lang in ("en", "zh", "th"):
        rows = read_squad(shared_data / "xquad" / f"xquad.{lang}.json")
        assert len(rows) == 1013
    assert len(read_squad(shared_data / "drcd" / "DRCD_test.json")) == 3493
    sentences = read_conll(shared_data / "conll2003" / "eng.testa")
    assert len(sentences) == 3250
    assert {t[2:] for s in sentences for t in s["tags"] if t != "O"} == {"PER", "ORG", "LOC", "MISC"}


def test_finetune_model_flag_sets_the_encoder(tmp_path, tiny, cli):
    code, stdout, err = cli("finetune", "--task", "sentiment", "--model", tiny, "--out", tmp_path / "r",
                            "data.world.train=32", "data.world.dev=16", "train.epochs=1", "model.max_length=32",
                            "train.precision=fp32")
    assert code == 0, err
    assert str(tiny) in (tmp_path / "r" / "recipe.yaml").read_text()
    code, _, err = cli("finetune", "--eval-only", tmp_path / "r", "--model", "minilm")
    assert code == 2 and "--model does not apply" in err


def test_eval_only_data_override_clears_the_runs_split_by(tmp_path):
    """A finetune_squad run (split by title) scored on another file: the split goes, and so
    must split_by (it only applies with a split)."""
    from bertctl.recipe import load
    from bertctl.finetune.config import FinetuneRecipe
    from bertctl.finetune.finished import load_run_recipe
    from bertctl.finetune.run import write_recipe

    r, _ = load(FinetuneRecipe, "finetune_squad", [], "finetune_squad")
    (tmp_path / "run").mkdir()
    write_recipe(Run(tmp_path / "run", "finetune"), r)
    other = load_run_recipe(tmp_path / "run", [f"data.dev={tmp_path / 'xquad.en.json'}"])
    assert other.data.split is None and other.data.split_by is None and other.data.train is None


def test_error_lines_keep_brackets(qa_run, cli):
    """The one error printer must not read "[...]" in a message as rich markup."""
    code, _, err = cli("finetune", "--eval-only", qa_run, "data.dev=[1, 2]")
    assert code == 2 and "e.g. data.dev='[xquad.en.json, xquad.de.json]'" in err
