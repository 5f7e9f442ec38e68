"""Extractive QA pieces: window features, labels, decoding, SQuAD 2.0 null answers.

Uses the real (fast, uncased) tokenizer of the embedded MiniLM, so offsets are the ones
a real run sees. Logits are made by hand: decoding is checked exactly, no model needed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertctl.errors import BertctlError
from bertctl.finetune.qa_spans import (
    check_answers,
    best_answers,
    collate_qa,
    decode_nbest,
    prepare_eval_features,
    prepare_train_features,
    span_loss_sum,
)


def decode(examples, features, start_logits, end_logits, max_answer_length: int = 30, n_best: int = 20,
           version_2: bool = True, null_threshold: float = 0.0) -> dict[str, str]:
    """Answer text per example id (best_answers' text; was bertctl's, used only here)."""
    answers = best_answers(examples, features, start_logits, end_logits, max_answer_length, n_best,
                           version_2, null_threshold)
    return {qid: a["text"] for qid, a in answers.items()}


@pytest.fixture(scope="module")
def tok():
    from bertctl.models import load_tokenizer, resolve

    return load_tokenizer(resolve("minilm"))


def example(qid, question, context, answer=None, start=None):
    if answer is None:
        return {"id": qid, "question": question, "context": context, "answers": {"text": [], "answer_start": []}}
    start = context.index(answer) if start is None else start
    return {"id": qid, "question": question, "context": context,
            "answers": {"text": [answer], "answer_start": [start]}}


# A long document: the answer sits in its last sentences, far past the first window.
FILLER = " ".join(f"Report {i} covers the weather in region number {i}." for i in range(30))
LONG = FILLER + " The festival was held in Montevideo in 1987. The end."


def span_text(feature, context, s, e):
    """Context characters covered by tokens s..e (eval features carry the offsets)."""
    offsets = feature["offset_mapping"]
    return context[offsets[s][0]:offsets[e][1]]


def logits_for(features, hot: dict[int, tuple[int, int, float]]):
    """Zero logits, except feature f gets `value` at start s and end e."""
    starts = [np.zeros(len(f["input_ids"])) for f in features]
    ends = [np.zeros(len(f["input_ids"])) for f in features]
    for f, (s, e, value) in hot.items():
        starts[f][s] += value
        ends[f][e] += value
    return starts, ends


def first_context_token(feature):
    return next(j for j, o in enumerate(feature["offset_mapping"]) if o is not None)


# ----------------------------------------------------------------------- features


def test_labels_point_at_the_answer_tokens(tok):
    examples = [
        example("a", "Who wrote the letter?", "The letter was written by Margaret Thatcher in 1979.",
                "Margaret Thatcher"),
        example("b", "When?", "It rained on Tuesday, 4 March 2003, all day long.", "4 March 2003"),
        example("c", "What colour is the sky on Mars?", "Nobody asked about the sea."),  # unanswerable
        # answer text with surrounding spaces: labels trim them instead of grabbing a neighbour
        example("d", "Which river?", "They crossed the Danube at dawn.", " the Danube ", start=12),
    ]
    train = prepare_train_features(tok, examples)
    evals = prepare_eval_features(tok, examples)
    assert len(train) == len(evals) == 4  # short contexts: one window each
    for ex, f, ev in zip(examples, train, evals):
        assert set(f) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
        assert f["input_ids"] == ev["input_ids"] and ev["example_id"] == ex["id"]
        assert f["input_ids"][0] == tok.cls_token_id
        s, e = f["start_positions"], f["end_positions"]
        if not ex["answers"]["text"]:
            assert (s, e) == (0, 0)
            continue
        assert 0 < s <= e
        assert f["token_type_ids"][s] == 1  # inside the context segment
        assert span_text(ev, ex["context"], s, e) == ex["answers"]["text"][0].strip()
    # question and special tokens carry no offsets; context tokens do
    ev = evals[0]
    assert ev["offset_mapping"][0] is None
    q_len = len(tok("Who wrote the letter?", add_special_tokens=False)["input_ids"])
    assert all(o is None for o in ev["offset_mapping"][: q_len + 2])
    assert ev["offset_mapping"][q_len + 2] == (0, 3)  # "The"
    assert ev["offset_mapping"][-1] is None  # final [SEP]


def test_long_context_windows_and_answer_in_a_later_window(tok):
    ex = example("long", "Where was the festival held?", LONG, "Montevideo")
    a_start = ex["answers"]["answer_start"][0]
    a_end = a_start + len("Montevideo")
    train = prepare_train_features(tok, [ex], max_length=64, doc_stride=16)
    evals = prepare_eval_features(tok, [ex], max_length=64, doc_stride=16)
    assert len(train) == len(evals) > 4
    assert all(len(f["input_ids"]) <= 64 for f in train)

    labelled = []
    for w, (f, ev) in enumerate(zip(train, evals)):
        spans = [o for o in ev["offset_mapping"] if o is not None]
        holds_answer = spans[0][0] <= a_start and a_end <= spans[-1][1]
        if holds_answer:
            assert span_text(ev, LONG, f["start_positions"], f["end_positions"]) == "Montevideo"
            labelled.append(w)
        else:
            assert (f["start_positions"], f["end_positions"]) == (0, 0)
    assert labelled and labelled[0] >= 3  # only later windows hold it
    assert 0 not in labelled

    # consecutive windows overlap by doc_stride context tokens
    ctx0 = [o for o in evals[0]["offset_mapping"] if o is not None]
    ctx1 = [o for o in evals[1]["offset_mapping"] if o is not None]
    assert ctx0[-16:] == ctx1[:16]
    # the windows cover the whole context
    assert ctx0[0][0] == 0
    assert [o for o in evals[-1]["offset_mapping"] if o is not None][-1][1] == len(LONG)

    # decoding that window's labelled span maps back to the original characters
    w = labelled[-1]
    starts, ends = logits_for(evals, {w: (train[w]["start_positions"], train[w]["end_positions"], 5.0)})
    nbest = decode_nbest([ex], evals, starts, ends)["long"]
    top = nbest["candidates"][0]
    assert (top["start"], top["end"], top["text"]) == (a_start, a_end, "Montevideo")
    assert decode([ex], evals, starts, ends) == {"long": "Montevideo"}


def test_answer_cut_by_a_window_boundary_is_labelled_cls(tok):
    # Place a 7-token answer across the end of window 0: its first 4 tokens are in
    # window 0 only, so with a 2-token overlap no window holds all of it.
    probe = example("cut", "Where?", LONG)
    evals = prepare_eval_features(tok, [probe], max_length=32, doc_stride=2)
    ctx0 = [o for o in evals[0]["offset_mapping"] if o is not None]
    ctx1 = [o for o in evals[1]["offset_mapping"] if o is not None]
    assert ctx1[:2] == ctx0[-2:]
    a_start, a_end = ctx0[-4][0], ctx1[4][1]
    ex = example("cut", "Where?", LONG, LONG[a_start:a_end], start=a_start)

    train = prepare_train_features(tok, [ex], max_length=32, doc_stride=2)
    assert len(train) == len(evals)
    assert all((f["start_positions"], f["end_positions"]) == (0, 0) for f in train)
    # with an 8-token overlap window 1 holds the whole answer, and is labelled with it
    train = prepare_train_features(tok, [ex], max_length=32, doc_stride=8)
    evals = prepare_eval_features(tok, [ex], max_length=32, doc_stride=8)
    assert (train[0]["start_positions"], train[0]["end_positions"]) == (0, 0)
    f, ev = train[1], evals[1]
    assert span_text(ev, LONG, f["start_positions"], f["end_positions"]) == LONG[a_start:a_end]


# ------------------------------------------------------------------------ decoding


def test_decode_picks_the_best_span_across_windows(tok):
    ex = example("q", "Where was the festival held?", LONG, "Montevideo")
    evals = prepare_eval_features(tok, [ex], max_length=64, doc_stride=16)
    assert len(evals) >= 3
    c0, c2 = first_context_token(evals[0]), first_context_token(evals[2]) + 3
    want0 = span_text(evals[0], LONG, c0, c0 + 1)
    want2 = span_text(evals[2], LONG, c2, c2 + 2)
    assert want0 != want2

    starts, ends = logits_for(evals, {0: (c0, c0 + 1, 4.0), 2: (c2, c2 + 2, 5.0)})
    assert decode([ex], evals, starts, ends) == {"q": want2}
    # the same logits with window 0 stronger flip the answer (the test can fail)
    starts, ends = logits_for(evals, {0: (c0, c0 + 1, 6.0), 2: (c2, c2 + 2, 5.0)})
    assert decode([ex], evals, starts, ends) == {"q": want0}
    nbest = decode_nbest([ex], evals, starts, ends, n_best=3)["q"]
    assert [c["text"] for c in nbest["candidates"][:2]] == [want0, want2]
    assert nbest["candidates"][0]["score"] == pytest.approx(12.0)
    assert len(nbest["candidates"]) == 3


def test_a_span_in_two_overlapping_windows_is_one_candidate_with_its_best_score(tok):
    ex = example("q", "Where was the festival held?", LONG, "Montevideo")
    evals = prepare_eval_features(tok, [ex], max_length=64, doc_stride=16)
    ctx0 = [j for j, o in enumerate(evals[0]["offset_mapping"]) if o is not None]
    ctx1 = [j for j, o in enumerate(evals[1]["offset_mapping"]) if o is not None]
    s0, s1 = ctx0[-5], ctx1[16 - 5]  # the same token, seen by both windows
    assert evals[0]["offset_mapping"][s0] == evals[1]["offset_mapping"][s1]
    starts, ends = logits_for(evals, {0: (s0, s0 + 1, 5.0), 1: (s1, s1 + 1, 3.0)})
    candidates = decode_nbest([ex], evals, starts, ends, n_best=5)["q"]["candidates"]
    want = span_text(evals[0], LONG, s0, s0 + 1)
    assert candidates[0]["text"] == want and candidates[0]["score"] == pytest.approx(10.0)
    assert sum(c["text"] == want for c in candidates) == 1


def test_decode_accepts_padded_tensor_logits(tok):
    ex = example("q", "Where was the festival held?", LONG, "Montevideo")
    evals = prepare_eval_features(tok, [ex], max_length=64, doc_stride=16)
    c = first_context_token(evals[1]) + 2
    starts, ends = logits_for(evals, {1: (c, c + 1, 3.0)})
    longest = max(len(s) for s in starts)
    assert min(len(s) for s in starts) < longest  # the last window is shorter: real padding
    pad = lambda rows: torch.tensor(np.stack([np.pad(r, (0, longest - len(r)), constant_values=50.0) for r in rows]))
    # padding positions hold huge logits: they must be ignored, not decoded
    assert decode([ex], evals, pad(starts).bfloat16(), pad(ends)) == {"q": span_text(evals[1], LONG, c, c + 1)}


def test_decode_enforces_start_before_end_and_max_length(tok):
    context = "one two three four five six seven eight nine ten"
    ex = example("q", "Which number?", context)
    [ev] = prepare_eval_features(tok, [ex])
    c = first_context_token(ev)  # token of "one"; each word is one token
    assert span_text(ev, context, c, c + 9) == context
    start, end = np.zeros(len(ev["input_ids"])), np.zeros(len(ev["input_ids"]))
    start[c + 6] = 10.0  # argmax start: "seven"
    end[c + 1] = 10.0    # argmax end: "two", before it -> invalid pair
    start[c + 2] = 4.0   # "three"
    end[c + 7] = 3.0     # "eight"
    # best valid pair: (seven, eight) = 13, above (two, two) = 10 and (three, eight) = 7
    assert decode([ex], [ev], [start], [end], version_2=False) == {"q": "seven eight"}
    # a far end is out of reach when max_answer_length is short
    start2, end2 = np.zeros_like(start), np.zeros_like(end)
    start2[c] = 10.0
    end2[c + 9] = 10.0  # 10-token span "one ... ten"
    end2[c + 1] = 2.0
    assert decode([ex], [ev], [start2], [end2], max_answer_length=10, version_2=False) == {"q": context}
    assert decode([ex], [ev], [start2], [end2], max_answer_length=9, version_2=False) == {"q": "one two"}


def test_decode_never_answers_with_question_or_special_tokens(tok):
    context = "alpha beta gamma"
    ex = example("q", "Which letter?", context)
    [ev] = prepare_eval_features(tok, [ex])
    n = len(ev["input_ids"])
    start, end = np.full(n, -1.0), np.full(n, -1.0)
    start[:3] = end[:3] = 100.0  # [CLS] and the question
    start[-1] = end[-1] = 100.0  # final [SEP]
    c = first_context_token(ev)
    start[c + 1], end[c + 2] = 1.0, 1.0
    assert decode([ex], [ev], [start], [end], version_2=False) == {"q": "beta gamma"}


def test_unanswerable_null_score_and_threshold(tok):
    context = "The museum opened in 1901 and closed in 1999."
    ex = example("q", "When did it reopen?", context)
    [ev] = prepare_eval_features(tok, [ex])
    c = first_context_token(ev) + 4  # "1901"
    assert span_text(ev, context, c, c) == "1901"
    start, end = np.zeros(len(ev["input_ids"])), np.zeros(len(ev["input_ids"]))
    start[c] = end[c] = 2.0  # span score 4
    start[0] = end[0] = 3.0  # null score 6
    assert decode([ex], [ev], [start], [end]) == {"q": ""}
    assert decode([ex], [ev], [start], [end], null_threshold=1.9) == {"q": ""}
    assert decode([ex], [ev], [start], [end], null_threshold=2.1) == {"q": "1901"}
    assert decode([ex], [ev], [start], [end], version_2=False) == {"q": "1901"}
    start[0] = end[0] = 1.0  # null score 2 < span 4
    assert decode([ex], [ev], [start], [end]) == {"q": "1901"}
    assert decode([ex], [ev], [start], [end], null_threshold=-2.5) == {"q": ""}


def test_null_score_is_the_minimum_over_windows(tok):
    ex = example("q", "Where was the festival held?", LONG, "Montevideo")
    evals = prepare_eval_features(tok, [ex], max_length=64, doc_stride=16)
    c = first_context_token(evals[1]) + 1
    starts, ends = logits_for(evals, {1: (c, c, 2.0)})  # best span 4 (window 1)
    for s, e in zip(starts, ends):
        s[0] = e[0] = 5.0  # null 10 in every window ...
    assert decode([ex], evals, starts, ends) == {"q": ""}
    starts[2][0] = ends[2][0] = 1.0  # ... but one window is confident there is an answer
    nbest = decode_nbest([ex], evals, starts, ends)["q"]
    assert nbest["null_score"] == pytest.approx(2.0)
    assert decode([ex], evals, starts, ends) == {"q": span_text(evals[1], LONG, c, c)}


def test_decode_several_examples_and_wrong_inputs(tok):
    examples = [example("x", "Who?", "Ada Lovelace wrote notes.", "Ada Lovelace"),
                example("y", "What?", "Notes on the engine.", "engine")]
    train = prepare_train_features(tok, examples)
    evals = prepare_eval_features(tok, examples)
    starts, ends = logits_for(evals, {i: (f["start_positions"], f["end_positions"], 3.0)
                                      for i, f in enumerate(train)})
    assert decode(examples, evals, starts, ends) == {"x": "Ada Lovelace", "y": "engine"}
    with pytest.raises(BertctlError, match="1 rows of start_logits for 2 features"):
        decode(examples, evals, starts[:1], ends)
    with pytest.raises(BertctlError, match="prepare_eval_features"):
        decode(examples, train, starts, ends)
    with pytest.raises(BertctlError, match="question y"):
        decode(examples[:1], evals, starts, ends)
    with pytest.raises(BertctlError, match="logits"):
        decode(examples, evals, [s[:3] for s in starts], ends)


# ------------------------------------------------------------------ bad input


def test_answer_outside_its_context_is_an_error(tok):
    good = example("ok", "Who?", "Ada Lovelace wrote notes.", "Ada Lovelace")
    bad = example("q-17", "Who?", "Ada Lovelace wrote notes.", "Lovelace", start=0)
    check_answers([good], "dev.json")  # no error
    with pytest.raises(BertctlError, match=r"dev\.json: question q-17: answer 'Lovelace' is not at answer_start 0") as e:
        check_answers([good, bad], "dev.json")
    assert "character 4" in str(e.value) and e.value.fix
    missing = example("q-18", "Who?", "Ada Lovelace wrote notes.", "Babbage", start=3)
    with pytest.raises(BertctlError, match="q-18"):
        check_answers([missing], "train.json")
    with pytest.raises(BertctlError, match="q-17"):  # training never sees a misplaced span
        prepare_train_features(tok, [bad])
    lengths = {**good, "answers": {"text": ["Ada"], "answer_start": [0, 4]}}
    with pytest.raises(BertctlError, match="answer_start"):
        check_answers([lengths], "dev.json")


def test_slow_tokenizer_and_impossible_windows_are_errors(tok):
    class SlowTokenizer:
        is_fast = False

    ex = example("q", "Who?", "Ada Lovelace wrote notes.", "Ada Lovelace")
    with pytest.raises(BertctlError, match="fast tokenizer"):
        prepare_train_features(SlowTokenizer(), [ex])
    with pytest.raises(BertctlError, match="doc_stride"):
        prepare_eval_features(tok, [ex], max_length=64, doc_stride=64)
    with pytest.raises(BertctlError, match="longer than the model accepts"):
        prepare_eval_features(tok, [ex], max_length=4096)
    # a question that leaves no more room than the overlap: a clear error, not a Rust panic
    long_q = example("long-q", " ".join(["why"] * 50), "Ada Lovelace wrote notes.", "Ada Lovelace")
    with pytest.raises(BertctlError, match="question long-q is 50 tokens"):
        prepare_train_features(tok, [long_q], max_length=64, doc_stride=16)
    twice = [ex, dict(ex)]
    with pytest.raises(BertctlError, match="appears twice"):
        prepare_eval_features(tok, twice)


# ------------------------------------------------------------------ batching


def test_collate_pads_to_the_longest_and_feeds_the_qa_head(tok):
    from transformers import BertConfig, BertForQuestionAnswering

    examples = [example("x", "Who?", "Ada Lovelace wrote notes on the analytical engine.", "Ada Lovelace"),
                example("y", "Where was the festival held?", "It was in Montevideo.", "Montevideo"),
                example("z", "Why?", "No reason is given.")]
    train = prepare_train_features(tok, examples)
    batch = collate_qa(train, pad_token_id=tok.pad_token_id)
    longest = max(len(f["input_ids"]) for f in train)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert batch["input_ids"].shape == (3, longest) and batch["input_ids"].dtype == torch.long
    assert batch["start_positions"].tolist() == [f["start_positions"] for f in train]
    for i, f in enumerate(train):
        n = len(f["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == f["input_ids"]
        assert batch["attention_mask"][i].sum().item() == n
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all()
    # eval features collate too, without their bookkeeping keys
    assert set(collate_qa(prepare_eval_features(tok, examples))) == {"input_ids", "attention_mask", "token_type_ids"}

    # the summed loss is the HF head's mean loss times the batch size
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    model = BertForQuestionAnswering(cfg).eval()
    with torch.no_grad():
        out = model(**batch)
    assert out.start_logits.shape == (3, longest)
    summed = span_loss_sum(out.start_logits, out.end_logits, batch["start_positions"], batch["end_positions"])
    assert summed.item() == pytest.approx(3 * out.loss.item(), rel=1e-5)
    with pytest.raises(BertctlError):
        collate_qa([])


# ------------------------------------------------------------------ real data


def test_squad2_dev_labels_decode_to_gold_answers(tok, shared_data):
    """End-to-end offsets check on real SQuAD 2.0: every labelled window's span decodes to
    the first gold answer, and oracle logits built from the labels decode to 100 EM."""
    path = shared_data / "squad" / "squad2-dev-normans.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    from bertctl.data.readers import read_squad
    from bertctl.metrics import squad

    examples = read_squad(path)
    check_answers(examples, str(path))
    # small windows so that many contexts are split (and stride overlaps get exercised)
    train = prepare_train_features(tok, examples, max_length=96, doc_stride=32)
    evals = prepare_eval_features(tok, examples, max_length=96, doc_stride=32)
    assert len(train) == len(evals) > 2 * len(examples)
    by_id = {ex["id"]: ex for ex in examples}
    answered = set()
    for f, ev in zip(train, evals):
        ex = by_id[ev["example_id"]]
        assert f["input_ids"] == ev["input_ids"]
        if f["start_positions"] == 0:
            continue
        gold = ex["answers"]["text"][0]
        assert span_text(ev, ex["context"], f["start_positions"], f["end_positions"]) == gold.strip()
        answered.add(ex["id"])
    answerable = {ex["id"] for ex in examples if ex["answers"]["text"]}
    assert answered == answerable  # every answer fits some 96-token window here

    starts, ends = logits_for(evals, {i: (f["start_positions"], f["end_positions"], 10.0)
                                      for i, f in enumerate(train)})
    predictions = decode(examples, evals, starts, ends)
    scores = squad(predictions, examples)
    assert scores["exact_match"] == 100.0 and scores["no_answer_total"] > 50


# ------------------------------------------------------------------ issue 20


def test_the_one_null_answer_rule_and_its_record_fields(tok):
    """best_answers is the only "no answer" decision: training, --eval-only and predict
    (QaTask.fields) all read its result."""
    from bertctl.finetune.qa_task import QaTask

    from .helpers import recipe

    context = "alpha beta gamma"
    ex = example("q", "Which?", context)
    [ev] = prepare_eval_features(tok, [ex])
    c = first_context_token(ev)
    start, end = np.zeros(len(ev["input_ids"])), np.zeros(len(ev["input_ids"]))
    start[0], end[0] = 3.0, 3.0  # null score 6
    start[c + 1], end[c + 1] = 2.0, 2.0  # "beta": 4
    null = best_answers([ex], [ev], [start], [end], version_2=True)["q"]
    assert null["text"] == "" and null["start"] is None and null["score"] == null["null_score"] == 6.0
    assert null["null_odds"] == pytest.approx(2.0)
    # a threshold above the gap answers; SQuAD 1.1 decoding always answers
    assert best_answers([ex], [ev], [start], [end], version_2=True, null_threshold=2.5)["q"]["text"] == "beta"
    assert best_answers([ex], [ev], [start], [end], version_2=False)["q"]["text"] == "beta"
    task = QaTask(recipe("minilm", "qa", qa={"version_2": True}), None)
    assert task.fields(ex, null) == {"answer": "", "start": None, "end": None, "score": 6.0, "null_score": 6.0,
                                     "null_odds": 2.0}
    task = QaTask(recipe("minilm", "qa", qa={"version_2": False}), None)
    assert set(task.fields(ex, null)) == {"answer", "start", "end", "score"}


def test_long_questions_are_cut_to_max_query_length_and_counted(tok):
    """BERT's run_squad keeps 64 question tokens: a 137-token question no longer refuses
    an evaluation at max_length 128 (it did: only the context's room was checked)."""
    from bertctl.finetune.qa_spans import MAX_QUERY_LENGTH

    long_q = example("long", " ".join(["why"] * 137), "Ada Lovelace wrote notes.", "Ada Lovelace")
    short = example("short", "Who wrote?", "Ada Lovelace wrote notes.", "Ada Lovelace")
    counts = {}
    feats = prepare_eval_features(tok, [long_q, short], max_length=128, doc_stride=32, counts=counts)
    assert counts == {"questions_cut": 1} and {f["example_id"] for f in feats} == {"long", "short"}
    first = next(f for f in feats if f["example_id"] == "long")
    assert first["input_ids"].count(tok.convert_tokens_to_ids("why")) == MAX_QUERY_LENGTH == 64
    assert prepare_train_features(tok, [long_q], max_length=128, doc_stride=32)  # training too


def test_qa_rows_without_an_id_are_numbered(tmp_path):
    import json

    from bertctl.finetune.config import DataSettings
    from bertctl.finetune.data import load_splits

    rows = [{"question": "Who?", "context": "Ada wrote.", "answers": {"text": ["Ada"], "answer_start": [0]}, "id": None},
            {"question": "What?", "context": "Ada wrote.", "answers": {"text": [], "answer_start": []}, "id": None}]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_splits(DataSettings(train=str(path), dev=str(path)), "qa")
    assert [r["id"] for r in splits.dev] == ["0", "1"]  # was: "question id None appears twice"
    for r in rows:
        del r["id"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["id"] for r in load_splits(DataSettings(train=str(path), dev=str(path)), "qa").dev] == ["0", "1"]
