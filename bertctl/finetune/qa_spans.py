"""Extractive question answering (SQuAD v1.1 / v2.0) for `bertctl finetune --task qa`.

The model is the standard `AutoModelForQuestionAnswering` head: one linear layer maps each
output vector to a start score and an end score. Everything else is bookkeeping, and it
lives here:

    examples --prepare_*_features--> windows --model--> start/end logits --decode--> answer text

- A document longer than `max_length` is cut into overlapping windows: the question, then
  a slice of the context; consecutive slices share `doc_stride` tokens (the Hugging Face
  meaning of "stride": the overlap, not the step), so an answer cut by one window
  boundary is whole in the next window.
- Training labels point at the answer's first and last token in the window, or at token
  0 ([CLS]) when the window does not hold the whole answer or the question has none.
- Decoding scores every valid span (start <= end, at most `max_answer_length` tokens,
  both ends inside the context) in every window of an example, maps the best back to
  character offsets of the original context, and for SQuAD 2.0 compares it with the
  "no answer" score start[CLS] + end[CLS] (the smallest over the windows, as in BERT's
  run_squad.py).

Only fast (Rust) tokenizers give the character offsets this needs. torch/numpy are
imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

from collections import defaultdict

from bertctl.errors import BertctlError

CLS_INDEX = 0  # encoders put their [CLS]-like token first; "no answer" points there
MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
_CHUNK = 1000  # examples tokenized per call: bounded memory on SQuAD-sized sets
MAX_QUERY_LENGTH = 64  # question tokens kept, as BERT's run_squad (max_query_length); longer ones are cut


# ----------------------------------------------------------------------- validation


def _example_id(example, i: int) -> str:
    return str(example.get("id", f"#{i + 1}")) if isinstance(example, dict) else f"#{i + 1}"


def _check_examples(examples, source: str) -> None:
    """Every example is a dict with string question and context, and ids are unique
    (decode keys its answers by id, so a repeated id would silently lose answers)."""
    seen = set()
    for i, ex in enumerate(examples):
        qid = _example_id(ex, i)
        if not isinstance(ex, dict) or "id" not in ex:
            raise BertctlError(f"{source}: example {qid} has no id", fix='give every example an "id"')
        for key in ("question", "context"):
            if not isinstance(ex.get(key), str):
                raise BertctlError(f"{source}: question {qid} has no {key} text",
                                   fix=f'give every example a "{key}" string')
        if ex["id"] in seen:
            raise BertctlError(f"{source}: question id {qid} appears twice", fix="give every question a unique id")
        seen.add(ex["id"])


def _answer_lists(example, qid: str, source: str) -> tuple[list, list]:
    answers = example.get("answers")
    if answers is None:
        return [], []
    if not isinstance(answers, dict) or "text" not in answers or "answer_start" not in answers:
        raise BertctlError(f"{source}: question {qid}: answers must be {{'text': [...], 'answer_start': [...]}}",
                           fix="read the file with bertctl.data.readers.read_squad, or use that layout")
    texts, starts = list(answers["text"]), list(answers["answer_start"])
    if len(texts) != len(starts):
        raise BertctlError(f"{source}: question {qid} has {len(texts)} answer texts but {len(starts)} answer_start",
                           fix="give every answer text exactly one answer_start")
    return texts, starts


def check_answers(examples, source: str, dropped: list | None = None) -> list:
    """Every answer text must equal context[start:start + len(text)]; returns the examples.

    A misplaced answer_start (often a byte offset instead of a character offset, or an
    offset into a differently cleaned context) would silently train on the wrong span.
    All such questions are reported at once; with a `dropped` list they are left out
    instead and their ids appended to it (data.on_bad_rows=skip).
    """
    from bertctl.data.readers import first_misplaced, settle_bad_answers

    kept, bad = [], []
    for i, ex in enumerate(examples):
        qid = _example_id(ex, i)
        context = ex.get("context", "") if isinstance(ex, dict) else ""
        texts, starts = _answer_lists(ex, qid, source) if isinstance(ex, dict) else ([], [])
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise BertctlError(f"{source}: question {qid} has an empty answer text",
                                   fix="remove it (an unanswerable question has empty answer lists)")
        why = first_misplaced(context if isinstance(context, str) else "", texts, starts)
        if why is None:
            kept.append(ex)
        else:
            bad.append((qid, why))
    settle_bad_answers(source, bad, dropped)
    return kept


def _check_tokenizer(tokenizer, max_length: int, doc_stride: int) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise BertctlError(f"question answering needs a fast tokenizer with character offsets, "
                           f"got {type(tokenizer).__name__}",
                           fix="use a model that ships a tokenizer.json (a fast, Rust-based tokenizer)")
    if not isinstance(max_length, int) or not isinstance(doc_stride, int) or doc_stride < 0 \
            or max_length <= tokenizer.num_special_tokens_to_add(pair=True) + 1 or doc_stride >= max_length:
        # advice the model can follow: max_length is already capped at its positions (a small one has 64)
        room = isinstance(max_length, int) and max_length > tokenizer.num_special_tokens_to_add(pair=True) + 8
        raise BertctlError(f"max_length={max_length} and doc_stride={doc_stride} cannot make windows",
                           fix=f"use 0 <= qa.doc_stride < {max_length}, e.g. qa.doc_stride={max_length // 4}" if room else
                           f"use a larger model.max_length (e.g. {min(384, _limit(tokenizer) or 384)}) and "
                           "0 <= qa.doc_stride < model.max_length")
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 1_000_000 and max_length > limit:
        raise BertctlError(f"max_length={max_length} is longer than the model accepts ({limit} tokens)",
                           fix=f"set max_length to at most {limit}")


def _check_question_lengths(tokenizer, examples, questions, max_length: int, doc_stride: int) -> None:
    """Each window holds the whole question; the context budget left must exceed the
    overlap, otherwise the Rust tokenizer panics (an uncatchable-looking crash) or errors."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    for i, n in enumerate(lengths):
        room = max_length - specials - n  # context tokens per window
        if room <= doc_stride:
            raise BertctlError(
                f"question {_example_id(examples[i], i)} is {n} tokens long: with max_length={max_length} "
                f"and doc_stride={doc_stride} only {max(room, 0)} context tokens fit a window, "
                f"not more than the overlap",
                fix=("raise max_length, lower doc_stride, or shorten that question"
                     if max_length < (_limit(tokenizer) or max_length + 1) else
                     f"lower doc_stride or shorten that question (max_length is already the model's {max_length})"),
            )


