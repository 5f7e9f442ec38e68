"""Tests for the synthetic world: determinism, structure the lessons rely on, task labels."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bertctl.data.world import (
    DNA_MOTIF,
    SENSES,
    TOPIC_NAMES,
    World,
    dna_rule,
    gc_content,
    write_corpus,
    write_jsonl,
)
from bertctl.errors import BertctlError

UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"}
TASKS = ("sentiment", "nli", "qa", "similarity", "topic", "dna")


@pytest.fixture(scope="module")
def en():
    return World(seed=3)


@pytest.fixture(scope="module")
def xx():
    return World(seed=3, language="xx")


def test_every_method_is_deterministic_and_seed_dependent():
    a, b, c = World(7), World(7), World(8)
    assert a.documents(20) == b.documents(20)
    assert a.documents(20) != c.documents(20)
    assert a.tagged_sentences(30) == b.tagged_sentences(30)
    assert a.sense_sentences("bank", 4) == b.sense_sentences("bank", 4)
    for task in TASKS:
        assert getattr(a, task)(30) == getattr(b, task)(30), task
        assert getattr(a, task)(30) != getattr(c, task)(30), task


def test_documents_follow_the_story_script(en):
    docs = en.documents(200)
    tags = {s: t for s, t in zip((s for d in docs for s in d), en.tagged_sentences(10_000))}
    for doc in docs:
        assert len(doc) >= 4
        intro, going = doc[0], doc[1]
        assert tags[intro][0][1] == "PROPN"  # a person is introduced by name first
        assert " from " in intro or " lived in " in intro
        assert " went to the " in going
        name = intro.split()[0]
        assert any(s.startswith(name) or s.split()[0] in ("she", "he") for s in doc[1:])
    # different documents: many distinct people/places, so NSP negatives are detectable
    assert len({tuple(d[:3]) for d in docs}) == len(docs)


def test_tagged_sentences_align_with_documents(en):
    sentences = [s for d in en.documents(50) for s in d]
    tagged = en.tagged_sentences(len(sentences))
    assert len(tagged) == len(sentences)
    for text, pairs in zip(sentences, tagged):
        assert " ".join(w for w, _ in pairs) == text
        assert all(tag in UPOS for _, tag in pairs)
        assert pairs[-1] == (".", "PUNCT")
    vocab = set(en.vocabulary())
    assert {w for pairs in tagged for w, _ in pairs} <= vocab
    assert en.pos_of("apple") == "NOUN" and en.pos_of("an") == "DET"


def test_vocabulary_is_modest_and_fully_used(en):
    vocab = en.vocabulary()
    assert 250 <= len(vocab) <= 600
    seen = Counter(w for pairs in en.tagged_sentences(20_000) for w, _ in pairs)
    for row in en.sentiment(500) + en.nli(500) + en.similarity(500):
        seen.update(" ".join(v for v in row.values() if isinstance(v, str)).split())
    seen.update(w for row in en.qa(500) for w in row["question"].split())
    assert set(vocab) - set(seen) == set()


def test_both_senses_of_ambiguous_words_occur_in_documents(en):
    tagged = en.tagged_sentences(8000)
    apple = {tag for pairs in tagged for w, tag in pairs if w == "apple"}
    assert apple == {"NOUN", "PROPN"}  # fruit and company
    texts = [" ".join(w for w, _ in pairs) for pairs in tagged]
    assert any("bank of the" in t for t in texts) and any("at the bank" in t for t in texts)


SENSE_CUES = {
    "fruit": {"ate", "orchard", "tree", "peeled", "knife", "sweet", "juicy", "sour", "ripe"},
    "company": {"shares", "released", "engineers", "designed", "rose"},
    "river": {"river", "lake", "boats"},
    "money": {"account", "loan", "money", "staff"},
}


@pytest.mark.parametrize("word", sorted(SENSES))
def test_sense_sentences_use_sense_typical_contexts(en, word):
    pairs = en.sense_sentences(word, n_per_sense=8)
    assert Counter(label for _, label in pairs) == {s: 8 for s in SENSES[word]}
    for text, label in pairs:
        words = set(text.split())
        other = next(s for s in SENSES[word] if s != label)
        assert word in words
        assert words & SENSE_CUES[label] and not words & SENSE_CUES[other], text
    with pytest.raises(BertctlError):
        en.sense_sentences("pear")


@pytest.mark.parametrize("task,labels", [
    ("sentiment", {"positive", "negative"}),
    ("nli", {"entailment", "neutral", "contradiction"}),
    ("topic", set(TOPIC_NAMES)),
    ("dna", {0, 1}),
])
def test_classification_labels_are_balanced(en, task, labels):
    rows = getattr(en, task)(300)
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == labels
    assert max(counts.values()) - min(counts.values()) <= 1


def test_sentiment_needs_more_than_single_words(en):
    rows = en.sentiment(400)
    negated = [r for r in rows if " not " in r["text"]]
    contrast = [r for r in rows if " but " in r["text"]]
    assert len(negated) > 40 and len(contrast) > 40
    assert {r["label"] for r in negated} == {"positive", "negative"}


def test_nli_rules_show_in_the_text(en):
    generic = {"someone", "something", "a", "an", "fruit", "device", "sport"}  # hypernyms
    for row in en.nli(300):
        p, h = row["premise"], row["hypothesis"]
        new = set(h.split()) - set(p.split()) - generic
        if row["label"] == "entailment":  # only dropped words or more general ones
            assert " not " not in h and not new, (p, h)
        elif row["label"] == "neutral":  # a detail the premise does not give
            assert " not " not in h and new, (p, h)
        else:
            assert " not " in h or new, (p, h)


def test_qa_offsets_are_exact_and_a_third_unanswerable(en, xx):
    for world in (en, xx):
        rows = world.qa(300)
        assert len({r["id"] for r in rows}) == 300
        empty = [r for r in rows if not r["answers"]["text"]]
        assert len(empty) == 100
        for r in rows:
            for text, start in zip(r["answers"]["text"], r["answers"]["answer_start"]):
                assert text and r["context"][start:start + len(text)] == text
            assert r["question"].endswith("?")


def test_unanswerable_questions_are_not_answered_by_their_context(en):
    for r in en.qa(150):
        if not r["answers"]["text"]:
            words = r["question"].split()
            if words[0] == "what":  # "what did Mia sell ?": that verb is not in the story
                assert f" {words[3]} " not in r["context"]


def test_similarity_scores(en):
    rows = en.similarity(400)
    scores = [r["score"] for r in rows]
    assert all(0.0 <= s <= 5.0 for s in scores)
    assert min(scores) < 1.0 and max(scores) == 5.0 and len(set(scores)) >= 8
    for r in rows:
        if r["sentence1"] == r["sentence2"]:
            assert r["score"] == 5.0
        shared = set(r["sentence1"].split()) & set(r["sentence2"].split())
        if r["score"] >= 4.0:
            assert len(shared) >= 3


def test_dna_rule_holds_and_is_not_one_feature(en):
    rows = en.dna(400)
    for r in rows:
        assert set(r["sequence"]) <= set("ACGT") and 30 <= len(r["sequence"]) <= 60
        assert dna_rule(r["sequence"]) == r["label"]
    positives = [r["sequence"] for r in rows if r["label"] == 1]
    assert 0.2 < sum(DNA_MOTIF in s for s in positives) / len(positives) < 0.9
    assert any(DNA_MOTIF not in s and gc_content(s) > 0.6 for s in positives)
    assert World(3, "xx").dna(50) == en.dna(50)


def test_xx_is_a_parallel_invented_language(en, xx):
    pairs = xx.bilingual_lexicon()
    assert len({e for e, _ in pairs}) == len({x for _, x in pairs}) == len(pairs) > 150
    assert dict(pairs)["apple"] != "apple"
    english = set(en.vocabulary()) - {".", ",", "?"}
    xx_words = {w for d in xx.documents(100) for s in d for w in s.split()}
    assert not xx_words & english
    assert xx_words <= set(xx.vocabulary())
    # same content, same labels; only the words and the order differ
    for task in ("sentiment", "nli", "topic", "qa"):
        a, b = getattr(en, task)(60), getattr(xx, task)(60)
        key = "answers" if task == "qa" else "label"
        assert [bool(r[key]["text"]) if task == "qa" else r[key] for r in a] == \
               [bool(r[key]["text"]) if task == "qa" else r[key] for r in b]
    assert [r["score"] for r in en.similarity(40)] == [r["score"] for r in xx.similarity(40)]


def test_xx_word_order_is_sov_with_adjectives_after_nouns(en, xx):
    lex = dict(en.bilingual_lexicon())
    en_tagged, xx_tagged = en.tagged_sentences(600), xx.tagged_sentences(600)
    checked = 0
    for e, x in zip(en_tagged, xx_tagged):
        assert sorted(t for _, t in e) == sorted(t for _, t in x)  # same words, reordered
        assert x[-2][1] in ("VERB", "AUX")  # the verb comes last
        for (w1, t1), (w2, t2) in zip(e, e[1:]):
            if t1 == "ADJ" and t2 == "NOUN":
                assert f"{lex[w2]} {lex[w1]}" in " ".join(w for w, _ in x)
                checked += 1
    assert checked > 50


def test_bad_arguments_raise_bertctl_error():
    with pytest.raises(BertctlError):
        World(language="fr")
    with pytest.raises(BertctlError):
        World().documents(-1)
    with pytest.raises(BertctlError):
        World().pos_of("zebra")


def test_generation_scales_to_a_large_corpus():
    """10,000 documents (the speed is measured in benchmarks/startup.py, not asserted here)."""
    docs = World(1).documents(10_000)
    assert len(docs) == 10_000 and all(5 <= len(d) <= 7 for d in docs)


def test_writers(tmp_path):
    path = write_corpus(tmp_path / "c" / "corpus.txt", n_docs=3, seed=2)
    blocks = path.read_text().strip().split("\n\n")
    assert [b.split("\n") for b in blocks] == World(2).documents(3)
    rows = World(2).qa(4)
    out = write_jsonl(tmp_path / "qa.jsonl", rows)
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
