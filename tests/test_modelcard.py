"""Model cards in every model/ folder (parsed back with huggingface_hub), and `bertctl push`."""

from __future__ import annotations

import json

import pytest

from bertctl.runs import Run

from .helpers import recipe, PRETRAIN

pytestmark = pytest.mark.slow


def _metrics(card) -> dict:
    return {r.metric_type: r.metric_value for r in card.data.eval_results}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny):
    from bertctl.finetune.run import finetune

    path = tmp_path_factory.mktemp("card") / "lora"
    finetune(recipe(tiny, "nli", method="lora", merge=True), Run.create(path, "finetune"), quiet=True)
    return path


def test_finetune_card_parses_and_its_metrics_equal_metrics_json(lora_run):
    from huggingface_hub import ModelCard

    summary = json.loads((lora_run / "metrics.json").read_text())
    for folder, library in (("model", "peft"), ("merged", "transformers")):
        card = ModelCard.load(lora_run / folder / "README.md")
        assert card.data.library_name == library and card.data.pipeline_tag == "text-classification"
        assert {"bertctl", "nli", "lora"} <= set(card.data.tags)
        assert _metrics(card) == summary["dev"]
        assert card.data.eval_results[0].task_name == "nli" and card.data.eval_results[0].dataset_split == "dev"
        text = card.text
        for part in ("## Recipe", "command: finetune", "## Command", "bertctl finetune", "training time:",
                     "hardware: CPU", "torch "):
            assert part in text, part
    assert card.data.base_model is None  # a local folder is not a Hub model


def test_pretrain_card_holds_the_held_out_metrics(tmp_path):
    from huggingface_hub import ModelCard

    from bertctl.pretraining.config import PretrainRecipe
    from bertctl.pretraining.run import pretrain
    from bertctl.recipe import load

    r, _ = load(PretrainRecipe, None, [*PRETRAIN, f"data.cache_dir={tmp_path / 'cache'}"], default="pretrain")
    metrics = pretrain(r, Run.create(tmp_path / "p", "pretrain"))
    card = ModelCard.load(tmp_path / "p" / "model" / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "fill-mask"
    got = _metrics(card)
    assert got["mlm_accuracy"] == metrics["mlm_accuracy"] and got["nsp_accuracy"] == metrics["nsp_accuracy"]
    assert "unigram_accuracy" in got and "parameters" not in got


def test_hub_ids_and_datasets():
    from bertctl.modelcard import dataset_of, hub_id
    from bertctl.finetune.config import FinetuneRecipe

    assert hub_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id("bert-base-uncased (hub)") == "bert-base-uncased" and hub_id("/tmp/x") is None
    assert hub_id("runs/pretrain-1/model/x/y") is None
    r = FinetuneRecipe.model_validate({"data": {"train": "/d/SST-2/train.tsv", "dev": "/d/SST-2/dev.tsv"}})
    assert dataset_of(r) == ("nyu-mll/glue", "glue/sst2")
    assert dataset_of(FinetuneRecipe())[1] == "bertctl-world"


def test_cli_card_quotes_the_exact_command(cli, tmp_path, tiny):
    args = ["finetune", "--task", "regression", "--out", str(tmp_path / "r"), f"model.name_or_path={tiny}",
            "data.world.train=32", "data.world.dev=16", "train.epochs=1", "train.precision=fp32"]
    code, _, err = cli(*args)
    assert code == 0, err
    text = (tmp_path / "r" / "model" / "README.md").read_text()
    import shlex

    assert "bertctl " + shlex.join(args) in text


def test_push_offline_is_one_line_and_online_uploads_the_folder(cli, lora_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli("push", lora_run, "me/model")
    assert code == 2 and "HF_HUB_OFFLINE is set" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("finetune", "--task", "cls", "--push-to-hub", "me/m", "--out", tmp_path / "never")
    assert code == 2 and "HF_HUB_OFFLINE" in err and not (tmp_path / "never").exists()  # refused before training
    code, _, err = cli("push", tmp_path, "me/model")
    assert code == 2 and "has no model/" in err

    calls = {}

    class FakeApi:
        def create_repo(self, repo, private=False, exist_ok=False):
            calls["repo"] = (repo, private)
            return f"https://huggingface.co/{repo}"

        def upload_folder(self, repo_id, folder_path, **kw):
            calls["folder"] = folder_path

    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    code, out, err = cli("push", lora_run, "me/model", "--merged", "--private")
    assert code == 0, err
    assert calls == {"repo": ("me/model", True), "folder": str(lora_run / "merged")}
    assert "https://huggingface.co/me/model" in out
