"""Recipes: YAML files validated by pydantic, with dotted `key=value` overrides.

A recipe is the whole configuration of a run. Every command has one schema (a pydantic
model with `extra="forbid"`), so a typo is an error naming the key and the valid choices,
never a silently ignored setting. Built-in recipes live in `bertctl/recipes/` (the
repository's `recipes/` points there) so they ship with the installed package.

Loading order (why): the file is validated first with relative paths resolved against
the recipe's own folder, then the command-line overrides are applied on top and the
result validated again with paths resolved against the working directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

from bertctl.errors import BertctlError

RECIPES_DIR = Path(__file__).parent / "recipes"


class Section(BaseModel):
    """Base of every recipe block: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def _resolve_path(value: str | None, info: ValidationInfo) -> str | None:
    """Make a relative path absolute against the recipe's folder (or the cwd for overrides).

    A value that is not an existing relative path and does not start with '.' is left
    alone: it may be a hub id ("bert-base-uncased") or a name the code understands.
    """
    if value is None or value == "" or os.path.isabs(value) or "://" in value:
        return value
    base = Path((info.context or {}).get("base", "."))
    candidate = base / value
    if value.startswith(".") or candidate.exists():
        return str(candidate.resolve())
    return value


PathStr = Annotated[str, AfterValidator(_resolve_path)]
OptionalPath = Annotated[str | None, AfterValidator(_resolve_path)]
Precision = Literal["bf16", "fp32", "fp16"]


# ----------------------------------------------------------------------------- files


def builtin_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.yaml"))}


def find_recipe(source: str) -> Path:
    """A path to a YAML file, or the name of a built-in recipe (with or without .yaml)."""
    path = Path(source)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        return path
    builtins = builtin_recipes()
    name = path.stem if path.suffix in {".yaml", ".yml"} else source
    if name in builtins and not path.is_file():  # a folder named like a built-in (runs/pretrain, ./prompt) is no recipe
        return builtins[name]
    if path.exists():
        if path.is_dir():
            raise BertctlError(f"recipe {source} is a folder", fix="pass a .yaml file")
        return path
    raise BertctlError(
        f"no recipe named {source}",
        fix=f"pass a YAML path or one of: {', '.join(builtins) or '(none)'} (see `bertctl recipes list`)",
    )


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BertctlError(f"recipe {path} is not UTF-8 text", fix="save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)  # never yaml.load: a recipe must not construct objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BertctlError(f"recipe {path}{where}: malformed YAML ({problem})", fix="fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BertctlError(f"recipe {path} must be a mapping of keys to values, not {type(data).__name__}",
                           fix="write it as `key: value` lines")
    return data


# ------------------------------------------------------------------------- overrides


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise BertctlError(f"override '{item}' is not key=value", fix="write overrides like train.lr=3e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise BertctlError(f"override '{item}' has an empty key", fix="write overrides like train.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = _deep_copy(data)
    for item in overrides:
        parts, value = parse_override(item)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise BertctlError(f"override '{item}': {part} is a value, not a section",
                                   fix=f"set {'.'.join(parts[:parts.index(part) + 1])} directly")
            node = child
        node[parts[-1]] = value
    return data


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


# ------------------------------------------------------------------------ validation


def _field_choices(schema: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at the place where an unknown key was found (for the error line)."""
    model: Any = schema
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
        # unwrap Optional[Section]
        for arg in getattr(model, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
    return list(getattr(model, "model_fields", {}))


def describe_errors(e: ValidationError, schema: type[BaseModel], source: str) -> str:
    problems = []
    for err in e.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            choices = _field_choices(schema, loc)
            problems.append(f"{key}: unknown key (valid: {', '.join(choices)})")
        elif isinstance(err.get("input"), dict):  # a whole section failed a check: the message says why
            problems.append(f"{key}: {err['msg'].lower()}")
        else:
            problems.append(f"{key}: {err['msg'].lower()}, got {err.get('input')!r}")
    return f"recipe {source}: " + "; ".join(problems)


def validate(schema: type[BaseModel], data: dict, source: str, base: Path) -> BaseModel:
    try:
        return schema.model_validate(data, context={"base": str(base)})
    except ValidationError as e:
        raise BertctlError(describe_errors(e, schema, source), fix="fix these keys (see `bertctl recipes show`)") from None


def load(schema: type[BaseModel], source: str | None, overrides: list[str], default: str) -> tuple[BaseModel, Path]:
    """Read, override and validate a recipe. Returns the recipe and the file it came from."""
    path = find_recipe(source or default)
    data = read_yaml(path)
    command = data.pop("command", None)
    expected = schema.model_fields["command"].default if "command" in schema.model_fields else None
    if expected and command and command != expected:
        raise BertctlError(f"recipe {path.name} is for `bertctl {command}`, not `bertctl {expected}`",
                           fix=f"run `bertctl {command} {path}` or pick a {expected} recipe")
    file_recipe = validate(schema, data, path.name, path.parent.resolve())
    if not overrides:
        return file_recipe, path
    merged = apply_overrides(file_recipe.model_dump(), overrides)
    return validate(schema, merged, f"{path.name} (with overrides)", Path.cwd()), path


def dump(recipe: BaseModel) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------- `bertctl recipes ...`


def schema_for(command: str) -> type[BaseModel]:
    """Schemas are imported lazily so `bertctl --help` never pays for them."""
    from importlib import import_module

    table = {
        "pretrain": "bertctl.pretraining.config:PretrainRecipe",
        "finetune": "bertctl.tasks.config:FinetuneRecipe",
        "eval-glue": "bertctl.glue:GlueRecipe",
        "probe": "bertctl.probe.config:ProbeRecipe",
        "prompt": "bertctl.prompt:PromptRecipe",
    }
    if command not in table:
        raise BertctlError(f"unknown command '{command}' in recipe", fix=f"use one of: {', '.join(table)}")
    module, name = table[command].split(":")
    return getattr(import_module(module), name)


def validate_file(path: Path) -> BaseModel:
    data = read_yaml(path)
    command = data.pop("command", None)
    if command is None:
        raise BertctlError(f"recipe {path} has no `command:` key", fix="add e.g. `command: pretrain` at the top")
    return validate(schema_for(command), data, path.name, path.parent.resolve())


def launch_line(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def copy_recipe(name: str, dest: Path) -> Path:
    src = find_recipe(name)
    dest = dest / src.name if dest.is_dir() else dest
    if dest.exists():
        raise BertctlError(f"{dest} already exists", fix="choose another destination or delete it first")
    shutil.copyfile(src, dest)
    return dest
