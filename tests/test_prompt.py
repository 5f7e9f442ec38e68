"""`bertctl prompt`: prompt assembly, demonstration draws, option scoring, the command.

Everything runs on tiny causal models built from configs (hidden 32, 2 layers) with tiny
tokenizers trained here in milliseconds; the SmolLM2 and real SST-2 tests are in
test_prompt_real.py.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from bertctl.errors import BertctlError
from bertctl.prompting.config import PromptRecipe
from bertctl.prompting.prompts import build_prompt, demo_order, option_texts, sample_demos
from bertctl.prompting.tasks import Task, load_task

from .helpers import WORDS, save_model, tiny_bpe_tokenizer, tiny_llama


# ------------------------------------------------------------------ tiny models


def tiny_wordpiece_tokenizer():
    """The tokenizer `bertctl pretrain` trains: BERT WordPiece, [CLS] as BOS, [SEP] as EOS."""
    from transformers import BertTokenizer

    from bertctl.data.world import World

    words = sorted({w for r in World(0).sentiment(300) for w in r["text"].lower().split()}
                   | set(WORDS.lower().split()) | {":", "."})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)}
    tok = BertTokenizer(vocab=vocab, do_lower_case=True)
    tok.bos_token, tok.eos_token = tok.cls_token, tok.sep_token
    return tok


def tiny_gpt2(vocab_size: int, seed: int = 0, positions: int = 512):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=positions,
                     bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def bpe():
    return tiny_bpe_tokenizer()


# -------------------------------------------------------------- prompt assembly


def _task(**kw) -> Task:
    base = dict(name="sentiment", description="Classify the sentiment.", input="Review: {text}\nSentiment:",
                answer=" {answer}", separator="\n\n", words={"pos": "positive", "neg": "negative"},
                eval_rows=[], pool_rows=[])
    base.update(kw)
    return Task(**base)


def test_prompt_is_description_demos_query_exactly():
    task = _task()
    demos = [{"text": "a fine film .", "label": "pos"}, {"text": "dull .", "label": "neg"}]
    got = build_prompt(task, demos, {"text": "what a {mess} .", "label": "neg"})
    assert got == ("Classify the sentiment.\n\n"
                   "Review: a fine film .\nSentiment: positive\n\n"
                   "Review: dull .\nSentiment: negative\n\n"
                   "Review: what a {mess} .\nSentiment:")  # braces in data are data, not placeholders
    assert option_texts(task) == [" positive", " negative"]
    # no description and 0 shots: the query alone
    assert build_prompt(_task(description=""), [], {"text": "ok"}) == "Review: ok\nSentiment:"


def test_template_errors_name_the_missing_column(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"sentence": f"s{i}", "label": i % 2}) + "\n" for i in range(20)))
    recipe = PromptRecipe(task="mine", data={"eval": str(data), "pool_size": 4},
                          template={"input": "Review: {text}\nSentiment:"})
    with pytest.raises(BertctlError, match=r"\{text\}|lacks column"):
        load_task(recipe)
    no_template = PromptRecipe(task="mine", data={"eval": str(data), "pool_size": 4})
    with pytest.raises(BertctlError, match="needs template.input"):
        load_task(no_template)
    leaky = PromptRecipe(task="mine", data={"eval": str(data), "pool_size": 4},
                         template={"input": "{sentence}", "answer": " {label}"})
    with pytest.raises(BertctlError, match="only use the placeholder"):
        load_task(leaky)


def test_file_task_label_words_from_yaml_int_keys(tmp_path):
    from bertctl.recipe import load

    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"s{i} .\t{i % 2}\n" for i in range(30)))
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("command: prompt\ntask: mine\ndata: {eval: d.tsv, pool_size: 10, limit: 8}\n"
                           "template: {input: 'Review: {sentence}\\nSentiment:'}\n"
                           "labels: {0: negative, 1: positive}\n")
    recipe, _ = load(PromptRecipe, str(recipe_file), [], default="prompt")
    task = load_task(recipe)
    assert task.words == {"0": "negative", "1": "positive"}
    assert len(task.eval_rows) == 8 and len(task.pool_rows) == 10
    assert not {r["sentence"] for r in task.eval_rows} & {r["sentence"] for r in task.pool_rows}
    bad = PromptRecipe(task="mine", data={"eval": str(data), "pool_size": 10},
                       template={"input": "{sentence}"}, labels={"1": "positive"})
    with pytest.raises(BertctlError, match="no label word"):
        load_task(bad)


# ---------------------------------------------------------- demonstration draws


def test_demos_are_balanced_seeded_nested_and_never_the_query():
    labels = ["a"] * 30 + ["b"] * 10 + ["c"] * 5
    for index in range(20):
        for k in (1, 2, 3, 4, 6, 9):
            got = sample_demos(labels, k, seed=7, index=index)
            counts = Counter(labels[i] for i in got)
            assert len(set(got)) == k
            assert max(counts.values()) - min(counts.get(x, 0) for x in "abc") <= 1 or k < 3, (k, counts)
            assert got == sample_demos(labels, k, seed=7, index=index)  # seeded
        # nested: the K=3 demonstrations are among the K=9 ones
        assert set(sample_demos(labels, 3, 7, index)) <= set(sample_demos(labels, 9, 7, index))
    # different queries and seeds draw differently
    draws = {tuple(sample_demos(labels, 4, 7, i)) for i in range(20)}
    assert len(draws) > 10
    assert sample_demos(labels, 4, 7, 0) != sample_demos(labels, 4, 8, 0)
    # an excluded row (the query itself, when the pool is the eval set) is never drawn
    for index in range(30):
        assert 5 not in demo_order(labels, 0, index, exclude=frozenset({5}))
    with pytest.raises(BertctlError, match="fewer than 50 shots"):
        sample_demos(labels, 50, 0, 0)


def test_pool_rows_equal_to_a_query_are_dropped(tmp_path):
    rows = [{"text": f"t{i % 12}", "label": "positive" if i % 2 else "negative"} for i in range(40)]  # many duplicates
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = PromptRecipe(task="sentiment", data={"eval": str(data), "pool_size": 20, "limit": None})
    task = load_task(recipe)
    queries = {r["text"] for r in task.eval_rows}
    assert task.pool_rows and not any(r["text"] in queries for r in task.pool_rows)
    assert any("identical to an eval query" in n for n in task.notes)


def test_builtin_tasks_load_with_their_templates():
    for name, field in (("sentiment", "text"), ("nli", "premise"), ("topic", "text"), ("translate", "en")):
        task = load_task(PromptRecipe(task=name, data={"limit": 6, "pool_size": 12}))
        assert len(task.eval_rows) == 6 and task.pool_rows and task.labelled
        assert "{" + field + "}" in task.input
        assert all(task.label_of(r) in task.words for r in task.eval_rows + task.pool_rows)
    assert set(load_task(PromptRecipe(task="nli", data={"limit": 6})).words) == {"entailment", "neutral",
                                                                                 "contradiction"}
    with pytest.raises(BertctlError, match="unknown task"):
        load_task(PromptRecipe(task="nope"))


# ---------------------------------------------------------------------- scoring


def _hand_logprob(model, context: list[int], option: list[int]) -> float:
    """log p(option | context) from one full forward, log-softmax written out by hand."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([context + option])).logits[0].double()  # (len, vocab)
    total = 0.0
    for j, token in enumerate(option):
        row = logits[len(context) - 1 + j]
        m = row.max().item()
        log_z = m + math.log(sum(math.exp(v - m) for v in row.tolist()))
        total += row[token].item() - log_z
    return total


