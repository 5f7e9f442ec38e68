"""Readers: every format quirk on tiny fixtures, every bad input's error, and the real
files in ../shared/data (skipped where that folder is absent)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from bertctl.data import readers as r
from bertctl.errors import BertctlError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error(fn, *args, **kwargs) -> str:
    """Call fn expecting a BertctlError; return its (one-line) message."""
    with pytest.raises(BertctlError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------- read_table


def test_tsv_with_header(tmp_path):
    f = write(tmp_path / "sst.tsv", "sentence\tlabel\nit 's a charming journey . \t1\nbleak \t0\n")
    assert r.read_table(f) == [
        {"sentence": "it 's a charming journey . ", "label": "1"},
        {"sentence": "bleak ", "label": "0"},
    ]


def test_tsv_keeps_bare_quotes_mrpc_style(tmp_path):
    # MRPC: quotes open inside fields and close lines later; QUOTE_NONE keeps them literal.
    text = (
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tHe said the pie business doesn \'t fit .\t" The pie business does not fit .\n'
        '0\t3\t4\tHis wife said he was " 100 percent behind Bush\tand looked forward " .\n'
    )
    rows = r.read_table(write(tmp_path / "MRPC" / "dev.tsv", text))
    assert len(rows) == 2
    assert list(rows[0]) == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]  # BOM gone
    assert rows[0]["#2 String"] == '" The pie business does not fit .'
    assert rows[1]["#1 String"].endswith('" 100 percent behind Bush')
    assert r.read_glue_tsv(tmp_path / "MRPC" / "dev.tsv") == rows


def test_csv_uses_standard_quoting(tmp_path):
    f = write(tmp_path / "t.csv", 'text,label\n"hello, world",pos\n"say ""hi""",neg\n')
    assert r.read_table(f) == [{"text": "hello, world", "label": "pos"}, {"text": 'say "hi"', "label": "neg"}]


def test_header_false_names_and_auto(tmp_path):
    f = write(tmp_path / "t.tsv", "gj04\t1\t\tThe sailors rode .\ngj04\t0\t*\tThe rope stretch .\n")
    assert r.read_table(f, header=False)[0] == {"0": "gj04", "1": "1", "2": "", "3": "The sailors rode ."}
    named = r.read_table(f, header=False, names=r.COLA_COLUMNS)
    assert named[1] == {"source": "gj04", "label": "0", "original_label_mark": "*", "sentence": "The rope stretch ."}
    assert r.read_table(f, header=None, names=r.COLA_COLUMNS) == named  # numbers under row 1: no header
    headed = write(tmp_path / "h.tsv", "sentence\tlabel\na\t1\nb\t0\n")
    assert len(r.read_table(headed, header=None)) == 2  # "label" above numbers: a header
    renamed = r.read_table(headed, names=["text", "y"])  # header row replaced
    assert renamed == [{"text": "a", "y": "1"}, {"text": "b", "y": "0"}]


def test_fmt_overrides_extension_and_blank_lines_skipped(tmp_path):
    f = write(tmp_path / "data.txt", "a\tb\n\n1\t2\n\n")
    assert r.read_table(f, fmt="tsv") == [{"a": "1", "b": "2"}]
    assert "extension" in error(r.read_table, f)


def test_jsonl_and_json(tmp_path):
    rows = [{"text": "x", "label": 1}, {"text": "y", "label": 0}]
    jsonl = write(tmp_path / "t.jsonl", "\n".join(json.dumps(x) for x in rows) + "\n\n")
    assert r.read_table(jsonl) == rows == r.read_jsonl(jsonl)
    assert r.read_table(write(tmp_path / "list.json", json.dumps(rows))) == rows
    assert r.read_table(write(tmp_path / "data.json", json.dumps({"data": rows}))) == rows
    # datasets.Dataset.to_json() writes JSON lines under a .json name
    assert r.read_table(write(tmp_path / "hf.json", jsonl.read_text())) == rows


def test_mnli_two_dev_files_are_two_reads(tmp_path):
    head = "index\tsentence1\tsentence2\tgold_label\n"
    m = write(tmp_path / "MNLI" / "dev_matched.tsv", head + "0\ta\tb\tentailment\n")
    mm = write(tmp_path / "MNLI" / "dev_mismatched.tsv", head + "0\tc\td\tneutral\n1\te\tf\tcontradiction\n")
    assert [len(r.read_glue_tsv(p)) for p in (m, mm)] == [1, 2]


