"""Probing: the pieces on hand-made inputs (word spans and sub-token averaging, Chinese
character offsets, cosine and within/between means, the random-init control, the mean
shift, probes and their baselines). Tiny models only; no files beyond tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertctl.errors import BertctlError

from .helpers import tiny_tokenizer


def tiny_encoder(tokenizer=None, seed=0, layers=2):
    import torch
    from transformers import BertConfig, BertModel

    from bertctl.probe.features import wrap

    tokenizer = tokenizer or tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return wrap(BertModel(cfg), tokenizer, "tiny", "cpu", precision="fp32")  # exact references below


def hidden(enc, text):
    """Reference: all hidden states [L+1, T, H] and offsets of one text, computed directly."""
    import torch

    batch = enc.tokenizer([text], return_offsets_mapping=True, return_tensors="pt")
    offsets = batch.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        hs = torch.stack(enc.model(**batch, output_hidden_states=True).hidden_states)[:, 0]
    return hs.numpy(), offsets, batch["input_ids"][0].tolist()


# ------------------------------------------------------------------ finding words


def test_find_target_whole_words_and_case():
    from bertctl.probe.features import find_target

    assert find_target("I ate a pineapple and an apple.", "apple") == (25, 30)
    assert find_target("Apple shares rose.", "apple") == (0, 5)          # any case, after exact case
    assert find_target("apple and Apple", "Apple") == (10, 15)           # exact case wins
    assert find_target("apples only", "apple") is None                   # not inside a longer word
    assert find_target("no fruit here", "apple") is None


def test_find_target_chinese_by_characters():
    from bertctl.probe.features import find_target

    text = "我吃了一个苹果。苹果公司发布了新手机。"
    assert find_target(text, "苹果") == (5, 7)                            # no spaces, no word edges needed
    assert text[slice(*find_target(text, "苹果公司"))] == "苹果公司"


def test_tokens_in_span_skips_special_tokens():
    from bertctl.probe.features import tokens_in_span

    offsets = [(0, 0), (0, 2), (2, 8), (8, 13), (14, 18), (0, 0)]  # [CLS] un ##believ ##ably good [SEP]
    assert tokens_in_span(offsets, (0, 13)) == [1, 2, 3]
    assert tokens_in_span(offsets, (14, 18)) == [4]
    assert tokens_in_span(offsets, (20, 25)) == []


def test_word_spans_and_join_words():
    from bertctl.probe.features import join_words, word_spans

    assert [w for w, _ in word_spans("Mia's apple, the pie .")] == ["Mia's", "apple", "the", "pie"]
    text, spans = join_words(["I", "ate", "unbelievably"])
    assert text == "I ate unbelievably" and [text[a:b] for a, b in spans] == ["I", "ate", "unbelievably"]


# ----------------------------------------------------------- sub-token averaging


def test_multi_piece_word_is_the_mean_of_its_pieces():
    from bertctl.probe.features import span_features

    enc = tiny_encoder()
    text = "i ate unbelievably good pie"
    hs, offsets, ids = hidden(enc, text)
    pieces = enc.tokenizer.convert_ids_to_tokens(ids)
    assert pieces[3:6] == ["un", "##believ", "##ably"]                    # the word really is split in 3
    span = (6, 18)
    feats = span_features(enc, [text, "good pie"], [[span], [(0, 4)]], "mean")
    assert feats.n_tokens.tolist() == [3, 1] and feats.found.all()
    np.testing.assert_allclose(feats.layers[:, 0], hs[:, 3:6].mean(1), atol=1e-5)
    first = span_features(enc, [text], [[span]], "first")
    np.testing.assert_allclose(first.layers[:, 0], hs[:, 3], atol=1e-5)
    assert not np.allclose(first.layers[:, 0], feats.layers[:, 0])
    emb = enc.model.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_allclose(feats.static[0], emb[ids[3:6]].mean(0), atol=1e-6)


def test_batching_and_sorting_do_not_change_vectors():
    from bertctl.probe.features import span_features, word_features

    enc = tiny_encoder()
    sents = [["i", "ate", "an", "apple", "pie", "."], ["good"], ["the", "company", "shares", "rose"]]
    one = word_features(enc, sents, batch_size=1)
    many = word_features(enc, sents, batch_size=8)
    np.testing.assert_allclose(one.layers, many.layers, atol=1e-5)
    assert one.layers.shape == (3, 11, 32)
    # the word 'apple' of sentence 1 is the same vector as a span lookup on the joined text
    alone = span_features(enc, ["i ate an apple pie ."], [[(9, 14)]])
    np.testing.assert_allclose(alone.layers[:, 0], one.layers[:, 3], atol=1e-5)


def test_chinese_target_found_by_offsets_and_averaged():
    from bertctl.probe.similarity import target_vectors

    enc = tiny_encoder()
    text = "我吃了一个苹果"
    hs, offsets, ids = hidden(enc, text)
    feats = target_vectors(enc, [text, "苹果公司发布新手机"], "苹果")
    assert feats.n_tokens.tolist() == [2, 2]                              # one token per character
    assert enc.tokenizer.convert_ids_to_tokens(ids[6:8]) == ["苹", "果"]
    np.testing.assert_allclose(feats.layers[:, 0], hs[:, 6:8].mean(1), atol=1e-5)
    assert not feats.unk.any()


def test_unknown_word_is_flagged_and_missing_word_is_an_error():
    from bertctl.probe.similarity import target_vectors

    enc = tiny_encoder()
    feats = target_vectors(enc, ["i ate a kiwi"], "kiwi")
    assert feats.unk.tolist() == [True]
    with pytest.raises(BertctlError, match="not in sentence 2"):
        target_vectors(enc, ["i ate an apple", "i ate a pie"], "apple")


# ------------------------------------------------------------ cosine and groups


def test_cosine_matrix_on_hand_vectors():
    from bertctl.probe.features import cosine_matrix

    sim = cosine_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]]))
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(sim[:3, :3], [[1, 0, r], [0, 1, r], [r, r, 1]], atol=1e-12)
    assert sim[3].tolist() == [0, 0, 0, 0]                                 # a zero vector is similar to nothing


def test_within_and_between_group_means():
    from bertctl.probe.similarity import group_means

    sim = np.array([[1.0, 0.9, 0.2, 0.1],
                    [0.9, 1.0, 0.3, 0.2],
                    [0.2, 0.3, 1.0, 0.7],
                    [0.1, 0.2, 0.7, 1.0]])
    g = group_means(sim, ["fruit", "fruit", "company", "company"])
    assert g["within"] == pytest.approx((0.9 + 0.7) / 2)
    assert g["between"] == pytest.approx((0.2 + 0.1 + 0.3 + 0.2) / 4)
    assert g["gap"] == pytest.approx(0.8 - 0.2)
    assert (g["pairs_within"], g["pairs_between"]) == (2, 4)
    with pytest.raises(BertctlError):
        group_means(sim, ["a", "a", "a", "a"])


def test_static_embedding_control_has_no_gap():
    from bertctl.probe.similarity import similarity

    enc = tiny_encoder()
    rows = [("i ate an apple", "fruit"), ("apple pie .", "fruit"),
            ("apple shares rose", "company"), ("the company apple", "company")]
    res = similarity(enc, rows, "apple", layer=-1, random_control=True)
    assert res["groups"]["static_embedding"]["gap"] == pytest.approx(0.0, abs=1e-6)
    assert len(res["groups"]["by_layer"]) == 3
    assert "random_init" in res["groups"]
    sim = np.array(res["cosine"])
    np.testing.assert_allclose(sim, sim.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)


# -------------------------------------------------------------- random control


def test_random_init_control_has_the_same_shape_and_fresh_weights():
    from bertctl.probe.features import random_like

    enc = tiny_encoder(seed=1)
    a, b = random_like(enc, seed=0), random_like(enc, seed=0)
    shapes = {n: p.shape for n, p in enc.model.named_parameters()}
    assert {n: p.shape for n, p in a.model.named_parameters()} == shapes
    assert a.model.config.to_dict() == enc.model.config.to_dict()
    assert a.tokenizer is enc.tokenizer and a.n_layers == enc.n_layers == 3
    w = "encoder.layer.0.attention.self.query.weight"
    pa, pb, pe = (dict(m.model.named_parameters())[w] for m in (a, b, enc))
    assert (pa == pb).all() and not (pa == pe).all()                      # seeded, and not the model's weights


# ------------------------------------------------------------------ mean shift


def test_mean_shift_translation_on_offset_vectors():
    from bertctl.probe.align import shifted_and_plain, translate

    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 16))
    B = A + 6.0 * rng.normal(size=16)                 # language B = language A + one constant offset
    pairs = [(i, i) for i in range(30)]
    res = shifted_and_plain(A, B, pairs, A.mean(0), B.mean(0))
    assert res["shifted"]["top1"] == 1.0
    assert res["plain"]["top1"] < 0.5
    assert res["n_queries"] == res["n_candidates"] == 30
    # top-5 is never below top-1; several gold translations count as hits
    assert translate(B, A, [{i, (i + 1) % 30} for i in range(30)], A.mean(0) - B.mean(0))["top1"] == 1.0


def test_lexicon_file_errors(tmp_path):
    from bertctl.probe.align import read_lexicon

    good = tmp_path / "lex.tsv"
    good.write_text("# en\txx\napple\tfupa\npear\tdoli\n", encoding="utf-8")
    assert read_lexicon(str(good)) == [("apple", "fupa"), ("pear", "doli")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("apple fupa\n", encoding="utf-8")
    with pytest.raises(BertctlError, match="line 1"):
        read_lexicon(str(bad))


# --------------------------------------------------------------------- probes


def test_probe_beats_majority_on_separable_features_and_not_on_noise():
    from bertctl.probe.layers import majority_baseline, probe_accuracy

    rng = np.random.default_rng(0)
    y = np.array(["NOUN", "VERB", "DET"] * 60 + ["NOUN"] * 60)
    centers = {"NOUN": 0, "VERB": 1, "DET": 2}
    X = rng.normal(size=(len(y), 8)) * 0.3
    X[np.arange(len(y)), [centers[t] for t in y]] += 3.0
    acc = probe_accuracy(X[:160], y[:160], X[160:], y[160:], seed=0, max_iter=100)
    noise = probe_accuracy(rng.normal(size=(160, 8)), y[:160], rng.normal(size=(80, 8)), y[160:], seed=0, max_iter=100)
    label, majority = majority_baseline(y[:160], y[160:])
    assert acc == 1.0 and label == "NOUN" and majority == pytest.approx(np.mean(y[160:] == "NOUN"))
    assert noise < 0.8


def test_unseen_word_types_split_keeps_every_tag_trainable():
    from bertctl.probe.layers import ProbeData, labels_of, unseen_types

    rows = [(["the", "cat", "sat"], ["DET", "NOUN", "VERB"]), (["a", "dog", "ran"], ["DET", "NOUN", "VERB"]),
            (["the", "bird", "sang", "."], ["DET", "NOUN", "VERB", "PUNCT"])]
    held = unseen_types(rows, 0.5, seed=0)
    for tag_types in (["the", "a"], ["cat", "dog", "bird"], ["sat", "ran", "sang"]):
        assert any(t not in held for t in tag_types)                        # each tag keeps a training type
    assert "." not in held                                                  # a one-type tag is never tested
    data = ProbeData("word", "hand", rows[:2], rows[2:], held)
    test_words = [w for w in rows[2][0] if w in held]
    assert len(labels_of(data, "test")) == len(test_words)
    assert len(labels_of(data, "train")) == sum(w not in held for words, _ in rows[:2] for w in words)


def test_per_layer_probe_and_controls_on_a_tiny_encoder():
    from bertctl.probe.layers import ProbeData, layers

    rows = [(["i", "ate", "an", "apple", "pie", "."], ["PRON", "VERB", "DET", "NOUN", "NOUN", "PUNCT"])] * 6 + \
           [(["the", "company", "shares", "rose"], ["DET", "NOUN", "NOUN", "VERB"])] * 6
    res = layers(tiny_encoder(), ProbeData("word", "hand", rows[::2], rows[1::2]), max_iter=50)
    assert [r["layer"] for r in res["per_layer"]] == [0, 1, 2]
    assert all(r["random_init"] is not None for r in res["per_layer"])
    assert res["best"] >= res["majority"] and res["n_labels"] == 5
    json.dumps(res)                                                         # the JSON must serialise


def test_checkpoint_helpers(tmp_path):
    from bertctl.probe.learning_curves import eval_curves, every_nth, run_folder

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 10, "loss": 3.0}\n{"step": 10, "eval_mlm_accuracy": 0.2, "eval_nsp_accuracy": 0.6, "eval_mlm_loss": 3}\n'
        '{"step": 20, "eval_mlm_accuracy": 0.4, "eval_nsp_accuracy": 0.7}\n', encoding="utf-8")
    assert eval_curves(tmp_path) == {"mlm_accuracy": [(10, 0.2), (20, 0.4)], "nsp_accuracy": [(10, 0.6), (20, 0.7)]}
    assert every_nth(list(range(7)), 3) == [0, 3, 6] and every_nth(list(range(8)), 3) == [0, 3, 6, 7]
    assert run_folder(str(tmp_path)) == tmp_path
    with pytest.raises(BertctlError, match="not a `bertctl pretrain` run"):
        run_folder(str(tmp_path / "checkpoints"))


# --------------------------------------------------------------------- recipes


def test_probe_recipes_and_subcommand_check(tmp_path):
    from bertctl.probe.start import check_subcommand
    from bertctl.probe.config import ProbeRecipe
    from bertctl.recipe import builtin_recipes, load, validate_file

    names = [n for n in builtin_recipes() if n.startswith("probe")]
    assert {"probe", "probe_similarity_en", "probe_similarity_zh"} <= set(names)
    for name in names:
        validate_file(builtin_recipes()[name])
    recipe, path = load(ProbeRecipe, "probe_similarity_zh", [], "probe")
    assert recipe.similarity.word == "苹果" and len(recipe.similarity.sentences) == 10
    check_subcommand(recipe, "similarity", path)
    with pytest.raises(BertctlError, match="is for `bertctl probe similarity`"):
        check_subcommand(recipe, "layers", path)
    with pytest.raises(BertctlError, match="layers.n_trian: unknown key"):
        load(ProbeRecipe, "probe", ["layers.n_trian=3"], "probe")


def test_sentence_file_formats(tmp_path):
    from bertctl.probe.similarity import read_sentence_file

    tsv = tmp_path / "s.txt"
    tsv.write_text("# comment\nI ate an apple.\tfruit\nApple rose.\tcompany\nno group here\n", encoding="utf-8")
    assert read_sentence_file(str(tsv)) == [("I ate an apple.", "fruit"), ("Apple rose.", "company"),
                                            ("no group here", None)]
    js = tmp_path / "s.jsonl"
    js.write_text('{"text": "苹果很甜", "group": "fruit"}\n{"oops": 1}\n', encoding="utf-8")
    with pytest.raises(BertctlError, match="line 2"):
        read_sentence_file(str(js))


def test_position_means_are_per_position_averages_of_real_tokens():
    from bertctl.probe.features import position_means

    enc = tiny_encoder()
    texts = ["i ate an apple", "the company shares rose .", "good pie"]
    means = position_means(enc, texts, max_length=16)
    assert means.shape == (3, 16, 32)
    per_text = [hidden(enc, t) for t in texts]
    # position 1 holds the first word of every text: its mean is the mean of those three vectors
    np.testing.assert_allclose(means[:, 1], np.mean([hs[:, 1] for hs, _, _ in per_text], axis=0), atol=1e-5)
    # position 5 is a real token only in the second text ("."); [SEP] and padding never count
    np.testing.assert_allclose(means[:, 5], per_text[1][0][:, 5], atol=1e-5)
    # a position no text reaches gets the mean over all real tokens
    np.testing.assert_allclose(means[:, 15], means[:, 14], atol=1e-6)
    # the target span can be left out of the means
    skipped = position_means(enc, texts, [(0, 1), (0, 3), (0, 4)], max_length=16)
    assert not np.allclose(skipped[:, 1], means[:, 1])


def test_world_sense_sentences_are_distinct_and_balanced():
    from bertctl.probe.config import SimilarityBlock
    from bertctl.probe.similarity import distinct_per_group, sentences_from

    assert distinct_per_group([("a", "x"), ("a", "x"), ("b", "y"), ("c", "x"), ("d", "x")], 2) == \
        [("a", "x"), ("b", "y"), ("c", "x")]
    rows, word, origin, reference = sentences_from(SimilarityBlock(n_per_sense=4))
    assert word == "apple" and len(rows) == 8 and len({t for t, _ in rows}) == 8
    assert sorted({g for _, g in rows}) == ["company", "fruit"] and len(reference) > 100
    rows_xx, word_xx, _, _ = sentences_from(SimilarityBlock(n_per_sense=2, language="xx"))
    assert word_xx != "apple" and all(word_xx in t for t, _ in rows_xx)


def test_long_texts_are_cut_to_the_models_position_table():
    import torch
    from transformers import BertConfig, BertModel

    from bertctl.probe.features import word_features, wrap

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    enc = wrap(BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=8)), tok, "short", "cpu")
    assert enc.limit(128) == 8
    feats = word_features(enc, [["i", "ate", "an", "apple", "pie", "good", "pie", "good", "pie"]], max_length=128)
    assert feats.found.tolist() == [True] * 6 + [False] * 3                 # [CLS] + 6 words + [SEP] = 8 positions


def test_cls_pooling_of_a_causal_model_takes_the_last_real_token():
    import torch
    from transformers import GPT2Config, GPT2Model

    from bertctl.probe.features import sentence_features, wrap

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    enc = wrap(GPT2Model(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=32)), tok, "gpt", "cpu", precision="fp32")
    texts = ["i ate an apple pie", "good pie"]
    X = sentence_features(enc, texts, pool="cls")
    assert X.shape == (3, 2, 32)
    for i, text in enumerate(texts):
        batch = tok([text], return_tensors="pt")
        with torch.no_grad():
            hs = torch.stack(enc.model(**batch, output_hidden_states=True).hidden_states)[:, 0]
        np.testing.assert_allclose(X[:, i], hs[:, -1].numpy(), atol=1e-5)   # [SEP], the last real token


def test_masked_copies_mask_every_word_once():
    from bertctl.probe.masked_pos import half_final_step, masked_copies

    words, tags = [f"w{i}" for i in range(16)], ["X"] * 16
    copies = list(masked_copies([(words, tags)], rate=0.15))
    picked = [i for _, _, p in copies for i in p]
    assert sorted(picked) == list(range(16)) and len(copies) == 7
    assert all(len(p) <= 3 for _, _, p in copies)
    assert half_final_step([0, 10, 20, 30], [0.0, 0.1, 0.3, 0.4]) == 20
    assert half_final_step([0, 10], [0.0, 0.0]) is None