def test_option_scores_equal_hand_computed_log_softmax(bpe):
    from bertctl.prompting.scoring import encode, score

    model = tiny_llama(len(bpe))
    prompts = ["Review: the melon was bad .\nSentiment: negative\n\nReview: nice\nSentiment:",
               "Review: the laptop was noisy .\nSentiment: "]  # trailing space moves to the options
    requests = encode(bpe, prompts, [" positive", " negative", " the laptop was"])
    assert bpe.decode(requests[1].context).endswith("Sentiment:")
    assert any(len(o) > 1 for r in requests for o in r.options)
    hand = [[_hand_logprob(model, req.context, opt) for opt in req.options] for req in requests]
    for method in ("naive", "batched", "prefix"):
        got = score(model, requests, method, batch_size=2, option_batch=2)
        for req, row, expected in zip(requests, got, hand):
            assert [n for _, n in row] == [len(opt) for opt in req.options]
            assert [lp for lp, _ in row] == pytest.approx(expected, abs=1e-4), method


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_and_prefix_scores_equal_naive(bpe, arch):
    from bertctl.prompting.scoring import choose, encode, score

    build = tiny_llama if arch == "llama" else tiny_gpt2
    model = build(len(bpe), seed=1)
    task = load_task(PromptRecipe(task="sentiment", data={"limit": 7, "pool_size": 16}))
    from bertctl.prompting.prompts import prompts_for

    prompts = prompts_for(task, 2, seed=0)[0] + ["x", "Classify the sentiment of"]  # odd lengths: no shared prefix
    options = [" positive", " negative", " negative sentiment of each review"]
    requests = encode(bpe, prompts, options)
    naive = score(model, requests, "naive")
    for method, kw in (("batched", {"batch_size": 3}), ("prefix", {"batch_size": 4, "option_batch": 5}),
                       ("prefix", {"batch_size": 1}), ("prefix", {"batch_size": 16, "option_batch": 1})):
        got = score(model, requests, method, **kw)
        for a, b in zip(naive, got):
            assert [n for _, n in a] == [n for _, n in b]
            assert max(abs(x - y) for (x, _), (y, _) in zip(a, b)) < 1e-4, (method, kw)
            assert choose([x for x, _ in a]) == choose([y for y, _ in b])