# ---------------------------------------------------------------- read_glue_tsv


def test_cola_train_has_no_header_but_test_does(tmp_path):
    write(tmp_path / "CoLA" / "train.tsv", "gj04\t1\t\tOur friends won't buy this .\ngj04\t0\t*\tThem left .\n")
    write(tmp_path / "CoLA" / "test.tsv", "index\tsentence\n0\tBill whistled past the house.\n")
    train = r.read_glue_tsv(tmp_path / "CoLA" / "train.tsv")
    assert train[1] == {"source": "gj04", "label": "0", "original_label_mark": "*", "sentence": "Them left ."}
    assert r.read_glue_tsv(tmp_path / "CoLA" / "test.tsv") == [{"index": "0", "sentence": "Bill whistled past the house."}]
    # the task can be named when the folder is not
    other = write(tmp_path / "x" / "t.tsv", "gj04\t1\t\tA sentence .\n")
    assert r.read_glue_tsv(other, task="CoLA")[0]["sentence"] == "A sentence ."


def test_stsb_float_scores(tmp_path):
    text = "index\tsentence1\tsentence2\tscore\n0\tA man.\tA man!\t5.000\n1\tA.\tB.\t0.8\n2\tC.\tD.\t0\n"
    rows = r.read_glue_tsv(write(tmp_path / "STS-B" / "dev.tsv", text))
    scores = [row["score"] for row in rows]
    assert r.check_label_types(scores, "dev.tsv") == "number"
    assert [float(s) for s in scores] == [5.0, 0.8, 0.0]


# ------------------------------------------------------------------- bad tables


def test_missing_file_and_folder(tmp_path):
    assert "no such file" in error(r.read_table, tmp_path / "nope.tsv")
    assert "not a file" in error(r.read_table, tmp_path)


@pytest.mark.parametrize("name", ["e.tsv", "e.csv", "e.jsonl", "e.json"])
def test_empty_file(tmp_path, name):
    f = write(tmp_path / name, "")
    assert f"{f} is empty" in error(r.read_table, f)


def test_header_without_rows(tmp_path):
    f = write(tmp_path / "h.tsv", "sentence\tlabel\n")
    assert "no rows" in error(r.read_table, f)


def test_ragged_row_names_line(tmp_path):
    f = write(tmp_path / "r.tsv", "sentence\tlabel\na\t1\nb\t0\textra\n")
    message = error(r.read_table, f)
    assert str(f) in message and "line 3" in message and "3 fields" in message


def test_duplicate_column_names(tmp_path):
    f = write(tmp_path / "d.tsv", "text\ttext\n1\t2\n")
    assert "duplicate column" in error(r.read_table, f)


