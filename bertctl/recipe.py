"""Recipes: YAML files validated by pydantic, with dotted `key=value` overrides.

A recipe is the whole configuration of a run. Every command has one schema (a pydantic
model with `extra="forbid"`), so a typo is an error naming the key and the valid choices,
never a silently ignored setting. Built-in recipes live in `bertctl/recipes/` (the
repository's `recipes/` points there) so they ship with the installed package.

Types are strict (why): YAML 1.1 reads `no` as false, `2024-01-01` as a date and
`010` as 8, and pydantic's lax mode then turns `true` into 1 or "yes" into True, so a
recipe could quietly mean something else than it says. Recipes are read with YAML 1.2's
core rules (only true/false are booleans, no dates, `1e-4` is a number), validated in
pydantic's strict mode (no bool<->number<->text conversions; an int is still a valid
float), and a key given twice is an error naming both lines instead of "the last wins".

Loading order (why): the file is validated first with relative paths resolved against
the recipe's own folder, then the command-line overrides are applied on top and the
result validated again with paths resolved against the working directory.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo

from bertctl.embedded import EMBEDDED
from bertctl.errors import BertctlError

RECIPES_DIR = Path(__file__).parent / "recipes"


class Section(BaseModel):
    """Base of every recipe block: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), strict=True)


def _resolve_path(value: str | None, info: ValidationInfo) -> str | None:
    """Make a relative path absolute against the recipe's folder (or the cwd for overrides).

    A value that is not an existing relative path and does not start with '.' is left
    alone: it may be a hub id ("bert-base-uncased") or a name the code understands.
    """
    if value is None or value == "" or os.path.isabs(value) or "://" in value:
        return value
    base = Path((info.context or {}).get("base", "."))
    candidate = base / value
    try:
        exists = candidate.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: no such file
        exists = False
    if value.startswith(".") or exists:
        try:
            return str(candidate.resolve())
        except (OSError, RuntimeError):  # a link loop: left for the reader to report
            return str(candidate.absolute())
    return value


PathStr = Annotated[str, AfterValidator(_resolve_path)]
OptionalPath = Annotated[str | None, AfterValidator(_resolve_path)]

# the words a model field takes that are no paths: a folder that happens to be called
# `scratch` next to the recipe must not hijack `scratch`
MODEL_KEYWORDS = ("scratch", "auto", "train")


def _model_name(value: str, info: ValidationInfo) -> str:
    # nor may a folder called `minilm` in the working directory hijack the embedded minilm
    if value in MODEL_KEYWORDS or value.lower() in EMBEDDED:
        return value
    return _resolve_path(value, info)


# One way to name a model in every recipe (finetune, pretrain, probe, prompt, eval-glue): a
# bertctl run folder, a local Hugging Face folder or .gguf file, a hub id, an embedded name
# (minilm, smollm2) or a keyword of the field. A relative path resolves like PathStr:
# against the recipe's folder (overrides: the current directory).
ModelName = Annotated[str, AfterValidator(_model_name)]
# auto: the fastest correct format for the hardware the command runs on (bertctl/precision.py)
Precision = Literal["auto", "bf16", "fp32", "fp16"]
# YAML has no tuples: a recipe writes [0, -1] (strict mode alone would refuse the list)
IntPair = Annotated[tuple[int, int], BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)]


# ----------------------------------------------------------------------------- YAML

_BOOL, _INT, _FLOAT, _TIME = ("tag:yaml.org,2002:" + t for t in ("bool", "int", "float", "timestamp"))


class _DuplicateKey(Exception):
    def __init__(self, key, line: int, first: int):
        self.key, self.line, self.first = key, line, first