def test_prefix_shares_a_common_prefix_across_queries(bpe, monkeypatch):
    """With one fixed set of demonstrations the prompts share their head; it runs once per batch."""
    import bertctl.prompting.scoring as scoring

    model = tiny_llama(len(bpe))
    widths = []
    real = scoring._forward

    def spy(model, ids, *args, **kwargs):
        widths.append(tuple(ids.shape))
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(scoring, "_forward", spy)
    task = load_task(PromptRecipe(task="sentiment", data={"limit": 8, "pool_size": 16}))
    from bertctl.prompting.prompts import prompts_for

    prompts = prompts_for(task, 3, seed=0, fixed=True)[0]
    requests = scoring.encode(bpe, prompts, [" positive", " negative"])
    scoring.score(model, requests, "prefix", batch_size=8)
    shared = scoring._common_prefix([r.context for r in requests])
    assert shared > 30
    assert widths[0] == (1, shared)  # the shared head, once
    assert widths[1][0] == 8 and widths[1][1] <= max(len(r.context) for r in requests) - shared
    # then only the options' tails (this tokenizer splits " positive"), all 8 x 2 rows in one forward
    longest = max(len(o) for r in requests for o in r.options)
    assert widths[2:] == [(16, longest - 1)]


def test_wordpiece_prompts_start_with_cls_and_options_have_no_sep():
    from bertctl.prompting.scoring import encode, leading_special

    tok = tiny_wordpiece_tokenizer()
    assert leading_special(tok) == [tok.cls_token_id]
    (req,) = encode(tok, ["Review: the melon was bad .\nSentiment:"], [" positive", " negative"])
    assert req.context[0] == tok.cls_token_id and tok.sep_token_id not in req.context
    assert [tok.convert_ids_to_tokens(o) for o in req.options] == [["positive"], ["negative"]]


def test_normalisation_changes_the_choice_as_documented():
    from bertctl.prompting.scoring import choose, normalized

    scores = [(-3.0, 1), (-4.0, 4)]  # short option more likely in total, long one per token
    texts = [" ab", " abcdefghijkl"]
    assert choose(normalized(scores, texts, "none")) == 0
    assert choose(normalized(scores, texts, "tokens")) == 1
    assert choose(normalized(scores, texts, "chars")) == 1


def test_too_long_prompts_fail_before_scoring(bpe):
    from bertctl.prompting.scoring import check_lengths, encode

    model = tiny_gpt2(len(bpe), positions=16)
    requests = encode(bpe, ["Review: the melon was bad .\nSentiment: negative\n\nReview: ok\nSentiment:"],
                      [" positive"])
    with pytest.raises(BertctlError, match="longer than the model's context of 16"):
        check_lengths(requests, model, "tiny at 1 shots")


# ---------------------------------------------------------------- the command


@pytest.mark.slow
def test_cli_sweep_writes_predictions_table_and_plot(cli, bpe, tmp_path):
    folder = save_model(tiny_llama(len(bpe)), bpe, tmp_path / "tiny")
    other = save_model(tiny_gpt2(len(bpe)), bpe, tmp_path / "tiny-gpt2")
    out = tmp_path / "run"
    code, stdout, stderr = cli("prompt", "--shots", "0,1,3", "--model", folder, "--model", other,
                               "--show-prompt", "--out", out, "data.limit=6", "data.pool_size=12")
    assert code == 0, stderr + stdout
    assert "prompt of example 0 at 3 shots" in stdout and "Review: " in stdout
    assert "majority class" in stdout
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 * 3 * 6
    first = preds[0]
    assert set(first["scores"]) == {"positive", "negative"} and first["prediction"] in first["scores"]
    assert first["prompt"].startswith("Classify the sentiment")
    assert all(len(p["demos"]) == p["shots"] for p in preds)
    assert not (out / "results.json").exists()  # one name for every command's results: metrics.json
    assert (out / "recipe.yaml").is_file() and (out / "log.txt").is_file()
    results = json.loads((out / "metrics.json").read_text())
    assert results["best_accuracy"] == max(r["accuracy"] for r in results["rows"])
    assert [(r["model"], r["shots"]) for r in results["rows"]] == [(m, k) for m in ("tiny", "tiny-gpt2")
                                                                   for k in (0, 1, 3)]
    for row in results["rows"]:
        mine = [p for p in preds if p["model"] == row["model"] and p["shots"] == row["shots"]]
        assert row["accuracy"] == pytest.approx(sum(p["correct"] for p in mine) / 6)
    assert results["majority"]["accuracy"] == pytest.approx(0.5)
    assert "| majority class" in (out / "results.md").read_text()
    assert (out / "accuracy_vs_shots.png").stat().st_size > 1000


