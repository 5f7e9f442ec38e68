"""`bertctl predict`: every task kind and method on tiny runs, files and stdin, input order,
chunked streaming, column mapping and the one-line errors."""

from __future__ import annotations

import io
import json

import pytest

from bertctl.errors import BertctlError
from bertctl.runs import Run

from .helpers import recipe

pytestmark = pytest.mark.slow

# name -> (task, recipe extras)
RUNS = {
    "cls": ("sentiment", {}),
    "nli": ("nli", {}),
    "pos": ("pos", {}),
    "ner": ("ner", {}),
    "qa": ("qa", {"qa": {"doc_stride": 16}}),
    "regression": ("regression", {}),
    "dna": ("dna", {}),
    "lora": ("nli", {"method": "lora", "merge": True, "lora": {"r": 4, "alpha": 8}}),
    "qlora": ("sentiment", {"method": "qlora", "train": {"precision": "bf16"}}),
}


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny):
    """Trained on demand, once per module: name -> (run folder, recipe)."""
    from bertctl.finetune.run import finetune

    root, made = tmp_path_factory.mktemp("predict"), {}

    def get(name):
        if name not in made:
            task, extra = RUNS[name]
            r = recipe(tiny, task, **extra)
            finetune(r, Run.create(root / name, "finetune"), quiet=True)
            made[name] = (root / name, r)
        return made[name]

    return get


def _dev_rows(r):
    """The run's dev rows without their labels, as the default column names."""
    from bertctl.finetune.data import load_splits

    drop = ("label", "tags", "answers")
    return [{k: v for k, v in row.items() if k not in drop} for row in load_splits(r.data, r.kind, task=r.task).dev]


def _expected(run_dir):
    return [p["prediction"] for p in _lines(run_dir / "predictions_dev.jsonl")]


def _got(kind, records):
    key = {"tag": "tags", "qa": "answer", "regression": "value"}.get(kind, "label")
    return [r[key] for r in records]


@pytest.mark.parametrize("name", list(RUNS))
def test_predictions_on_a_file_equal_the_runs_dev_predictions(cli, runs, tmp_path, name):
    run_dir, r = runs(name)
    rows = _dev_rows(r)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    code, _, err = cli("predict", run_dir, src, "--out", tmp_path / "out.jsonl", "--batch-size", "7")
    assert code == 0, err
    records = _lines(tmp_path / "out.jsonl")
    assert [x["index"] for x in records] == list(range(len(rows)))  # input order, one line per row
    got, want = _got(r.kind, records), _expected(run_dir)
    if r.kind == "regression":
        assert got == pytest.approx(want, abs=1e-3)
    else:
        assert got == want
    first = records[0]
    if r.kind in ("cls", "nli", "dna"):
        assert set(first["probabilities"]) == set(json.loads((run_dir / "labels.json").read_text()))
        assert sum(first["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert first["probabilities"][first["label"]] == max(first["probabilities"].values())
    if r.kind == "tag":
        assert first["tokens"] == rows[0]["tokens"] and len(first["tags"]) == len(first["tokens"])
        assert ("entities" in first) == (name == "ner")
    if r.kind == "qa":
        for rec, row in zip(records, rows):
            if rec["answer"]:
                assert row["context"][rec["start"]:rec["end"]] == rec["answer"] and isinstance(rec["score"], float)
            assert rec["id"] == row["id"]


def test_the_merged_folder_predicts_like_the_adapter(cli, runs, tmp_path):
    run_dir, r = runs("lora")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(row) + "\n" for row in _dev_rows(r)), encoding="utf-8")
    code, _, err = cli("predict", run_dir / "merged", src, "--out", tmp_path / "m.jsonl")
    assert code == 0, err
    assert _got("nli", _lines(tmp_path / "m.jsonl")) == _expected(run_dir)


def _stdin(args, text):
    from typer.testing import CliRunner

    from bertctl.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=text)
    return result.exit_code, result.stdout, result.stderr


def test_stdin_text_pairs_words_and_qa_json(runs):
    cls_dir, _ = runs("cls")
    code, out, err = _stdin(["predict", cls_dir], "Ruth liked the lemon .\nthe laptop was noisy .\n")
    assert code == 0, err
    assert [json.loads(line)["index"] for line in out.splitlines()] == [0, 1]
    nli_dir, _ = runs("nli")
    code, out, _ = _stdin(["predict", nli_dir], "a man sleeps .\tsomeone rests .\n")
    assert code == 0 and json.loads(out)["label"] in ("contradiction", "entailment", "neutral")
    code, _, err = _stdin(["predict", nli_dir], "only one text\n")
    assert code == 2 and "two texts separated by one tab" in err
    ner_dir, _ = runs("ner")
    code, out, _ = _stdin(["predict", ner_dir], "Zoe lived in Hillcrest .\n")
    rec = json.loads(out)
    assert code == 0 and rec["tokens"] == ["Zoe", "lived", "in", "Hillcrest", "."] and len(rec["tags"]) == 5
    qa_dir, _ = runs("qa")
    line = json.dumps({"question": "Who lived there ?", "context": "Zoe lived in Hillcrest ."})
    code, out, err = _stdin(["predict", qa_dir, "-"], line + "\n" + line + "\n")
    assert code == 0, err
    recs = [json.loads(x) for x in out.splitlines()]
    assert [x["id"] for x in recs] == ["0", "1"] and recs[0]["answer"] == recs[1]["answer"]


