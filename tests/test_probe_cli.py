"""`bertctl probe ...` end to end on a micro `bertctl pretrain` run (both World languages,
checkpoints at steps 2 and 4), plus the real-data layer probe on UD English EWT with the
embedded MiniLM (skipped where ../shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MICRO = ["data.world.n_docs=60", "data.world.languages=[en,xx]", "tokenizer.vocab_size=200", "model.hidden=32",
         "model.heads=2", "model.intermediate=64", "train.max_steps=4", "train.save_every=2", "train.eval_every=2",
         "train.batch_size=8", "train.precision=fp32", "eval.max_sequences=16"]


def invoke(*args):
    from typer.testing import CliRunner

    from bertctl.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real (micro) pretraining run: model/, tokenizer/, checkpoints/step-*, metrics.jsonl."""
    root = tmp_path_factory.mktemp("probe")
    out = root / "pretrain"
    code, stdout, stderr = invoke("pretrain", *MICRO, f"data.cache_dir={root / 'cache'}", "--out", out)
    assert code == 0, stdout + stderr
    return out


def read(folder: Path, name: str):
    return json.loads((folder / name).read_text(encoding="utf-8"))


def test_similarity_on_a_pretrain_run(run, tmp_path):
    out = tmp_path / "sim"
    code, stdout, stderr = invoke("probe", "similarity", "--model", run, "--out", out, "similarity.n_per_sense=3")
    assert code == 0, stdout + stderr
    res = read(out, "similarity.json")
    assert len(res["cosine"]) == 6 and len(res["cosine_raw"]) == 6 and res["vectors"] == "position-centred"
    g = res["groups"]
    assert set(g) >= {"contextual", "model", "static_embedding", "by_layer", "random_init"}
    assert g["static_embedding"]["gap"] == pytest.approx(0.0, abs=1e-6)
    assert (out / "similarity.png").stat().st_size > 1000 and (out / "recipe.yaml").exists()
    assert "Within-sense vs between-sense" in stdout


def test_layers_word_and_sentence_level(run, tmp_path):
    out = tmp_path / "layers"
    code, stdout, stderr = invoke("probe", "layers", "--model", run, "--out", out,
                                  "layers.n_train=20", "layers.n_test=10", "layers.max_iter=50", "layers.unseen_words=0")
    assert code == 0, stdout + stderr
    res = read(out, "layers.json")
    assert res["level"] == "word" and [r["layer"] for r in res["per_layer"]] == [0, 1, 2]
    assert all(0 <= r["random_init"] <= 1 and r["majority"] < r["model"] for r in res["per_layer"])
    assert (out / "layers.png").exists() and "Linear probe per layer" in stdout

    out2 = tmp_path / "topic"
    code, stdout, stderr = invoke("probe", "layers", "--model", run, "--out", out2, "layers.data=world-topic",
                                  "layers.n_train=30", "layers.n_test=15", "layers.max_iter=50", "random_control=false")
    assert code == 0, stdout + stderr
    res = read(out2, "layers.json")
    assert res["level"] == "sentence" and res["random_init_model"] is None and res["n_test_units"] == 15


def test_checkpoints_over_steps(run, tmp_path):
    out = tmp_path / "ckpt"
    code, stdout, stderr = invoke("probe", "checkpoints", "--model", run, "--out", out, "checkpoints.n_train=20",
                                  "checkpoints.n_test=10", "checkpoints.n_per_sense=3", "checkpoints.max_iter=50")
    assert code == 0, stdout + stderr
    res = read(out, "checkpoints.json")
    assert [row["step"] for row in res["per_checkpoint"]] == [0, 2, 4]
    assert set(res["curves"]) == {"pos", "order", "sense"}
    assert all(len(c["value"]) == 3 for c in res["curves"].values())
    assert [s for s, _ in res["run_evals"]["mlm_accuracy"]] == [2, 4]
    assert (out / "checkpoints.png").exists()


