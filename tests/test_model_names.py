"""One way to name a model in every recipe: `recipe.ModelName`, and one default
(`models.recipe_model`: the recipe's model, else the newest finished pretrain run, else minilm)."""

from __future__ import annotations

import json

import pytest

# command -> (recipe text naming a model at ./m, how to read the resolved name back)
RECIPES = {
    "finetune": ("command: finetune\nmodel:\n  name_or_path: {name}\n", lambda r: r.model.name_or_path),
    "eval-glue": ("command: eval-glue\nmodel:\n  name_or_path: {name}\n", lambda r: r.model.name_or_path),
    "pretrain": ("command: pretrain\nmodel:\n  init: {name}\n", lambda r: r.model.init),
    "probe": ("command: probe\nmodel:\n  name_or_path: {name}\n", lambda r: r.model.name_or_path),
    "prompt": ("command: prompt\nmodels: [{name}]\n", lambda r: r.models[0]),
}


@pytest.mark.parametrize("command", RECIPES)
def test_a_relative_model_path_resolves_against_the_recipes_folder(command, tmp_path, monkeypatch):
    from bertctl.recipe import validate_file

    text, read = RECIPES[command]
    folder = tmp_path / "recipes"
    (folder / "m").mkdir(parents=True)
    (folder / "r.yaml").write_text(text.format(name="m"), encoding="utf-8")
    (folder / "dot.yaml").write_text(text.format(name="./m"), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the recipe's folder: the path must not depend on the cwd
    assert read(validate_file(folder / "r.yaml")) == str((folder / "m").resolve())
    assert read(validate_file(folder / "dot.yaml")) == str((folder / "m").resolve())


@pytest.mark.parametrize("command", RECIPES)
def test_hub_ids_and_names_stay_as_typed(command, tmp_path, monkeypatch):
    from bertctl.recipe import validate_file

    text, read = RECIPES[command]
    monkeypatch.chdir(tmp_path)
    for name in ("bert-base-multilingual-cased", "google-bert/bert-base-uncased", "minilm"):
        (tmp_path / "r.yaml").write_text(text.format(name=name), encoding="utf-8")
        assert read(validate_file(tmp_path / "r.yaml")) == name


def test_keywords_are_not_hijacked_by_a_folder_of_that_name(tmp_path, monkeypatch):
    from bertctl.recipe import validate_file

    (tmp_path / "scratch").mkdir()
    (tmp_path / "r.yaml").write_text("command: pretrain\nmodel:\n  init: scratch\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert validate_file(tmp_path / "r.yaml").model.init == "scratch"


def test_the_default_model_is_the_newest_finished_pretrain_run_else_minilm(tmp_path, monkeypatch):
    from bertctl.finetune.methods import pick_model
    from bertctl.models import recipe_model
    from bertctl.probe.config import ProbeRecipe
    from bertctl.probe.start import model_name

    monkeypatch.chdir(tmp_path)
    assert recipe_model("some/model") == ("some/model", "")
    assert recipe_model(None)[0] == "minilm"
    assert model_name(ProbeRecipe()) == "minilm"
    assert pick_model(None)[1].startswith("model: minilm, the embedded all-MiniLM-L6-v2 (no `bertctl pretrain` run")

    run = tmp_path / "runs" / "mine"  # what a finished `bertctl pretrain` leaves
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}", encoding="utf-8")
    (run / "metrics.json").write_text("{}", encoding="utf-8")
    (run / "recipe.yaml").write_text("command: pretrain\n", encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"command": "pretrain", "status": "finished",
                                              "finished": "2026-01-01T00:00:00"}), encoding="utf-8")
    name, why = recipe_model(None)
    assert name == "runs/mine" and "latest `bertctl pretrain` run" in why
    assert model_name(ProbeRecipe()) == "runs/mine"


def test_embedded_names_are_not_hijacked_by_a_folder_of_that_name(tmp_path, monkeypatch):
    """A folder called minilm next to the recipe (or in the cwd) must not replace the
    embedded model."""
    from bertctl.embedded import EMBEDDED
    from bertctl.recipe import validate_file

    monkeypatch.chdir(tmp_path)
    for name in EMBEDDED:
        (tmp_path / name).mkdir()
        for text, read in RECIPES.values():
            (tmp_path / "r.yaml").write_text(text.format(name=name), encoding="utf-8")
            assert read(validate_file(tmp_path / "r.yaml")) == name