def test_non_utf8_names_file_and_line(tmp_path):
    f = write(tmp_path / "latin.tsv", "sentence\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    message = error(r.read_table, f)
    assert str(f) in message and "line 2" in message and "UTF-8" in message


def test_unterminated_csv_quote_is_reported(tmp_path):
    # csv swallows the rest of the file into one field; the row-length check catches it
    f = write(tmp_path / "u.csv", 'a,b\n"unterminated,1\n2,3\n')
    message = error(r.read_table, f)
    assert str(f) in message and "1 fields but 2 columns" in message


def test_malformed_json_line_names_line(tmp_path):
    f = write(tmp_path / "bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 0}\n')
    message = error(r.read_jsonl, f)
    assert str(f) in message and "line 2" in message
    g = write(tmp_path / "list.jsonl", '{"text": "a"}\n[1, 2]\n')
    assert "line 2" in error(r.read_jsonl, g) and "not an object" in error(r.read_jsonl, g)
    h = write(tmp_path / "broken.json", '[{"text": "a"},\n {"text": }]')
    assert "line 2" in error(r.read_table, h)


def test_require_columns_lists_missing_and_available(tmp_path):
    rows = [{"sentence": "a", "label": "1"}]
    r.require_columns(rows, ["sentence", "label"], "train.tsv")
    message = error(r.require_columns, rows, ["text", "label"], "train.tsv")
    assert "train.tsv" in message and "'text'" in message and "available columns: 'sentence', 'label'" in message
    ragged = [{"text": "a", "label": 1}, {"text": "b"}]  # JSON lines may drop a key
    assert "row 2" in error(r.require_columns, ragged, ["label"], "t.jsonl")


# ------------------------------------------------------------------ tag readers

CONLLU = """\
# newdoc id = d1
# sent_id = s1
# text = I don't know.
1	I	I	PRON	PRP	_	3	nsubj	_	_
2-3	don't	_	_	_	_	_	_	_	_
2	do	do	AUX	VBP	_	4	aux	_	_
3	n't	not	PART	RB	_	4	advmod	_	_
4	know	know	VERB	VB	_	0	root	_	_
5	.	.	PUNCT	.	_	4	punct	_	_

# sent_id = s2
1	Sue	Sue	PROPN	NNP	_	2	nsubj	_	_
2	left	leave	VERB	VBD	_	0	root	_	_
2.1	left	leave	VERB	VBD	_	_	_	2:conj	CopyOf=2
3	#	#	SYM	NFP	_	2	punct	_	_
"""


def test_conllu_skips_comments_ranges_and_empty_nodes(tmp_path):
    f = write(tmp_path / "t.conllu", CONLLU)  # no blank line at the end
    assert r.read_conllu(f) == [
        {"tokens": ["I", "do", "n't", "know", "."], "tags": ["PRON", "AUX", "PART", "VERB", "PUNCT"]},
        {"tokens": ["Sue", "left", "#"], "tags": ["PROPN", "VERB", "SYM"]},
    ]
    assert r.read_conllu(f, tag_column="xpos")[1]["tags"] == ["NNP", "VBD", "NFP"]


def test_conllu_errors(tmp_path):
    f = write(tmp_path / "t.conllu", CONLLU)
    assert "upos" in error(r.read_conllu, f, tag_column="lemma")
    spaces = write(tmp_path / "s.conllu", "# c\n1 I I PRON PRP _ 0 root _ _\n")
    message = error(r.read_conllu, spaces)
    assert str(spaces) in message and "line 2" in message
    assert "no sentences" in error(r.read_conllu, write(tmp_path / "c.conllu", "# only a comment\n\n"))
    assert "not valid" in error(r.read_conllu, write(tmp_path / "b.conllu", b"1\tcaf\xe9\n"))


CONLL = """\
-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC"""


def test_conll2003(tmp_path):
    f = write(tmp_path / "train.txt", CONLL)
    assert r.read_conll(f) == [
        {"tokens": ["EU", "rejects", "German"], "tags": ["B-ORG", "O", "B-MISC"]},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]},
        {"tokens": ["BRUSSELS"], "tags": ["B-LOC"]},
    ]
    assert r.read_conll(f, tag_col=1)[0]["tags"] == ["NNP", "VBZ", "JJ"]


def test_conll_errors(tmp_path):
    f = write(tmp_path / "short.txt", "EU B-ORG\nrejects\n")
    message = error(r.read_conll, f, tag_col=1)
    assert str(f) in message and "line 2" in message
    assert "no sentences" in error(r.read_conll, write(tmp_path / "d.txt", "-DOCSTART- O\n\n"))


# ------------------------------------------------------------------------ SQuAD

CONTEXT = "Normandy is a region in France. It was named after the Normans."