def test_checkpoints_masked_accuracy_per_tag(run, tmp_path):
    """masked_pos: the MLM head of each checkpoint scores every word once, grouped by tag;
    the counts add up, and the table says when each tag reached half its final accuracy."""
    out = tmp_path / "masked"
    code, stdout, stderr = invoke("probe", "checkpoints", "--model", run, "--out", out,
                                  "checkpoints.properties=[masked_pos]", "checkpoints.n_masked=30")
    assert code == 0, stdout + stderr
    res = read(out, "checkpoints.json")
    rows = res["per_checkpoint"]
    assert [r["step"] for r in rows] == [0, 2, 4] and res["curves"] == {}
    for r in rows:
        per_tag = r["masked_pos"]
        tags = [t for t in per_tag if t not in ("ALL", "FUNCTION")]
        assert sum(per_tag[t]["total"] for t in tags) == per_tag["ALL"]["total"] > 100
        assert all(0 <= v["accuracy"] <= 1 and v["correct"] <= v["total"] for v in per_tag.values())
    # every word of the 30 sentences is scored once, at every step
    assert len({r["masked_pos"]["ALL"]["total"] for r in rows}) == 1
    assert (out / "masked_pos.png").exists() and "When each part of speech is learnt" in stdout


UD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu"


@pytest.mark.skipif(not UD.exists(), reason="../shared/data is absent")
def test_checkpoints_on_real_ud_sentences(run, tmp_path):
    out = tmp_path / "ud"
    code, stdout, stderr = invoke("probe", "checkpoints", "--model", run, "--out", out, f"checkpoints.data={UD}",
                                  "checkpoints.properties=[pos,masked_pos]", "checkpoints.n_train=30",
                                  "checkpoints.n_test=20", "checkpoints.n_masked=20", "checkpoints.max_iter=50")
    assert code == 0, stdout + stderr
    res = read(out, "checkpoints.json")
    assert "en_ewt-ud-dev.conllu" in res["data"]["pos"]
    assert {"NOUN", "VERB", "ALL"} <= set(res["per_checkpoint"][-1]["masked_pos"])


def test_align_between_the_two_world_languages(run, tmp_path):
    out = tmp_path / "align"
    code, stdout, stderr = invoke("probe", "align", "--model", run, "--out", out, "align.n_sentences=80")
    assert code == 0, stdout + stderr
    res = read(out, "align.json")
    assert res["pairs_used"] > 20 and res["chance_top1"] == pytest.approx(1 / res["headline"]["b_to_a"]["n_candidates"])
    for key in ("plain", "shifted"):
        r = res["headline"]["b_to_a"][key]
        assert 0 <= r["top1"] <= r["top5"] <= 1
    assert len(res["per_layer"]) == 3 and (out / "align.png").exists()
    assert len(res["translations"]) == res["headline"]["b_to_a"]["n_queries"]
    top1 = sum(t["shifted"] in t["gold"] for t in res["translations"]) / len(res["translations"])
    assert top1 == pytest.approx(res["headline"]["b_to_a"]["shifted"]["top1"])    # the two code paths agree
    assert sum(row["n"] for row in res["by_tag"]) == len(res["translations"])
    assert "Translation xx -> en" in stdout


def test_probe_errors_are_one_line(run, tmp_path):
    code, _, err = invoke("probe", "checkpoints", "--model", run / "tokenizer", "--out", tmp_path / "a")
    assert code == 2 and "not a `bertctl pretrain` run folder" in err
    code, _, err = invoke("probe", "checkpoints", "--model", run, "--out", tmp_path / "a2", "checkpoints.data=x.tsv")
    assert code == 2 and "must be 'world' or a .conllu file" in err
    code, _, err = invoke("probe", "checkpoints", "--model", run, "--out", tmp_path / "a3", "checkpoints.data=no.conllu")
    assert code == 2 and "no.conllu is not a file" in err
    code, _, err = invoke("probe", "layers", "probe_similarity_en", "--out", tmp_path / "b")
    assert code == 2 and "is for `bertctl probe similarity`" in err
    code, _, err = invoke("probe", "similarity", "--model", run, "--out", tmp_path / "c", "similarity.word=banana")
    assert code == 2 and "no two-sense word" in err
    code, _, err = invoke("probe", "similarity", "--model", run, "--out", tmp_path / "d", "similarity.layer=9")
    assert code == 2 and "layer 9 does not exist" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_layers_on_ud_english_with_minilm_beats_both_controls(shared_data, tmp_path):
    conllu = shared_data / "ud_english_ewt" / "en_ewt-ud-dev.conllu"
    if not conllu.exists():
        pytest.skip(f"{conllu} is absent")
    out = tmp_path / "ud"
    code, stdout, stderr = invoke("probe", "layers", "--model", "minilm", "--out", out, f"layers.data={conllu}",
                                  "layers.n_train=80", "layers.n_test=40", "layers.max_iter=100")
    assert code == 0, stdout + stderr
    res = read(out, "layers.json")
    assert res["n_labels"] >= 12 and len(res["per_layer"]) == 7
    assert res["best"] > res["best_random_init"] + 0.05
    assert res["best"] > res["majority"] + 0.4


