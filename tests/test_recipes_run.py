"""Every shipped recipe (bertctl/recipes/*.yaml) runs end to end, at tiny size, through the
CLI: the recipe as written, with key=value overrides that only make it small (a tiny model,
a few rows, one epoch). A new recipe is picked up here by itself. Recipes that read
../shared/data skip where it is absent; hub-only models (mBERT) are replaced by a tiny one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bertctl.recipe import builtin_recipes, read_yaml

from .conftest import ROOT, SHARED_DATA
from .helpers import make_glue, save_model, tiny_bpe_tokenizer, tiny_llama

RECIPES = sorted(builtin_recipes())
PRETRAIN = ["data.world.n_docs=60", "tokenizer.vocab_size=200", "model.hidden=32", "model.heads=2",
            "model.intermediate=64", "model.layers=1", "model.max_length=32", "train.max_steps=4",
            "train.batch_size=8", "train.precision=fp32", "train.eval_every=0", "eval.max_sequences=16"]
SMALL_TRAIN = ["train.epochs=1", "train.batch_size=8", "train.precision=fp32", "train.warmup=0.0"]


def _uses_shared_data(recipe: dict) -> bool:
    # a reproduce recipe runs without ../shared/data (its real-data steps are skipped, with a note)
    return recipe.get("command") != "reproduce" and "shared/data" in json.dumps(recipe)


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory, cli) -> Path:
    """A tiny pretrain run with checkpoints: the model every probe recipe reads."""
    out = tmp_path_factory.mktemp("recipes") / "pretrain"
    code, _, err = cli("pretrain", *PRETRAIN, "data.world.languages=[en,xx]", "train.save_every=2",
                       f"data.cache_dir={out.parent / 'cache'}", "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> Path:
    """The real GLUE folder where ../shared/data has it, else a tiny one made here."""
    if (SHARED_DATA / "glue").is_dir():
        return SHARED_DATA / "glue"
    return make_glue(tmp_path_factory.mktemp("glue"), n=32, tasks=["RTE"])


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    tok = tiny_bpe_tokenizer()
    return save_model(tiny_llama(len(tok)), tok, tmp_path_factory.mktemp("lm") / "tiny-llama")


def _argv(name: str, recipe: dict, out: Path, tiny: Path, request) -> list[str]:
    """The command line that runs recipe `name` tiny."""
    command = recipe["command"]
    if command == "pretrain":
        init = [f"model.init={tiny}"] if recipe.get("model", {}).get("init", "scratch") != "scratch" else []
        shape = [] if init else PRETRAIN[1:7]  # a checkpoint brings its own shape and vocabulary
        corpus = ["data.max_docs=40"] if recipe.get("data", {}).get("source") else PRETRAIN[:1]  # real text: a few documents
        return ["pretrain", name, *corpus, *shape, *PRETRAIN[7:], *init, f"data.cache_dir={out.parent / 'cache'}",
                "--out", out]
    if command == "finetune":
        files = bool((recipe.get("data") or {}).get("train") or (recipe.get("data") or {}).get("hf"))
        size = (["data.max_train_samples=32", "data.max_eval_samples=16", f"data.root={SHARED_DATA}"] if files
                else ["data.world.train=32", "data.world.dev=16"])
        if recipe.get("data", {}).get("test"):
            size.append("data.max_eval_samples=16")
        qa = ["qa.doc_stride=32"] if recipe.get("task") == "qa" else []
        return ["finetune", name, f"model.name_or_path={tiny}", "model.max_length=128", *size, *qa, *SMALL_TRAIN,
                "--out", out]
    if command == "eval-glue":
        return ["eval-glue", name, "--glue-dir", request.getfixturevalue("glue_dir"), "--tasks", "RTE", "--seeds", "1",
                f"model.name_or_path={tiny}", "model.max_length=64", "max_train_rows=32", "max_eval_rows=16",
                "max_test_rows=16", *SMALL_TRAIN, "--out", out]
    if command == "probe":
        run = request.getfixturevalue("pretrain_run")
        sub = recipe.get("subcommand") or "similarity"
        return ["probe", sub, name, f"model.name_or_path={run}", "--out", out]
    if command == "prompt":
        lm = request.getfixturevalue("tiny_lm")
        return ["prompt", name, "--model", lm, "data.limit=6", "data.pool_size=8", "--out", out]
    if command == "reproduce":  # the smoke profile, one quick experiment (the whole profile: test_reproduce.py)
        return ["reproduce", name, "--profile", "smoke", "--only", "apple", "--out", out]
    raise AssertionError(f"no tiny command line for `{command}` recipes: add one here")


def _numbers(metrics) -> list[float]:
    if isinstance(metrics, dict):
        return [x for v in metrics.values() for x in _numbers(v)]
    if isinstance(metrics, list):
        return [x for v in metrics for x in _numbers(v)]
    return [float(metrics)] if isinstance(metrics, (int, float)) and not isinstance(metrics, bool) else []


@pytest.mark.parametrize("name", RECIPES)
def test_every_shipped_recipe_runs_tiny(name, tmp_path, tiny, cli, request, monkeypatch):
    recipe = read_yaml(builtin_recipes()[name])
    if _uses_shared_data(recipe) and not SHARED_DATA.is_dir():
        pytest.skip("reads ../shared/data, absent here")
    # real-data recipes name ../shared/data from the project root, as the README runs them
    monkeypatch.chdir(ROOT if _uses_shared_data(recipe) else tmp_path)
    out = tmp_path / "out"
    code, stdout, err = cli(*_argv(name, recipe, out, tiny, request))
    assert code == 0, f"{name}: {err[-3000:]}"
    metrics = out / "metrics.json"
    assert metrics.is_file(), f"{name} wrote no metrics.json: {sorted(p.name for p in out.iterdir())}"
    summary = json.loads(metrics.read_text())
    if recipe["command"] in ("finetune", "pretrain"):  # it trained: steps were taken and logged
        assert (out / "metrics.jsonl").read_text().count('"loss"') >= 1, name
    numbers = _numbers(summary)
    assert numbers and all(math.isfinite(x) for x in numbers if x is not None), name
    if recipe["command"] == "finetune":
        assert summary["main_metric"] in summary["dev"], name