@pytest.mark.slow
def test_free_generation_streams_when_rows_have_no_labels(cli, bpe, tmp_path):
    folder = save_model(tiny_llama(len(bpe)), bpe, tmp_path / "tiny")
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"text": "the melon was bad ."}\n{"text": "the film was nice ."}\n')
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "the laptop was noisy .", "label": "negative"}\n'
                    '{"text": "the day was good .", "label": "positive"}\n')
    out = tmp_path / "gen"
    code, stdout, stderr = cli("prompt", "--shots", "1", "--model", folder, "--out", out, "data.eval=" + str(queries),
                               "data.pool=" + str(pool), "generation.max_new_tokens=4")
    assert code == 0, stderr + stdout
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 and all("generation" in p and p["correct"] is None for p in preds)
    assert preds[0]["generation"].strip() and preds[0]["generation"].strip()[:3] in stdout  # it was streamed
    assert not (out / "accuracy_vs_shots.png").exists()


@pytest.mark.slow
def test_pretrain_run_folder_with_wordpiece(cli, tmp_path):
    """A `bertctl pretrain` causal run: GPT-2 + WordPiece tokenizer under <run>/model."""
    tok = tiny_wordpiece_tokenizer()
    save_model(tiny_gpt2(len(tok)), tok, tmp_path / "pretrain-x" / "model")
    out = tmp_path / "run"
    code, stdout, stderr = cli("prompt", "--shots", "2", "--model", tmp_path / "pretrain-x", "--out", out,
                               "data.limit=4", "data.pool_size=8")
    assert code == 0, stderr + stdout
    results = json.loads((out / "metrics.json").read_text())
    assert results["rows"][0]["model"] == "pretrain-x" and results["rows"][0]["n"] == 4


def test_cli_errors_are_one_line(cli, tmp_path):
    code, _, err = cli("prompt", "--shots", "1,x")
    assert code == 2 and "--shots" in err
    code, _, err = cli("prompt", "--task", "nope", "--out", tmp_path / "a")
    assert code == 2 and "unknown task" in err
    # an encoder-only checkpoint is refused before loading its weights
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"architectures": ["BertForMaskedLM"], "model_type": "bert"}')
    (bert / "model.safetensors").write_bytes(b"")
    code, _, err = cli("prompt", "--model", bert, "--out", tmp_path / "b", "data.limit=2")
    assert code == 2 and "not a causal" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_generation_of_a_labelled_task_reports_exact_match(bpe, tmp_path):
    from bertctl.prompting.run import run_prompt

    folder = save_model(tiny_llama(len(bpe)), bpe, tmp_path / "tiny")
    recipe = PromptRecipe(task="translate", models=[str(folder)], shots=[2], mode="generate",
                          data={"limit": 2, "pool_size": 6}, generation={"max_new_tokens": 3, "stream": False})
    report = run_prompt(recipe, out=tmp_path / "run")
    assert report["mode"] == "generate" and report["rows"][0]["n"] == 2
    assert report["rows"][0]["accuracy"] in (0.0, 0.5, 1.0)
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(isinstance(p["correct"], bool) and "generation" in p for p in preds)
    assert preds[0]["prompt"].startswith("Translate English words into Xx.\n\nEnglish: ")


def test_contextual_calibration_subtracts_the_content_free_scores(bpe, tmp_path):
    from bertctl.prompting.prompts import content_free_prompts, prompts_for
    from bertctl.prompting.run import run_prompt

    folder = save_model(tiny_llama(len(bpe)), bpe, tmp_path / "tiny")
    recipe = PromptRecipe(models=[str(folder)], shots=[2], data={"limit": 3, "pool_size": 8},
                          scoring={"calibrate": True})
    run_prompt(recipe, out=tmp_path / "run")
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    for p in preds:
        for label, value in p["scores"].items():
            assert value == pytest.approx(p["logprobs"][label] - p["content_free_logprobs"][label])
        assert p["prediction"] == max(p["scores"], key=p["scores"].get)
    task = load_task(recipe)
    prompts, demos = prompts_for(task, 2, 0)
    free = content_free_prompts(task, demos)
    assert free[0].endswith("Review: N/A\nSentiment:")
    assert free[0].rsplit("\n\n", 1)[0] == prompts[0].rsplit("\n\n", 1)[0]  # same description and demos