def test_chinese_recipe_end_to_end_on_a_tiny_chinese_model(tmp_path):
    """probe_similarity_zh with a model whose vocabulary has the characters (saved by hand):
    the target 苹果 is found by character offsets in every sentence, two tokens averaged."""
    import torch
    from transformers import BertConfig, BertModel

    from bertctl.recipe import builtin_recipes, read_yaml
    from .helpers import tiny_tokenizer

    sentences = [s["text"] for s in read_yaml(builtin_recipes()["probe_similarity_zh"])["similarity"]["sentences"]]
    tok = tiny_tokenizer(chars=sorted({c for s in sentences for c in s}))
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64))
    model.save_pretrained(tmp_path / "zh")
    tok.save_pretrained(tmp_path / "zh")
    out = tmp_path / "sim"
    code, stdout, stderr = invoke("probe", "similarity", "probe_similarity_zh", "--model", tmp_path / "zh", "--out", out)
    assert code == 0, stdout + stderr
    res = read(out, "similarity.json")
    assert [s["sub_tokens"] for s in res["sentences"]] == [2] * 10
    assert not any(s["unknown_token"] for s in res["sentences"]) and "warning" not in res
    assert res["word"] == "苹果" and (out / "similarity.png").exists()


def test_align_on_real_languages_with_a_word_pair_file(tmp_path):
    """The path for a multilingual hub model (probe_align_zh: an en-zh word list, isolated
    vectors), run offline on the embedded minilm; then contextual vectors from sentence
    files, with Chinese words found inside sentences that have no spaces."""
    out = tmp_path / "zh"
    code, stdout, stderr = invoke("probe", "align", "probe_align_zh", "--model", "minilm", "--out", out,
                                  "random_control=false")
    assert code == 0, stdout + stderr
    res = read(out, "align.json")
    assert res["language_b"] == "zh" and res["pairs_used"] >= 60 and res["lexicon"].endswith("en-zh.tsv")
    assert "Translation zh -> en" in stdout
    (tmp_path / "en.txt").write_text("the river is long .\nthe mountain is high .\nthe river and the mountain .\n")
    (tmp_path / "zh.txt").write_text("这条河很长。\n这座山很高。\n河和山。\n")
    (tmp_path / "pairs.tsv").write_text("river\t河\nmountain\t山\n")
    out = tmp_path / "ctx"
    code, stdout, stderr = invoke("probe", "align", "probe_align_zh", "--model", "minilm", "--out", out,
                                  f"align.lexicon={tmp_path / 'pairs.tsv'}", "align.vectors=contextual",
                                  f"align.corpus_a={tmp_path / 'en.txt'}", f"align.corpus_b={tmp_path / 'zh.txt'}")
    assert code == 0, stdout + stderr
    res = read(out, "align.json")
    assert res["pairs_used"] == 2 and res["mean_occurrences_b"] == 2.0  # 河 and 山 twice each, inside sentences
    code, _, stderr = invoke("probe", "align", "probe_align_zh", "--model", "minilm", "align.vectors=contextual")
    assert code == 2 and "align.corpus_b is empty" in stderr