class RecipeLoader(yaml.SafeLoader):
    """yaml.SafeLoader with YAML 1.2 core-schema scalars and duplicate keys refused."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: the base class reports it as malformed YAML
                break
        return super().construct_mapping(node, deep=deep)


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIME)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
RecipeLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                   list("-+0123456789"))
RecipeLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))
# "010" is 10, not octal 8; 0o17 and 0x1f are the explicit forms
RecipeLoader.add_constructor(_INT, lambda loader, node: (
    lambda v: int(v, 0) if v[:2].lower() in ("0o", "0x") else int(v))(loader.construct_scalar(node)))

_MAX_VALUES = 100_000  # aliases can make a small file expand into a huge tree ("billion laughs")


def _count(value, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError
    for child in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _count(child, budget)


def parse_yaml(text: str) -> Any:
    """The YAML rules of recipes (see the module docstring); raises yaml.YAMLError or _DuplicateKey."""
    loader = RecipeLoader(text)  # what yaml.safe_load does, with these rules
    try:
        return loader.get_single_data()
    except (ValueError, TypeError, AttributeError, OverflowError) as e:
        # PyYAML's constructors fail this way on explicitly tagged values (!!int abc, !!timestamp 2020-13-45)
        raise yaml.constructor.ConstructorError(problem=f"a value that cannot be read ({type(e).__name__})") from None
    finally:
        loader.dispose()


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


def recipe_text(path: Path) -> str:
    """A recipe file's text; not UTF-8, unreadable or a folder: one error line."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BertctlError(f"recipe {path} is not UTF-8 text", fix="save it as UTF-8") from None
    except OSError as e:  # a folder named x.yaml, a broken link, no permission
        raise BertctlError(f"cannot read recipe {path} ({e.strerror or e})", fix="pass a readable .yaml file") from None