def test_csv_and_tsv_columns_map_as_in_the_recipe_or_by_option(cli, runs, tmp_path):
    run_dir, _ = runs("cls")
    csv_file = tmp_path / "reviews.csv"
    csv_file.write_text('id,review\n1,"Ruth liked the lemon, a lot ."\n2,the laptop was noisy .\n', encoding="utf-8")
    code, _, err = cli("predict", run_dir, csv_file)
    assert code == 2 and "no column 'text / sentence / sentence1'" in err and "'review'" in err and "--column" in err
    code, out, err = cli("predict", run_dir, csv_file, "--column", "text=review")
    assert code == 0, err
    assert len(out.splitlines()) == 2
    tsv = tmp_path / "in.tsv"
    tsv.write_text('sentence\tlabel\nRuth liked the "lemon" .\t\n', encoding="utf-8")  # GLUE quirk: bare quotes
    code, out, err = cli("predict", run_dir, tsv)
    assert code == 0, err
    assert len(out.splitlines()) == 1


def test_streaming_keeps_order_across_chunks_and_reads_lazily(runs):
    from bertctl.predict import Predictor, predict_stream

    run_dir, r = runs("cls")
    rows = _dev_rows(r)
    predictor = Predictor.load(run_dir)
    consumed = {"n": 0, "at_first_write": None}

    def lazy():
        for row in rows:
            consumed["n"] += 1
            yield row

    chunks = []

    def write(text):
        consumed["at_first_write"] = consumed["at_first_write"] or consumed["n"]
        chunks.append(text)

    n = predict_stream(predictor, lazy(), write, chunk=5)
    assert n == len(rows) and consumed["at_first_write"] == 5  # one chunk in memory, not the file
    records = [json.loads(line) for line in "".join(chunks).splitlines()]
    assert [x["index"] for x in records] == list(range(len(rows)))
    whole = io.StringIO()
    predict_stream(predictor, iter(rows), whole.write)
    assert [json.loads(line) for line in whole.getvalue().splitlines()] == records


def test_bio_entities():
    from bertctl.finetune.tag import entities

    tokens = ["Zoe", "Ann", "met", "Bob", "in", "Rome", "."]
    tags = ["B-PER", "I-PER", "O", "I-PER", "O", "B-LOC", "I-PER"]
    assert entities(tokens, tags) == [
        {"type": "PER", "start": 0, "end": 2, "text": "Zoe Ann"},
        {"type": "PER", "start": 3, "end": 4, "text": "Bob"},
        {"type": "LOC", "start": 5, "end": 6, "text": "Rome"},
        {"type": "PER", "start": 6, "end": 7, "text": "."},
    ]


def test_errors_are_one_line(cli, runs, tmp_path):
    code, _, err = cli("predict", tmp_path)
    assert code == 2 and "not a finetune run folder" in err and "Traceback" not in err
    run_dir, _ = runs("cls")
    code, _, err = cli("predict", run_dir, tmp_path / "missing.tsv")
    assert code == 2 and "no such file" in err
    (tmp_path / "taken.jsonl").write_text("x")
    code, _, err = cli("predict", run_dir, "--out", tmp_path / "taken.jsonl")
    assert code == 2 and "already exists" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    code, _, err = cli("predict", run_dir, bad, "--out", tmp_path / "o.jsonl")
    assert code == 2 and "line 2: not JSON" in err and not (tmp_path / "o.jsonl").exists()
    code, _, err = cli("predict", run_dir, bad, "--column", "txt")
    assert code == 2 and "ROLE=NAME" in err
    with pytest.raises(BertctlError, match="cannot tell the format"):
        from bertctl.predict import read_rows

        read_rows(tmp_path / "x.xml", "cls")


# ------------------------------------------------------------------------ issue 20


@pytest.mark.parametrize("name", ["cls", "pos", "qa", "regression"])
def test_predict_writes_the_records_of_the_runs_predictions_file(cli, runs, tmp_path, name):
    """One record shape: predict's lines are predictions_dev.jsonl's, less the gold."""
    run_dir, r = runs(name)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(row) + "\n" for row in _dev_rows(r)), encoding="utf-8")
    code, out, err = cli("predict", run_dir, src)
    assert code == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    dev = _lines(run_dir / "predictions_dev.jsonl")
    assert all("gold" in d for d in dev) and not any("gold" in g for g in got)
    assert [list(g) for g in got] == [[k for k in d if k != "gold"] for d in dev]
    assert [g["prediction"] for g in got] == [d["prediction"] for d in dev]


