"""Pretraining objectives on concrete inputs: the MLM 80/10/10 split, whole-word and span
masking, NSP/SOP pairs, causal labels, packing and the collator's determinism.
Pure numpy (plus torch tensors in the collator): no model, no tokenizer training."""

from __future__ import annotations

import numpy as np
import pytest

from bertctl.pretraining.config import ObjectiveSection
from bertctl.pretraining.corpus import CausalPacker, ContiguousPacker, Example
from bertctl.pretraining.masking import MaskSpec, choose_positions, mask_sequence, word_groups
from bertctl.pretraining.pairs import _trim_outer, document_pairs, stream_pairs
from bertctl.pretraining.run import EVAL_EPOCH, Collator

PAD, UNK, CLS, SEP, MASK = range(5)
VOCAB = 1000


def make_spec(mode="token", continuation_ids=(), **kw) -> MaskSpec:
    special = np.zeros(VOCAB, dtype=bool)
    special[:5] = True
    continuation = np.zeros(VOCAB, dtype=bool)
    continuation[list(continuation_ids)] = True
    return MaskSpec(mask_id=MASK, special=special, continuation=continuation, mode=mode, **kw)


def random_sequence(rng, n=126) -> np.ndarray:
    return np.concatenate([[CLS], rng.integers(5, VOCAB, size=n), [SEP]])


# ----------------------------------------------------------------------------- MLM


def test_mask_rate_and_80_10_10_split_over_many_samples():
    spec = make_spec()
    rng = np.random.default_rng(0)
    chosen = masked = randomised = kept = 0
    for _ in range(2000):
        ids = random_sequence(rng)
        inputs, positions = mask_sequence(ids, spec, rng)
        assert len(positions) == round(0.15 * 126)  # exactly 15 % of the 126 maskable tokens
        assert not np.isin(positions, [0, len(ids) - 1]).any()  # [CLS]/[SEP] are never chosen
        unchosen = np.setdiff1d(np.arange(len(ids)), positions)
        assert (inputs[unchosen] == ids[unchosen]).all()  # nothing else is touched
        chosen += len(positions)
        masked += int((inputs[positions] == MASK).sum())
        randomised += int(((inputs[positions] != MASK) & (inputs[positions] != ids[positions])).sum())
        kept += int((inputs[positions] == ids[positions]).sum())
    # 38,000 draws: a binomial standard deviation of ~0.2 percentage points
    assert masked / chosen == pytest.approx(0.8, abs=0.01)
    assert randomised / chosen == pytest.approx(0.1, abs=0.01)
    assert kept / chosen == pytest.approx(0.1, abs=0.01)


def test_split_and_rate_are_configurable():
    spec = make_spec(rate=0.3, mask_token=0.5, random_token=0.5)
    rng = np.random.default_rng(1)
    chosen = masked = kept = 0
    for _ in range(500):
        ids = random_sequence(rng, 100)
        inputs, positions = mask_sequence(ids, spec, rng)
        assert len(positions) == 30
        chosen += len(positions)
        masked += int((inputs[positions] == MASK).sum())
        kept += int((inputs[positions] == ids[positions]).sum())
    assert masked / chosen == pytest.approx(0.5, abs=0.02)
    assert kept / chosen < 0.01  # no "keep" share left: only chance collisions with the random token


def test_random_tokens_are_never_special():
    spec = make_spec(mask_token=0.0, random_token=1.0)
    rng = np.random.default_rng(2)
    for _ in range(200):
        inputs, positions = mask_sequence(random_sequence(rng), spec, rng)
        assert (inputs[positions] >= 5).all()


def _word_sequence(rng, continuation_ids):
    """[CLS] w w w [SEP] where words are 1-4 pieces: a start piece then ## pieces."""
    pieces = [CLS]
    starts = np.arange(5, 500)
    while len(pieces) < 120:
        pieces.append(int(rng.choice(starts)))
        pieces.extend(int(rng.choice(continuation_ids)) for _ in range(int(rng.integers(0, 4))))
    return np.array(pieces + [SEP])


def test_whole_word_masking_never_splits_a_word():
    continuation_ids = np.arange(500, VOCAB)  # "##..." pieces
    spec = make_spec("whole_word", continuation_ids)
    rng = np.random.default_rng(3)
    multi_piece_masked = 0
    for _ in range(300):
        ids = _word_sequence(rng, continuation_ids)
        positions = set(choose_positions(ids, spec, rng).tolist())
        budget = round(0.15 * (len(ids) - 2))
        assert 0 < len(positions) <= budget
        for word in word_groups(ids, spec):
            hit = [p in positions for p in word]
            assert all(hit) or not any(hit), f"word {ids[word]} split: {hit}"
            multi_piece_masked += all(hit) and len(word) > 1
    assert multi_piece_masked > 100  # the check above is not vacuous