def read_yaml(path: Path) -> dict:
    text = recipe_text(path)
    try:
        data = parse_yaml(text)  # a SafeLoader: a recipe must never construct objects
    except _DuplicateKey as e:
        raise BertctlError(f"recipe {path} line {e.line}: key {e.key!r} is given twice (first on line {e.first})",
                           fix="keep one of them (YAML would silently use the last)") from None
    except (yaml.YAMLError, RecursionError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise BertctlError(f"recipe {path}{where}: malformed YAML ({problem})", fix="fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BertctlError(f"recipe {path} must be a mapping of keys to values, not {type(data).__name__}",
                           fix="write it as `key: value` lines")
    try:
        _count(data, [_MAX_VALUES])
    except (ValueError, RecursionError):
        raise BertctlError(f"recipe {path} expands to more than {_MAX_VALUES:,} values (YAML aliases?)",
                           fix="write the recipe out without nested aliases") from None
    bad = next((k for k in _keys(data) if not isinstance(k, str)), None)
    if bad is not None:
        raise BertctlError(f"recipe {path}: key {bad!r} is a {type(bad).__name__}, not a name",
                           fix="recipe keys are names such as `train:` or `lr:` (quote it if it is one)")
    return data


def _keys(data: dict, skip: tuple = ("labels", "per_task")):
    """Every key of the nested sections (the values of label maps may have any keys)."""
    for key, value in data.items():
        yield key
        if isinstance(value, dict) and key not in skip:
            yield from _keys(value, skip)


# ------------------------------------------------------------------------- overrides


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise BertctlError(f"override '{item}' is not key=value", fix="write overrides like train.lr=3e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise BertctlError(f"override '{item}' has an empty key", fix="write overrides like train.lr=3e-4")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except (yaml.YAMLError, _DuplicateKey, RecursionError):
        value = raw
    return key.split("."), value


def option_overrides(options: dict[str, Any]) -> list[str]:
    """Command-line options that set recipe keys (`--model X`: model.name_or_path), as the
    overrides `key=value` that say the same thing, so an option and its override go through
    one parser and one validation in every command. None (option not given) is left out;
    the value is written as JSON (YAML 1.2 reads it back as it was), so `--model 1e-4` or
    `--model yes` stays the text it was given, and a path as the str of the path."""
    import json

    return [f"{key}={json.dumps(str(v) if isinstance(v, os.PathLike) else v, ensure_ascii=False)}"
            for key, v in options.items() if v is not None]


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
            problems.append(f"{key}: {err['msg'].lower()}, got {err.get('input')!r}{_type_hint(err)}")
    return f"recipe {source}: " + "; ".join(problems)


def _type_hint(err: dict) -> str:
    """Why a value of the wrong type is refused, when YAML made it so: a name like `no`
    or `1` that YAML reads as a boolean or number, or a boolean given for a number."""
    value, kind = err.get("input"), err["type"]
    if kind == "string_type" and isinstance(value, (bool, int, float)):
        return " (YAML reads that as a " + ("boolean" if isinstance(value, bool) else "number") + ": quote it, e.g. '1')"
    if kind in ("int_type", "float_type") and isinstance(value, bool):
        return " (a boolean is not a number: write the number)"
    if kind in ("int_type", "float_type") and isinstance(value, str):
        return " (text is not a number: write it without quotes)"
    if kind == "bool_type":
        return " (write true or false)"
    return ""


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


def refuse_unused(unused: list[tuple[list[str], str]], path: Path, overrides: list[str]) -> None:
    """Settings that would do nothing in the combination given, as one error: a value the
    run silently ignores is a result the user did not ask for. `unused`: (dotted keys, why).
    Only what the user set counts: an override, or a key of their own recipe file (a
    built-in recipe's World settings are a fallback that data.train= rightly replaces)."""
    given = [o.split("=", 1)[0].strip() for o in overrides]
    own = {} if path.parent.resolve() == RECIPES_DIR.resolve() else read_yaml(path)

    def set_by_user(key: str) -> bool:
        if any(key == g or key.startswith(g + ".") for g in given):
            return True
        node: Any = own
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    found = [(keys, why) for keys, why in ((list(filter(set_by_user, ks)), why) for ks, why in unused) if keys]
    if found:
        (keys, why), rest = found[0], [k for ks, _ in found[1:] for k in ks]
        more = f" (so would {', '.join(rest)})" if rest else ""
        raise BertctlError(f"{', '.join(keys)} would do nothing here: {why}{more}",
                           fix="drop it, or change what it depends on")


def changed(section: BaseModel, default: BaseModel) -> list[str]:
    """The keys of a section whose values differ from the defaults."""
    return [k for k in type(section).model_fields if getattr(section, k) != getattr(default, k)]


def dump(recipe: BaseModel) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def differing_keys(old_text: str, new_text: str) -> list[str]:
    """The dotted keys whose values differ between two recipe texts (comments ignored)."""
    def flat(value, prefix="") -> dict:
        if isinstance(value, dict) and value:
            out = {}
            for k, v in value.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix.rstrip("."): value}

    try:
        old, new = flat(parse_yaml(old_text) or {}), flat(parse_yaml(new_text) or {})
    except (yaml.YAMLError, _DuplicateKey, RecursionError):
        return ["(the recorded recipe.yaml is unreadable)"]
    return sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))


# --------------------------------------------------------------- `bertctl recipes ...`


def schema_for(command: str) -> type[BaseModel]:
    """Schemas are imported lazily so `bertctl --help` never pays for them."""
    from importlib import import_module

    table = {
        "pretrain": "bertctl.pretraining.config:PretrainRecipe",
        "finetune": "bertctl.finetune.config:FinetuneRecipe",
        "eval-glue": "bertctl.glue:GlueRecipe",
        "probe": "bertctl.probe.config:ProbeRecipe",
        "prompt": "bertctl.prompting.config:PromptRecipe",
        "reproduce": "bertctl.reproduce.config:ReproduceRecipe",
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
    """Copy a recipe to dest (a folder, or a file path whose missing folders are made)."""
    src = find_recipe(name)
    dest = dest / src.name if dest.is_dir() else dest
    if dest.exists():
        raise BertctlError(f"{dest} already exists", fix="choose another destination or delete it first")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    except OSError as e:  # a file where a folder should be, no permission
        raise BertctlError(f"cannot write {dest} ({e.strerror or e})", fix="choose a destination you can write") from None
    return dest
