"""Texts longer than the model (long_text.strategy: head, tail, head_tail, windows), and the
readers for the new real files (CoNLL-2002 under its own file names, JSON-lines reviews)."""

from __future__ import annotations

import json

import pytest

from bertctl.errors import BertctlError
from bertctl.finetune.cls import pool_windows, sequence_features
from bertctl.finetune.config import LongTextSettings

from .helpers import recipe, write

WORDS = " ".join(f"w{i}" for i in range(30))  # "w7" is two tokens: "w", "##7"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from bertctl.embedded import embedded_path

    return AutoTokenizer.from_pretrained(str(embedded_path("minilm")))


def _cut(tok, strategy, max_length=12, **extra):
    rows = [{"text": WORDS, "label": 1}, {"text": "short one", "label": 0}]
    feats = sequence_features(tok, rows, max_length, False, lambda r: r["label"],
                              LongTextSettings(strategy=strategy, **extra))
    return feats, tok(WORDS, add_special_tokens=False)["input_ids"]


def test_head_tail_and_head_tail_keep_the_parts_they_name(tok):
    cls, sep = tok.cls_token_id, tok.sep_token_id
    (head, short), ids = _cut(tok, "head")
    assert head["input_ids"] == [cls, *ids[:10], sep] and short["input_ids"] == tok("short one")["input_ids"]
    (tail, _), ids = _cut(tok, "tail")
    assert tail["input_ids"] == [cls, *ids[-10:], sep]
    (both, _), ids = _cut(tok, "head_tail", head_tokens=3)
    assert both["input_ids"] == [cls, *ids[:3], *ids[-7:], sep]
    assert both["token_type_ids"] == [0] * 12 and both["labels"] == 1


def test_windows_cover_the_text_with_the_overlap_and_end_at_its_end(tok):
    feats, ids = _cut(tok, "windows", window_overlap=4)
    windows = [f["input_ids"][1:-1] for f in feats if f["doc"] == 0]
    assert all(len(w) == 10 for w in windows) and windows[0] == ids[:10] and windows[-1] == ids[-10:]
    for a, b in zip(windows, windows[1:-1]):
        assert a[-4:] == b[:4]  # every window starts 6 tokens after the last
    covered = {t for k in range(len(windows)) for t in range(k * 6, k * 6 + 10)}
    assert covered >= set(range(len(ids) - 10))
    assert [f["doc"] for f in feats][-1] == 1 and all(f["labels"] == 1 for f in feats if f["doc"] == 0)


def test_an_overlap_as_long_as_the_window_is_one_error(tok):
    with pytest.raises(BertctlError, match=r"long_text.window_overlap=10 leaves no new tokens in a window of 10"):
        _cut(tok, "windows", window_overlap=10)


def test_windows_are_pooled_by_mean_probability():
    import torch

    feats = [{"doc": 0}, {"doc": 0}, {"doc": 1}]
    out = [(torch.tensor([0.0, 0.0]),), (torch.tensor([0.0, 2.0]),), (torch.tensor([1.0, 0.0]),)]
    pooled = pool_windows(feats, out)
    assert len(pooled) == 2
    expected = (torch.tensor([0.5, 0.5]) + torch.tensor([0.0, 2.0]).softmax(-1)) / 2
    assert torch.allclose(pooled[0][0].exp(), expected)
    assert pool_windows([{}, {}], out[:2]) == out[:2]  # no windows: as they are


def test_a_windows_run_trains_predicts_and_evaluates_one_answer_per_row(cli, tiny, tmp_path):
    rows = [{"id": f"r{i}", "text": ("a good film . " if i % 2 else "a bad film . ") * 12,
             "label": "pos" if i % 2 else "neg"} for i in range(24)]
    write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:16]))
    write(tmp_path / "dev.jsonl", "".join(json.dumps(r) + "\n" for r in rows[16:]))
    r = recipe(tiny, "cls", data={"train": str(tmp_path / "train.jsonl"), "dev": str(tmp_path / "dev.jsonl")},
               model={"max_length": 16}, long_text={"strategy": "windows", "window_overlap": 4})
    from bertctl.finetune.run import finetune
    from bertctl.runs import Run

    finetune(r, Run.create(tmp_path / "run", "finetune"), quiet=True)
    lines = (tmp_path / "run" / "predictions_dev.jsonl").read_text().splitlines()
    assert len(lines) == 8 and {json.loads(x)["prediction"] for x in lines} <= {"pos", "neg"}
    code, out, err = cli("predict", tmp_path / "run", tmp_path / "dev.jsonl")
    assert code == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    assert [x["index"] for x in records] == list(range(8))
    assert all(abs(sum(x["probabilities"].values()) - 1) < 1e-4 for x in records)
    assert "long_text:\n  strategy: windows" in (tmp_path / "run" / "recipe.yaml").read_text()