def test_token_masking_does_split_words():  # the contrast that makes the test above meaningful
    continuation_ids = np.arange(500, VOCAB)
    spec = make_spec("token", continuation_ids)
    rng = np.random.default_rng(4)
    split = 0
    for _ in range(100):
        ids = _word_sequence(rng, continuation_ids)
        positions = set(choose_positions(ids, spec, rng).tolist())
        split += sum(0 < sum(p in positions for p in w) < len(w) for w in word_groups(ids, spec))
    assert split > 50


def test_span_masking_masks_runs_of_whole_words():
    spec = make_spec("span", rate=0.15, span_p=0.2, span_max=10)
    token_spec = make_spec("token")
    rng = np.random.default_rng(5)

    def mean_run(spec):
        runs = []
        for _ in range(300):
            ids = random_sequence(rng, 200)  # every token is a one-piece word
            positions = choose_positions(ids, spec, rng)
            assert 0.13 * 200 <= len(positions) <= 0.15 * 200 + 1e-9
            breaks = np.flatnonzero(np.diff(positions) != 1)
            runs.extend(np.diff(np.concatenate([[-1], breaks, [len(positions) - 1]])))
        return np.mean(runs)

    assert mean_run(spec) > 3.0  # SpanBERT's clipped Geometric(0.2) has mean 3.8 (adjacent spans merge)
    assert mean_run(token_spec) < 1.3


def test_span_masking_keeps_words_whole():
    continuation_ids = np.arange(500, VOCAB)
    spec = make_spec("span", continuation_ids)
    rng = np.random.default_rng(6)
    for _ in range(200):
        ids = _word_sequence(rng, continuation_ids)
        positions = set(choose_positions(ids, spec, rng).tolist())
        for word in word_groups(ids, spec):
            hit = [p in positions for p in word]
            assert all(hit) or not any(hit)


# -------------------------------------------------------------------- the collator


def _examples(n=8, length=40, seed=0):
    rng = np.random.default_rng(seed)
    return [Example(i, random_sequence(rng, length - 2), 20, i % 2) for i in range(n)]


def test_masks_depend_on_seed_epoch_and_index_only():
    objective = ObjectiveSection(pairs="nsp")
    collate = Collator(objective, make_spec(), PAD, seed=7)
    ex = _examples()
    a = collate([ex[3], ex[5]], epoch=1)
    b = collate([ex[5], ex[0], ex[3]], epoch=1)  # other batch-mates, other order
    row_a, row_b = a["input_ids"][1], b["input_ids"][0]  # example 5 in both
    assert (row_a == row_b).all()
    assert not (collate([ex[5]], epoch=2)["input_ids"][0] == row_a).all()  # a new epoch re-masks
    assert (collate([ex[5]], EVAL_EPOCH)["input_ids"][0] == collate([ex[5]], EVAL_EPOCH)["input_ids"][0]).all()
    # positions index the flattened [B, L] batch and their targets are the original tokens
    flat = np.concatenate([e.ids for e in (ex[3], ex[5])])
    assert (a["mlm_targets"].numpy() == flat[a["mlm_positions"].numpy()]).all()
    assert a["token_type_ids"][0, :20].sum() == 0 and (a["token_type_ids"][0, 20:] == 1).all()
    assert a["pair_labels"].tolist() == [1, 1]


# -------------------------------------------------------------------------- pairs