def squad_file(tmp_path, qas, version=None, name="squad.json"):
    data = {"data": [{"title": "Normandy", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}
    if version:
        data["version"] = version
    return write(tmp_path / name, json.dumps(data))


def test_squad_v1(tmp_path):
    qas = [{"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 24}] * 2}]
    assert r.read_squad(squad_file(tmp_path, qas)) == [
        {
            "id": "q1",
            "question": "Where?",
            "context": CONTEXT,
            "answers": {"text": ["France", "France"], "answer_start": [24, 24]},
            "is_impossible": False,
            "title": "Normandy",
        }
    ]


def test_squad_v2_unanswerable(tmp_path):
    qas = [
        {"id": "q1", "question": "Named after?", "answers": [{"text": "the Normans", "answer_start": 51}],
         "is_impossible": False},
        {"id": "q2", "question": "Who named France?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "Normans", "answer_start": 55}]},
    ]
    rows = r.read_squad(squad_file(tmp_path, qas, "v2.0"))
    assert [(q["id"], q["is_impossible"], q["answers"]["text"]) for q in rows] == [
        ("q1", False, ["the Normans"]),
        ("q2", True, []),
    ]


@pytest.mark.parametrize(
    "qa, expected",
    [
        ({"id": "q7", "question": "?", "answers": [{"text": "France", "answer_start": 3}]}, "question q7"),
        ({"id": "q8", "question": "?", "answers": [], "is_impossible": False}, "q8 has no answers"),
        ({"id": "q9", "question": "?", "answers": [{"text": "France", "answer_start": 24}], "is_impossible": True},
         "q9 is marked is_impossible"),
        ({"id": "q10", "answers": []}, "missing field 'question'"),
    ],
)
def test_squad_bad_questions(tmp_path, qa, expected):
    message = error(r.read_squad, squad_file(tmp_path, [qa]))
    assert expected in message and "squad.json" in message


def test_squad_bad_files(tmp_path):
    qa = {"id": "q1", "question": "?", "answers": [{"text": "France", "answer_start": 24}]}
    assert "appears twice" in error(r.read_squad, squad_file(tmp_path, [qa, qa]))
    assert "not SQuAD" in error(r.read_squad, write(tmp_path / "l.json", "[1, 2]"))
    assert "invalid JSON at line 2" in error(r.read_squad, write(tmp_path / "t.json", '{"data":\n [}'))
    assert "is empty" in error(r.read_squad, write(tmp_path / "e.json", ""))
    no_context = write(tmp_path / "n.json", json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    assert "missing field 'context'" in error(r.read_squad, no_context)


# ------------------------------------------------------------------ text corpus


def test_text_documents_file_and_folder(tmp_path):
    write(tmp_path / "corpus" / "b.txt", "Doc two line one.\n\n\n  Doc three.  \n")
    write(tmp_path / "corpus" / "a.txt", "Doc one line one.\nDoc one line two.\n")
    write(tmp_path / "corpus" / "sub" / "c.txt", "\nDoc four.")
    write(tmp_path / "corpus" / "notes.md", "ignored\n")
    docs = r.read_text_documents(tmp_path / "corpus")
    assert isinstance(docs, types.GeneratorType)
    assert list(docs) == [
        ["Doc one line one.", "Doc one line two."],
        ["Doc two line one."],
        ["Doc three."],
        ["Doc four."],
    ]
    assert list(r.read_text_documents(tmp_path / "corpus" / "a.txt")) == [["Doc one line one.", "Doc one line two."]]


def test_text_documents_stream(tmp_path):
    """The first document arrives before the reader reaches a bad byte 200 KB later,
    so the file is not read whole."""
    f = write(tmp_path / "big.txt", b"first doc\n\n" + b"filler line\n" * 20000 + b"\n\xff bad\n")
    docs = r.read_text_documents(f)
    assert next(docs) == ["first doc"]
    assert "line 20004" in error(next, docs)


def test_text_documents_errors(tmp_path):
    assert "no such file" in error(r.read_text_documents, tmp_path / "missing.txt")  # raised at call time
    (tmp_path / "empty_dir").mkdir()
    assert "no .txt files" in error(r.read_text_documents, tmp_path / "empty_dir")
    assert "holds no text" in error(list, r.read_text_documents(write(tmp_path / "blank.txt", "\n\n")))


# ----------------------------------------------------------------------- labels


def test_drop_unlabelled_snli_style():
    rows = [{"gold_label": "neutral"}, {"gold_label": "-"}, {"gold_label": ""}, {}, {"gold_label": 0}]
    kept, dropped = r.drop_unlabelled(rows, "gold_label")
    assert kept == [{"gold_label": "neutral"}, {"gold_label": 0}] and dropped == 3
    assert r.drop_unlabelled(rows, "gold_label", bad={"neutral"})[1] == 2


def test_build_label_list():
    assert r.build_label_list(["neutral", "entailment", "contradiction", "neutral"], ["neutral"], "dev.tsv") == [
        "contradiction", "entailment", "neutral"
    ]
    assert r.build_label_list(["10", "2", "1"], None, "dev.tsv") == ["1", "2", "10"]  # numeric order
    assert r.build_label_list([1, 0, 1], [0, 1], "dev.jsonl") == [0, 1]
    message = error(r.build_label_list, ["pos", "neg"], ["pos", "neutral"], "data/dev.tsv")
    assert "data/dev.tsv" in message and "'neutral'" in message and "'neg', 'pos'" in message
    assert "no labels" in error(r.build_label_list, [], [], "dev.tsv")


def test_check_label_types():
    assert r.check_label_types(["0", "1", 2, "3.5", "-1e3"], "t.tsv") == "number"
    assert r.check_label_types(["pos", "neg", "nan"], "t.tsv") == "text"
    message = error(r.check_label_types, ["3.5", "4", "label", "2"], "train.tsv")
    assert "train.tsv" in message and "3 rows" in message and "'label'" in message
    assert "no labels" in error(r.check_label_types, [], "t.tsv")


# ------------------------------------------------------ real data (../shared/data)


@pytest.fixture
def data():
    if not DATA.is_dir():
        pytest.skip(f"real data not present at {DATA}")
    return DATA


GLUE_ROWS = {
    "CoLA": (8551, 1043, 1063),
    "SST-2": (67349, 872, 1821),
    "MRPC": (3667, 408, 1725),
    "STS-B": (5749, 1500, 1379),
    "RTE": (2490, 277, 3000),
    "WNLI": (635, 71, 146),
}
GLUE_LABEL = {"CoLA": "label", "SST-2": "label", "MRPC": "Quality", "STS-B": "score", "RTE": "label", "WNLI": "label"}


@pytest.mark.parametrize("task", sorted(GLUE_ROWS))
def test_real_glue(data, task):
    folder = data / "glue" / task
    train, dev, test = (r.read_glue_tsv(folder / f"{split}.tsv") for split in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == GLUE_ROWS[task]
    column = GLUE_LABEL[task]
    r.require_columns(train, [column], folder / "train.tsv")
    assert column not in test[0] and "index" in test[0]
    kind = r.check_label_types([x[column] for x in train + dev], folder)
    assert kind == ("text" if task == "RTE" else "number")
    if task != "STS-B":
        labels = r.build_label_list([x[column] for x in train], [x[column] for x in dev], folder / "dev.tsv")
        assert labels == (["entailment", "not_entailment"] if task == "RTE" else ["0", "1"])


def test_real_mrpc_needs_quote_none(data):
    message = error(r.read_table, data / "glue" / "MRPC" / "train.tsv", quoting="minimal")
    assert "fields but 5 columns" in message


def test_real_ewt(data):
    path = data / "ud_english_ewt" / "en_ewt-ud-dev.conllu"
    upos, xpos = r.read_conllu(path), r.read_conllu(path, tag_column="xpos")
    assert len(upos) == len(xpos) == 2001
    assert upos[0] == {
        "tokens": ["From", "the", "AP", "comes", "this", "story", ":"],
        "tags": ["ADP", "DET", "PROPN", "VERB", "DET", "NOUN", "PUNCT"],
    }
    assert xpos[0]["tags"] == ["IN", "DT", "NNP", "VBZ", "DT", "NN", ":"]
    assert sum(len(s["tokens"]) for s in upos) == 25147  # syntactic words: no ranges, no empty nodes
    assert all(len(s["tokens"]) == len(s["tags"]) for s in upos)


def test_real_snli(data):
    path = data / "snli" / "snli_1.0_dev.jsonl"
    rows = r.read_table(path)
    # README says 10,000 pairs (the full dev split); the copy here holds the first 1,289.
    assert len(rows) in (1289, 10000)
    r.require_columns(rows, ["sentence1", "sentence2", "gold_label"], path)
    kept, dropped = r.drop_unlabelled(rows, "gold_label")
    assert dropped > 0 and len(kept) + dropped == len(rows)
    assert r.build_label_list([x["gold_label"] for x in kept], None, path) == ["contradiction", "entailment", "neutral"]


def test_real_squad(data):
    rows = r.read_squad(data / "squad" / "squad2-dev-normans.json")
    assert len(rows) == 208
    assert sum(q["is_impossible"] for q in rows) == 112
    assert rows[0]["answers"] == {"text": ["France"] * 4, "answer_start": [159] * 4}