def _limit(tokenizer) -> int | None:
    """The longest input the tokenizer's model takes, when it says (not its 'no limit' sentinel)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 1_000_000 else None


# ------------------------------------------------------------------------- windows


def cap_questions(tokenizer, questions: list[str], cap: int = MAX_QUERY_LENGTH) -> tuple[list[str], int]:
    """Questions cut to `cap` tokens (BERT's run_squad: max_query_length 64); returns them
    and how many were cut. A shorter question that still leaves a window no room is
    refused by _check_question_lengths."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out, cut = [], 0
    for q, ids, offsets in zip(questions, enc["input_ids"], enc["offset_mapping"]):
        if len(ids) > cap:
            q, cut = q[:offsets[cap - 1][1]], cut + 1
        out.append(q)
    return out, cut


def _windows(tokenizer, examples, max_length: int, doc_stride: int, counts: dict | None = None):
    """Tokenize (question, context) pairs into overlapping windows.

    Yields (example index, encoding row dict, sequence ids) per window, in order.
    `counts["questions_cut"]` adds the questions cut to fit (see cap_questions).
    """
    _check_tokenizer(tokenizer, max_length, doc_stride)
    for lo in range(0, len(examples), _CHUNK):
        chunk = examples[lo:lo + _CHUNK]
        # Leading spaces in questions only waste tokens (some SQuAD questions have many).
        questions, cut = cap_questions(tokenizer, [ex["question"].lstrip() for ex in chunk])
        if counts is not None:
            counts["questions_cut"] = counts.get("questions_cut", 0) + cut
        _check_question_lengths(tokenizer, chunk, questions, max_length, doc_stride)
        enc = tokenizer(
            questions,
            [ex["context"] for ex in chunk],
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        for w, local in enumerate(enc["overflow_to_sample_mapping"]):
            seq_ids = enc.sequence_ids(w)
            if seq_ids[CLS_INDEX] is not None:
                raise BertctlError(f"the tokenizer {type(tokenizer).__name__} does not start a question/context "
                                   "pair with a special token like [CLS]",
                                   fix="use an encoder tokenizer (BERT, RoBERTa, ELECTRA...): unanswerable "
                                   "questions point at that first token")
            row = {k: enc[k][w] for k in ("input_ids", "attention_mask", "token_type_ids", "offset_mapping")
                   if k in enc}
            yield lo + local, row, seq_ids


def _features(row: dict) -> dict:
    return {k: list(row[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in row}


def _answer_chars(example, qid: str, source: str) -> tuple[int, int] | None:
    """Character span [start, end) of the first answer, surrounding whitespace trimmed
    (a token never starts on a space); None for an unanswerable question."""
    texts, starts = _answer_lists(example, qid, source)
    if not texts:
        return None
    text, start = texts[0], starts[0]
    lead = len(text) - len(text.lstrip())
    return start + lead, start + len(text.rstrip())


def _label(span: tuple[int, int] | None, offsets, seq_ids) -> tuple[int, int]:
    """Token indices (first, last) of the answer in this window, or (CLS, CLS) when the
    window does not hold the whole answer."""
    context = [j for j, s in enumerate(seq_ids) if s == 1]
    if span is None or not context:
        return CLS_INDEX, CLS_INDEX
    a_start, a_end = span
    if offsets[context[0]][0] > a_start or offsets[context[-1]][1] < a_end:
        return CLS_INDEX, CLS_INDEX  # (part of) the answer lies in another window
    inside = [j for j in context if offsets[j][0] < a_end and offsets[j][1] > a_start]
    if not inside:  # the answer is only characters the tokenizer drops
        return CLS_INDEX, CLS_INDEX
    return inside[0], inside[-1]


def prepare_train_features(tokenizer, examples: list[dict], max_length: int = 384,
                           doc_stride: int = 128, counts: dict | None = None) -> list[dict]:
    """One training feature per window.

    examples: {"id", "question", "context", "answers": {"text": [...], "answer_start": [...]}}
    (empty answer lists = unanswerable). Each feature holds input_ids, attention_mask,
    token_type_ids (when the tokenizer makes them), and start_positions/end_positions:
    the first and last token of the first answer when this window holds all of it, else
    0 ([CLS]). Features are not padded; `collate_qa` pads each batch.
    """
    _check_examples(examples, "training examples")
    check_answers(examples, "training examples")
    spans = [_answer_chars(ex, str(ex["id"]), "training examples") for ex in examples]
    out = []
    for i, row, seq_ids in _windows(tokenizer, examples, max_length, doc_stride, counts):
        start, end = _label(spans[i], row["offset_mapping"], seq_ids)
        out.append({**_features(row), "start_positions": start, "end_positions": end})
    return out


def prepare_eval_features(tokenizer, examples: list[dict], max_length: int = 384,
                          doc_stride: int = 128, counts: dict | None = None) -> list[dict]:
    """The same windows as `prepare_train_features`, without labels, plus "example_id"
    and "offset_mapping": (start, end) character offsets into the context for context
    tokens, None for question and special tokens (so decode never answers with them)."""
    _check_examples(examples, "evaluation examples")
    out = []
    for i, row, seq_ids in _windows(tokenizer, examples, max_length, doc_stride, counts):
        offsets = [tuple(o) if s == 1 else None for o, s in zip(row["offset_mapping"], seq_ids)]
        out.append({**_features(row), "example_id": examples[i]["id"], "offset_mapping": offsets})
    return out


# ------------------------------------------------------------------------ batching


def collate_qa(features: list[dict], pad_token_id: int = 0) -> dict:
    """Pad a batch of features to its longest window (on the right, so token positions
    and labels stay valid) -> dict of int64 tensors with the keys the QA model takes.
    Bookkeeping keys (example_id, offset_mapping) are left out."""
    import torch

    if not features:
        raise BertctlError("cannot collate an empty batch", fix="pass at least one feature")
    longest = max(len(f["input_ids"]) for f in features)
    pad_value = {"input_ids": pad_token_id, "attention_mask": 0, "token_type_ids": 0}
    batch = {}
    for key in MODEL_KEYS:
        if key not in features[0]:
            continue
        if key in pad_value:  # [B, T]
            batch[key] = torch.tensor([list(f[key]) + [pad_value[key]] * (longest - len(f[key])) for f in features],
                                      dtype=torch.long)
        else:  # [B]
            batch[key] = torch.tensor([int(f[key]) for f in features], dtype=torch.long)
    return batch


def span_loss_sum(start_logits, end_logits, start_positions, end_positions):
    """Summed span loss over the batch: per feature (CE(start) + CE(end)) / 2, which is
    what AutoModelForQuestionAnswering averages. Returned as a sum so the training loop
    can divide by the global feature count (see bertctl.train). Positions outside the
    sequence are ignored, as in the Hugging Face head."""
    import torch.nn.functional as F

    length = start_logits.size(1)  # [B, T] logits
    ignore = length
    start_positions = start_positions.clamp(0, ignore)
    end_positions = end_positions.clamp(0, ignore)
    start = F.cross_entropy(start_logits.float(), start_positions, ignore_index=ignore, reduction="sum")
    end = F.cross_entropy(end_logits.float(), end_positions, ignore_index=ignore, reduction="sum")
    return (start + end) / 2


# ------------------------------------------------------------------------ decoding


def _logit_rows(logits, n_features: int, name: str) -> list:
    """One 1-D float array per feature, from a [N, T] array/tensor or a list of rows
    (rows may be longer than their feature: padding is ignored)."""
    import numpy as np

    if hasattr(logits, "detach"):  # torch tensor (possibly bf16, possibly on GPU)
        logits = logits.detach().float().cpu().numpy()
    rows = [np.nan_to_num(np.asarray(r.detach().float().cpu() if hasattr(r, "detach") else r, dtype=np.float64),
                          nan=-np.inf) for r in logits]
    if len(rows) != n_features:
        raise BertctlError(f"got {len(rows)} rows of {name} for {n_features} features",
                           fix="pass one row of logits per feature, in the order prepare_eval_features made them")
    return rows


def _top_spans(start, end, in_context, max_answer_length: int, n_best: int):
    """The n_best highest-scoring valid spans of one window, as (score, s, e), best first.

    Scores every span exactly (not only pairs of the top starts and top ends): a band of
    width max_answer_length over the [start, end] score matrix, so s <= e and
    e - s + 1 <= max_answer_length hold by construction.
    """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    length = len(start)
    width = min(max_answer_length, length)
    # band[s, k] is the span (s, s + k); positions past the end are padding (invalid)
    end_band = sliding_window_view(np.concatenate([end, np.full(width - 1, -np.inf)]), width)      # [T, K]
    ctx_band = sliding_window_view(np.concatenate([in_context, np.zeros(width - 1, bool)]), width)  # [T, K]
    valid = np.flatnonzero(in_context[:, None] & ctx_band)
    if valid.size == 0:
        return []
    scores = (start[:, None] + end_band).ravel()[valid]
    n = min(n_best, valid.size)
    top = np.argpartition(-scores, n - 1)[:n]
    top = top[np.lexsort((valid[top], -scores[top]))]  # best first; ties -> earliest span
    return [(float(scores[t]), int(valid[t] // width), int(valid[t] // width + valid[t] % width)) for t in top]


def decode_nbest(examples, features, start_logits, end_logits, max_answer_length: int = 30,
                 n_best: int = 20) -> dict[str, dict]:
    """Per example id: {"null_score": min over windows of start[CLS] + end[CLS] (None if
    the example has no window), "candidates": up to n_best distinct answers, best first,
    each {"text", "start", "end", "score"} with character offsets into the context}.
    A span seen in two overlapping windows keeps its higher score."""
    import numpy as np

    if max_answer_length < 1 or n_best < 1:
        raise BertctlError(f"max_answer_length={max_answer_length} and n_best={n_best} must be at least 1",
                           fix="use e.g. max_answer_length=30 n_best=20")
    starts = _logit_rows(start_logits, len(features), "start_logits")
    ends = _logit_rows(end_logits, len(features), "end_logits")
    windows = defaultdict(list)  # example id -> feature indices
    for f, feature in enumerate(features):
        if "example_id" not in feature or "offset_mapping" not in feature:
            raise BertctlError("decode needs evaluation features (with example_id and offset_mapping)",
                               fix="make them with prepare_eval_features, not prepare_train_features")
        windows[feature["example_id"]].append(f)
    ids = {ex["id"] for ex in examples}
    unknown = [k for k in windows if k not in ids]
    if unknown:
        raise BertctlError(f"features belong to question {unknown[0]}, which is not among the examples",
                           fix="decode with the same examples the features were made from")

    out = {}
    for ex in examples:
        best, null = {}, None  # (char start, char end) -> score
        for f in windows.get(ex["id"], []):
            offsets = features[f]["offset_mapping"]
            length = len(offsets)
            if len(starts[f]) < length or len(ends[f]) < length:
                raise BertctlError(f"feature {f} has {length} tokens but only {min(len(starts[f]), len(ends[f]))} "
                                   "logits", fix="pass the model's logits for every token of the window")
            start, end = starts[f][:length], ends[f][:length]
            window_null = float(start[CLS_INDEX] + end[CLS_INDEX])
            null = window_null if null is None else min(null, window_null)
            in_context = np.array([o is not None for o in offsets], dtype=bool)
            for score, s, e in _top_spans(start, end, in_context, max_answer_length, n_best):
                chars = (offsets[s][0], offsets[e][1])
                if score > best.get(chars, -np.inf):
                    best[chars] = score
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:n_best]
        out[ex["id"]] = {
            "null_score": null,
            "candidates": [{"text": ex["context"][a:b], "start": a, "end": b, "score": score}
                           for (a, b), score in ranked],
        }
    return out


def best_answers(examples, features, start_logits, end_logits, max_answer_length: int = 30, n_best: int = 20,
                 version_2: bool = True, null_threshold: float = 0.0) -> dict[str, dict]:
    """Per example id, the answer with its evidence: {"text", "start", "end" (character
    offsets into the context; None for no answer), "score" (start + end logit of the best
    span; the null score for no answer), "null_score", "null_odds" (null score - best span
    score: what SQuAD 2.0's official null_odds.json holds; None without a window)}.

    This is the one "no answer" rule of bertctl (training, --eval-only and predict).

    With version_2 (SQuAD 2.0), answer "" when the null score exceeds the best span's
    score + null_threshold; raising the threshold answers more often (tune it on dev).
    An example with no valid span at all (empty context) gets "" either way.
    """
    nbest = decode_nbest(examples, features, start_logits, end_logits, max_answer_length, n_best)
    out = {}
    for qid, r in nbest.items():
        top = r["candidates"][0] if r["candidates"] else None
        odds = None if top is None or r["null_score"] is None else r["null_score"] - top["score"]
        if top is None or (version_2 and r["null_score"] > top["score"] + null_threshold):
            out[qid] = {"text": "", "start": None, "end": None, "score": r["null_score"]}
        else:
            out[qid] = dict(top)
        out[qid].update(null_score=r["null_score"], null_odds=odds)
    return out


def official_files(rows: list[dict], answers: list[dict], version_2: bool) -> dict[str, dict]:
    """`answers`: best_answers' answers, one per row."""
    """The files the official SQuAD evaluation scripts read, unchanged:
    predictions.json = {question id: answer text}, and for SQuAD 2.0 null_odds.json =
    {question id: null score - best span score} (its --na-prob-file)."""
    files = {"predictions.json": {r["id"]: a["text"] for r, a in zip(rows, answers)}}
    if version_2:
        files["null_odds.json"] = {r["id"]: (a["null_odds"] if a["null_odds"] is not None else 0.0)
                                   for r, a in zip(rows, answers)}
    return files
