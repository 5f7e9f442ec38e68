"""Property-based tests (hypothesis): whatever a file holds, the recipe loader and every
reader either parse it or raise BertctlError with one line; never another exception,
never a hang. Example counts are bounded (see SETTINGS) so the whole file runs in
seconds; BERTCTL_HYPOTHESIS_EXAMPLES=N explores more.

Generated text is drawn from the characters that matter to each format (delimiters,
quotes, brackets, newlines, tabs, a NUL, a byte-order mark, non-ASCII) mixed with
fragments that look like the format, plus raw bytes that are not UTF-8."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bertctl.errors import BertctlError  # noqa: E402

SETTINGS = settings(max_examples=int(os.environ.get("BERTCTL_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow], derandomize=True)

SPECIAL = "\t,;\"'\n\r {}[]:#-=|\\.0123456789 \x00\ufeffé中"


def text_like(fragments: list[str]) -> st.SearchStrategy[str]:
    """Text made of format-looking fragments, special characters and random words."""
    piece = st.one_of(st.sampled_from(fragments), st.text(alphabet=SPECIAL, max_size=6),
                      st.text(max_size=8), st.sampled_from(["\n", "\t", "\n\n"]))
    return st.lists(piece, max_size=40).map("".join)


def contents(fragments: list[str]) -> st.SearchStrategy[bytes]:
    """File contents: format-like text (UTF-8, sometimes with a BOM) or raw bytes."""
    return st.one_of(text_like(fragments).map(lambda t: t.encode("utf-8")),
                     text_like(fragments).map(lambda t: ("\ufeff" + t).encode("utf-8")),
                     st.binary(max_size=200))


def _file(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="bertctl-prop-"))
    path = folder / name
    path.write_bytes(data)
    return path


def parses_or_one_line(read, data: bytes, name: str):
    """read(path) returns a value or raises BertctlError whose message is one line."""
    import shutil

    path = _file(data, name)
    try:
        return read(path)
    except BertctlError as e:
        assert "\n" not in e.line() and e.line().strip(), repr(e.line())
        return None
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def _rows_are_dicts(rows) -> None:
    assert rows is None or (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows))


TABLE = ["sentence\tlabel\n", "a\tb\n", "x,y\n", '"q""uote",1\n', "index\tsentence\n", "1\t2\t3\n", '"', "label"]
JSONL = ['{"text": "a", "label": 1}\n', "[1, 2]\n", '{"a": ', "null\n", '{"x": NaN}\n', "}\n", '"s"\n']
CONLLU = ["# sent_id = 1\n", "1\tthe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n", "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n",
          "8.1\tx\t_\t_\t_\t_\t_\t_\t_\t_\n", "\n"]
CONLL = ["-DOCSTART- -X- O O\n", "EU NNP B-NP B-ORG\n", "the DT\n", "\n", "word\n"]
SQUAD = ['{"data": [', '{"title": "t", "paragraphs": [', '{"context": "Ada lives in Paris .", "qas": [',
         '{"id": "q1", "question": "Where ?", "answers": [{"text": "Paris", "answer_start": 13}]}', "]}", "]}", "]}",
         '"is_impossible": true', ",", '{"id": ["x"]}', '"answer_start": "13"']


@SETTINGS
@given(data=contents(TABLE), ext=st.sampled_from([".tsv", ".csv"]), header=st.sampled_from([True, False, None]))
def test_tables_parse_or_say_one_line(data, ext, header):
    from bertctl.data.readers import read_table

    _rows_are_dicts(parses_or_one_line(lambda p: read_table(p, header=header), data, "t" + ext))


@SETTINGS
@given(data=contents(TABLE), task=st.sampled_from(["CoLA", "SST-2", "MRPC"]))
def test_glue_tsv_parses_or_says_one_line(data, task):
    from bertctl.data.readers import read_glue_tsv

    _rows_are_dicts(parses_or_one_line(lambda p: read_glue_tsv(p, task), data, "dev.tsv"))


@SETTINGS
@given(data=contents(JSONL), ext=st.sampled_from([".jsonl", ".json"]))
def test_json_tables_parse_or_say_one_line(data, ext):
    from bertctl.data.readers import read_table

    _rows_are_dicts(parses_or_one_line(read_table, data, "t" + ext))


@SETTINGS
@given(data=contents(CONLLU), column=st.sampled_from(["upos", "xpos"]))
def test_conllu_parses_or_says_one_line(data, column):
    from bertctl.data.readers import read_conllu

    rows = parses_or_one_line(lambda p: read_conllu(p, column), data, "t.conllu")
    assert rows is None or all(len(r["tokens"]) == len(r["tags"]) > 0 for r in rows)


@SETTINGS
@given(data=contents(CONLL), cols=st.sampled_from([(0, -1), (0, 3), (1, 2), (-1, 0)]))
def test_conll_parses_or_says_one_line(data, cols):
    from bertctl.data.readers import read_conll

    rows = parses_or_one_line(lambda p: read_conll(p, *cols), data, "t.conll")
    assert rows is None or all(len(r["tokens"]) == len(r["tags"]) > 0 for r in rows)


@SETTINGS
@given(data=contents(SQUAD))
def test_squad_parses_or_says_one_line(data):
    from bertctl.data.readers import read_squad

    rows = parses_or_one_line(read_squad, data, "t.json")
    for r in rows or []:  # every answer sits where it says
        for text, start in zip(r["answers"]["text"], r["answers"]["answer_start"]):
            assert r["context"][start:start + len(text)] == text


@SETTINGS
@given(data=st.one_of(st.builds(lambda a, b: (a + "\n\n" + b).encode(), text_like(TABLE), text_like(CONLL)),
                      st.binary(max_size=200)))
def test_plain_text_corpora_parse_or_say_one_line(data):
    from bertctl.data.readers import read_text_documents

    docs = parses_or_one_line(lambda p: list(read_text_documents(p)), data, "corpus.txt")
    assert docs is None or all(doc and all(line.strip() for line in doc) for doc in docs)


def _squad_json(value) -> bytes:
    import json

    return json.dumps(value).encode()


JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True),
                                     st.text(alphabet="Paris Ada.", max_size=12)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["data", "title", "paragraphs", "context", "qas", "id",
                                                        "question", "answers", "text", "answer_start",
                                                        "is_impossible"]), inner, max_size=5)),
                           max_leaves=25)


@SETTINGS
@given(value=JSON_VALUES)
def test_squad_shaped_json_parses_or_says_one_line(value):
    from bertctl.data.readers import read_squad

    parses_or_one_line(read_squad, _squad_json({"data": value} if not isinstance(value, dict) else value), "t.json")


# --------------------------------------------------------------------------- recipes


YAML = ["command: pretrain\n", "command: finetune\n", "train:\n", "  lr: 1e-4\n", "  max_steps: 3\n", "  batch_size: true\n",
        "model:\n", "  hidden: no\n", "data:\n", "  source: 2024-01-01\n", "- a\n", "&a [*a]\n", "!!python/object:os.system\n",
        "key: value\n", "? [a, b]\n: c\n", "{", "}", "!!binary x\n", "!!int abc\n", "!!timestamp 2020-13-45\n",
        "  world: {n_docs: 010}\n", "task: 1\n", "<<: {a: 1}\n"]
SCHEMAS = ["pretrain", "finetune", "eval-glue", "probe", "prompt"]


@SETTINGS
@given(data=contents(YAML), command=st.sampled_from(SCHEMAS))
def test_recipe_files_load_or_say_one_line(data, command):
    from bertctl.recipe import read_yaml, schema_for, validate

    def load(path):
        raw = read_yaml(path)
        raw.pop("command", None)
        return validate(schema_for(command), raw, path.name, path.parent)

    parses_or_one_line(load, data, "recipe.yaml")


KEYS = ["train.lr", "train.max_steps", "model", "model.hidden", "data.world.n_docs", "task", "a.b.c", "train", "",
        ".x", "data.columns.label", "labels", "shots"]


@SETTINGS
@given(command=st.sampled_from(SCHEMAS),
       overrides=st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), st.text(alphabet="ab._=", max_size=6)),
                                    text_like(YAML + ["[1, 2]", "{a: 1}", "true", "0.5", "-3", "null"])),
                          max_size=4))
def test_recipe_overrides_load_or_say_one_line(command, overrides):
    from bertctl.recipe import load, schema_for

    items = [f"{k}={v}" for k, v in overrides]
    default = {"eval-glue": "glue", "probe": "probe_similarity"}.get(command, command)

    def run(_path):
        return load(schema_for(command), None, items, default)

    parses_or_one_line(run, b"", "unused")