def test_qa_no_answer_setting_is_read_from_the_record_not_the_predictions_file(cli, runs, tmp_path):
    import shutil

    run_dir, r = runs("qa")
    assert json.loads((run_dir / "run.json").read_text())["decisions"] == {"qa.version_2": True}
    line = json.dumps({"question": "Who lived there ?", "context": "Zoe lived in Hillcrest ."}) + "\n"
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "predictions_dev.jsonl").unlink()  # an output file is no setting
    code, out, err = _stdin(["predict", copy, "-"], line)
    assert code == 0 and "null_score" in json.loads(out), err
    # a run from before the record: its dev gold answers decide, once
    old = shutil.copytree(run_dir, tmp_path / "old")
    record = json.loads((old / "run.json").read_text())
    del record["decisions"]
    (old / "run.json").write_text(json.dumps(record))
    code, out, err = _stdin(["predict", old, "-"], line)
    assert code == 0 and "null_score" in json.loads(out), err


def test_qa_ids_null_missing_or_given_later_and_twice(runs):
    qa_dir, _ = runs("qa")
    q = {"question": "Who lived there ?", "context": "Zoe lived in Hillcrest ."}
    lines = [{**q, "id": None}, q, {**q, "id": "given"}, {**q, "id": 7}]
    code, out, err = _stdin(["predict", qa_dir, "-"], "".join(json.dumps(x) + "\n" for x in lines))
    assert code == 0, err
    assert [json.loads(x)["id"] for x in out.splitlines()] == ["0", "1", "given", "7"]  # later ids kept
    code, _, err = _stdin(["predict", qa_dir, "-"], "".join(json.dumps({**q, "id": "a"}) + "\n" for _ in range(2)))
    assert code == 2 and "input rows 1 and 2 both have question id 'a'" in err and "evaluation" not in err


def test_tokens_with_null_or_numbers(runs):
    pos_dir, _ = runs("pos")
    code, out, err = _stdin(["predict", pos_dir, "-", "--format", "jsonl"], json.dumps({"tokens": ["Zoe", 42, "slept"]}) + "\n")
    assert code == 0, err
    assert json.loads(out)["tokens"] == ["Zoe", "42", "slept"]  # a number is a word, as in training
    code, out, err = _stdin(["predict", pos_dir, "-", "--format", "jsonl"], json.dumps({"tokens": ["Zoe", None]}) + "\n")
    assert code == 2 and "line 1: the word 2 of tokens is null" in err and "Traceback" not in err


def test_bom_csv_dna_symbols_and_cut_rows_are_said(cli, runs, tmp_path):
    run_dir, _ = runs("cls")
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\nRuth liked the lemon .,positive\n".encode("utf-8"))
    code, out, err = cli("predict", run_dir, bom)
    assert code == 0, err
    assert json.loads(out)["text"] == "Ruth liked the lemon ."
    dna_dir, _ = runs("dna")
    code, out, err = cli("predict", dna_dir, _write(tmp_path / "dna.txt", "ACGTNNACGT\nACGT\n"))
    assert code == 0 and "2 symbol(s) outside A/C/G/T in 1 sequence(s)" in err, err
    nli_dir, _ = runs("nli")  # pairs are cut at max_length, not read in windows
    long = " ".join(["a man sleeps"] * 40)
    code, out, err = cli("predict", nli_dir, _write(tmp_path / "pairs.tsv", f"premise\thypothesis\n{long}\tok\nhi\tok\n"))
    assert code == 0 and "1 row(s) longer than model.max_length" in err, err


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_eval_only_checks_every_file_first_and_takes_existing_paths_literally(cli, runs, tmp_path):
    from bertctl.finetune.evaluate import eval_files

    run_dir, r = runs("cls")
    dev = tmp_path / "dev[1].tsv"
    _write(dev, "sentence\tlabel\nRuth liked the lemon .\tpositive\n")
    _write(tmp_path / "dev1.tsv", "sentence\tlabel\nthe laptop was noisy .\tnegative\n")
    assert eval_files([f"data.dev={dev}"]) == (None, [f"data.dev={dev}"])  # the file, not the glob dev1.tsv
    code, _, err = cli("finetune", "--eval-only", run_dir, f"data.dev={dev}", "--out", tmp_path / "one")
    assert code == 0, err
    scored = _lines(tmp_path / "one" / "predictions_dev[1].jsonl")
    assert [x["text"] for x in scored] == ["Ruth liked the lemon ."]
    code, _, err = cli("finetune", "--eval-only", run_dir, f"data.dev=[{tmp_path / 'dev1.tsv'}, {tmp_path / 'gone.tsv'}]",
                       "--out", tmp_path / "several")
    assert code == 2 and "gone.tsv" in err
    assert not (tmp_path / "several").exists()  # nothing scored, no half-made folders