# ------------------------------------------------------------------------ readers


def test_conll2002_files_are_read_under_their_own_names(tmp_path):
    from bertctl.finetune.data import load_splits

    dutch = ("-DOCSTART- -DOCSTART- O\nDe Art O\nkoning N B-PER\n\nIn Prep O\nGent N B-LOC\n.\tPunc\tO\n")
    write(tmp_path / "ned.train", dutch)
    write(tmp_path / "ned.testa", "Jan N B-PER\nwoont V O\n")
    r = recipe("minilm", "ner", data={"train": str(tmp_path / "ned.train"), "dev": str(tmp_path / "ned.testa")})
    splits = load_splits(r.data, "ner")
    assert [s["tokens"] for s in splits.train] == [["De", "koning"], ["In", "Gent", "."]]
    assert splits.train[1]["tags"] == ["O", "B-LOC", "O"] and splits.dev[0]["tags"] == ["B-PER", "O"]
    write(tmp_path / "notes.train", "hello world\n")  # not CoNLL: still asks for the format
    with pytest.raises(BertctlError, match="cannot tell the format from the extension .train"):
        load_splits(recipe("minilm", "ner", data={"train": str(tmp_path / "notes.train"),
                                                  "dev": str(tmp_path / "ned.testa")}).data, "ner")


def test_real_conll2002_and_movie_reviews(shared_data):
    from bertctl.finetune.data import load_splits

    r = recipe("minilm", "ner", data={"train": str(shared_data / "conll2002" / "esp.train"),
                                      "dev": str(shared_data / "conll2002" / "ned.testa")})
    splits = load_splits(r.data, "ner")
    # esp.train: 8,323 sentences; ned.testa: 2,821 blank-line blocks, 74 of which hold a
    # -DOCSTART- line glued to the next sentence, which is read as a sentence of its own
    assert (len(splits.train), len(splits.dev)) == (8323, 2895)
    assert {t for s in splits.train for t in s["tags"]} == {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC",
                                                           "B-MISC", "I-MISC"}
    r = recipe("minilm", "cls", data={"train": str(shared_data / "movie_reviews" / "train.jsonl"),
                                      "dev": str(shared_data / "movie_reviews" / "dev.jsonl")})
    splits = load_splits(r.data, "cls")
    assert (len(splits.train), len(splits.dev)) == (1600, 200)
    assert {x["label"] for x in splits.dev} == {"pos", "neg"}


def test_head_tail_defaults_to_a_quarter_head_and_refuses_a_head_without_tail(tok):
    (both, _), ids = _cut(tok, "head_tail", max_length=14)  # 12 tokens: 3 from the start, 9 from the end
    assert both["input_ids"][1:-1] == ids[:3] + ids[-9:]
    with pytest.raises(BertctlError, match=r"long_text.head_tokens=12 leaves no tail in 12 tokens"):
        _cut(tok, "head_tail", max_length=14, head_tokens=12)


def test_long_text_on_a_kind_that_does_not_cut_texts_is_refused(cli, tiny):
    code, _, err = cli("finetune", "--task", "nli", f"model.name_or_path={tiny}", "long_text.strategy=tail")
    assert code == 2 and "long_text.strategy" in err and "does not cut single long texts" in err


def test_rows_cut_at_max_length_are_counted_not_those_read_in_windows(tok):
    """A long document cut to max_length used to say nothing (issue #20)."""
    rows = [{"text": WORDS, "label": 1}, {"text": "short one", "label": 0}]
    for strategy, cut in (("head", 1), ("tail", 1), ("head_tail", 1), ("windows", 0)):
        counts = {}
        sequence_features(tok, rows, 12, False, lambda r: r["label"], LongTextSettings(strategy=strategy), counts)
        assert counts.get("rows_cut", 0) == cut, strategy
    exact = tok.decode(tok(WORDS, add_special_tokens=False)["input_ids"][:10])  # exactly max_length: not cut
    pairs = [{"text": WORDS, "text_pair": "a b", "label": 1}, {"text": exact, "label": 0}]
    counts = {}
    sequence_features(tok, pairs[:1], 12, True, lambda r: r["label"], None, counts)
    sequence_features(tok, [{"text": exact, "label": 0}], 12, False, lambda r: r["label"], None, counts)
    assert counts == {"rows_cut": 1}
    from bertctl.finetune.cls import ClsTask

    task = ClsTask(recipe("minilm", "cls"), ["a", "b"])
    task.counts["rows_cut"] = 3
    assert task.report() == [f"3 row(s) longer than model.max_length ({task.max_length} tokens) were cut to it"]
