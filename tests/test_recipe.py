"""Recipes: validation errors name file, key and choices; overrides; path resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from bertctl.errors import BertctlError
from bertctl.recipe import RECIPES_DIR, Section, apply_overrides, builtin_recipes, load, validate_file, PathStr


class Inner(Section):
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"


class Demo(Section):
    command: Literal["demo"] = "demo"
    train: Inner = Inner()
    data: PathStr = "corpus.txt"
    name: str = "x"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_every_builtin_recipe_validates_and_has_a_launch_line():
    recipes = builtin_recipes()
    assert recipes, "recipes/ is empty"
    for name, path in recipes.items():
        first = path.read_text().splitlines()[0]
        assert first.startswith("# bertctl "), f"{name}: first line must be the launch command, got {first!r}"
        validate_file(path)  # raises on any problem


def test_repo_recipes_folder_is_the_packaged_one():
    assert (Path(__file__).resolve().parents[1] / "recipes").resolve() == RECIPES_DIR.resolve()


def test_unknown_key_and_wrong_type_reported_together(tmp_path):
    path = write(tmp_path, "train:\n  lrr: 1\n  mode: c\nname: [1]\n")
    with pytest.raises(BertctlError) as e:
        load(Demo, str(path), [], "unused")
    msg = e.value.line()
    assert "r.yaml" in msg
    assert "train.lrr: unknown key (valid: lr, mode)" in msg
    assert "train.mode" in msg and "'a'" in msg and "'c'" in msg
    assert "name:" in msg


def test_malformed_yaml_names_line(tmp_path):
    path = write(tmp_path, "train:\n  lr: [1, 2\nname: x\n")
    with pytest.raises(BertctlError, match=r"line \d+.*malformed YAML"):
        load(Demo, str(path), [], "unused")


def test_not_a_mapping(tmp_path):
    with pytest.raises(BertctlError, match="mapping"):
        load(Demo, str(write(tmp_path, "- a\n- b\n")), [], "unused")


def test_overrides_parse_types_and_nest(tmp_path):
    recipe, _ = load(Demo, str(write(tmp_path, "train:\n  lr: 0.1\n")), ["train.lr=3e-4", "train.mode=b", "name=hello"], "x")
    assert recipe.train.lr == pytest.approx(3e-4) and recipe.train.mode == "b" and recipe.name == "hello"


def test_override_errors(tmp_path):
    path = str(write(tmp_path, ""))
    with pytest.raises(BertctlError, match="not key=value"):
        load(Demo, path, ["train.lr"], "x")
    with pytest.raises(BertctlError, match="unknown key"):
        load(Demo, path, ["train.nope=1"], "x")
    with pytest.raises(BertctlError, match="is a value, not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_relative_paths_resolve_against_recipe_folder(tmp_path, monkeypatch):
    (tmp_path / "corpus.txt").write_text("hi")
    recipe, _ = load(Demo, str(write(tmp_path, "data: corpus.txt\n")), [], "x")
    assert recipe.data == str((tmp_path / "corpus.txt").resolve())
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    monkeypatch.chdir(other)
    recipe, _ = load(Demo, str(tmp_path / "r.yaml"), ["data=mine.txt"], "x")
    assert recipe.data == str((other / "mine.txt").resolve())


def test_wrong_command_recipe(tmp_path):
    with pytest.raises(BertctlError, match="is for `bertctl finetune`"):
        load(Demo, str(write(tmp_path, "command: finetune\n")), [], "x")


def test_unknown_recipe_name_lists_builtins():
    with pytest.raises(BertctlError, match="no recipe named nope"):
        load(Demo, "nope", [], "x")


def test_yaml_is_never_executed(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(BertctlError, match="malformed YAML"):
        load(Demo, str(path), [], "x")