def _docs(n_docs=60, seed=0):
    """Document d's sentences hold tokens d*1000 + running number: where a token came from
    (which document, which position) can be read off it."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n_docs):
        counter, doc = d * 1000, []
        for _ in range(int(rng.integers(1, 9))):
            length = int(rng.integers(3, 15))
            doc.append(list(range(counter, counter + length)))
            counter += length
        docs.append(doc)
    return docs


def _contiguous(tokens):
    return all(b == a + 1 for a, b in zip(tokens, tokens[1:]))


def test_sop_negatives_are_exactly_the_swapped_pair():
    docs = _docs()
    pairs = list(stream_pairs(docs, "sop", max_tokens=1000, seed=0, short_seq_prob=0.0, block=16))
    labels = [p.label for p in pairs]
    assert 0.35 < np.mean(labels) < 0.65
    for p in pairs:
        assert {t // 1000 for t in p.a + p.b} == {p.doc}  # SOP never leaves the document
        first, second = (p.a, p.b) if p.label == 0 else (p.b, p.a)
        # in document order, `first` then `second` is one unbroken run of the document
        assert _contiguous(first + second), p
        assert first[-1] + 1 == second[0]


def test_nsp_negatives_come_from_another_document():
    docs = _docs()
    pairs = list(stream_pairs(docs, "nsp", max_tokens=40, seed=1, short_seq_prob=0.1, block=16))
    negatives = [p for p in pairs if p.label == 1]
    assert 0.4 < len(negatives) / len(pairs) < 0.6
    for p in pairs:
        assert {t // 1000 for t in p.a} == {p.doc}
        assert len(p.a) + len(p.b) <= 40
        b_docs = {t // 1000 for t in p.b}
        if p.label == 1:
            assert len(b_docs) == 1 and p.doc not in b_docs
        else:
            assert b_docs == {p.doc} and p.a[-1] + 1 == p.b[0]  # the true continuation


@pytest.mark.parametrize("kind", ["nsp", "sop"])
def test_pair_labels_are_balanced_even_for_short_documents(kind):
    # 1-8 sentence documents: one-sentence chunks must not all become NSP negatives
    for max_tokens in (20, 40, 1000):
        pairs = list(stream_pairs(_docs(600), kind, max_tokens=max_tokens, seed=1, block=16))
        assert np.mean([p.label for p in pairs]) == pytest.approx(0.5, abs=0.04)


def test_nsp_takes_random_segments_from_the_previous_block_for_a_lone_document():
    pairs = list(stream_pairs(_docs(5), "nsp", max_tokens=1000, seed=2, short_seq_prob=0.0, block=4))
    last = [p for p in pairs if p.doc == 4 and p.label == 1]
    assert all(4 not in {t // 1000 for t in p.b} for p in last)


def test_long_pairs_are_trimmed_at_their_outer_ends():
    a, b = list(range(0, 50)), list(range(50, 60))
    ta, tb = _trim_outer(a, b, 30)
    assert ta == list(range(30, 50)) and tb == b  # A lost its front, the A|B boundary stays
    ta, tb = _trim_outer(list(range(40)), list(range(40, 80)), 31)
    assert len(ta) + len(tb) == 31 and ta[-1] == 39 and tb[0] == 40


def test_document_pairs_respect_max_tokens_and_are_seeded():
    doc = _docs(1)[0] * 3
    p1 = document_pairs(doc, 0, "sop", 20, np.random.default_rng(0), None, 0.5)
    p2 = document_pairs(doc, 0, "sop", 20, np.random.default_rng(0), None, 0.5)
    assert [(p.a, p.b, p.label) for p in p1] == [(p.a, p.b, p.label) for p in p2]
    assert all(len(p.a) + len(p.b) <= 20 for p in p1)


# ----------------------------------------------------------------- causal / packing


def test_causal_labels_are_the_inputs_shifted_by_one():
    packer = CausalPacker(8, CLS, SEP)
    docs = [[[10, 11, 12], [13, 14]], [[20, 21, 22, 23, 24, 25, 26, 27, 28]], [[30]]]
    windows = [w for d in docs for w, _, _ in packer.add(d)] + [w for w, _, _ in packer.finish()]
    stream = [CLS, 10, 11, 12, 13, 14, SEP, CLS, 20, 21, 22, 23, 24, 25, 26, 27, 28, SEP, CLS, 30, SEP]
    # consecutive windows overlap by one token, so every next-token target is used once
    assert [t for w in windows for t in w[:-1]] + [windows[-1][-1]] == stream
    examples = [Example(i, np.array(w), len(w), -1) for i, w in enumerate(windows)]
    batch = Collator(ObjectiveSection(kind="causal", pairs="none"), None, PAD, 0)(examples, 0)
    inputs, labels = batch["input_ids"].numpy(), batch["labels"].numpy()
    for row, w in enumerate(windows):
        n = len(w) - 1
        assert (labels[row, :n - 1] == inputs[row, 1:n]).all()  # label t == input t+1
        assert labels[row, n - 1] == w[-1]
        assert (labels[row, n:] == -100).all() and (batch["attention_mask"][row, n:] == 0).all()


def test_contiguous_packing_wastes_no_padding():
    packer = ContiguousPacker(16, CLS, SEP)
    docs = _docs(30)
    seqs = [s for d in docs for s, _, _ in packer.add(d)]
    tail = packer.finish()
    assert all(len(s) == 16 and s[0] == CLS and s[-1] == SEP for s in seqs)
    assert len(tail) <= 1 and all(len(s) <= 16 for s, _, _ in tail)
    body = [t for s in seqs + [t[0] for t in tail] for t in s[1:-1]]
    expected = [t for d in docs for t in [*(x for s in d for x in s), SEP]]
    assert body == expected[:len(body)] and len(expected) - len(body) <= 1
