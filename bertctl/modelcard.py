"""Model cards: a README.md in every model/ (and merged/) folder, in the Hugging Face format.

YAML front matter (library_name, base_model, datasets, pipeline_tag, tags, model-index with
the task and its dev metrics), then the results, the resolved recipe, the exact command,
training time, hardware and versions. The front matter is made with huggingface_hub's own
ModelCardData, so the Hub (and `ModelCard.load`) reads it as written.

    finetune_card(run, recipe, summary, task)   after `bertctl finetune` wrote metrics.json
    pretrain_card(run, recipe, metrics)   after `bertctl pretrain` wrote metrics.json
"""

from __future__ import annotations

import re
from pathlib import Path

from bertctl.runs import Run, atomic_write_text

# what `bertctl` calls a model -> its id on the Hub
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2",
           "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
GLUE_FOLDERS = {"CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI"}


def hub_id(name: str | None) -> str | None:
    """The Hub id of a model name, or None for local folders and runs (not on the Hub)."""
    if not name:
        return None
    name = name.split(" (")[0]
    if name.lower() in HUB_IDS:
        return HUB_IDS[name.lower()]
    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return None
    return name if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name) else None


def dataset_of(recipe) -> tuple[str | None, str]:
    """(Hub dataset id or None, dataset type for model-index) of a finetune recipe."""
    d = recipe.data
    if d.hf is not None:
        return (d.hf.name if hub_id(d.hf.name) else None), d.hf.name
    if d.source == "world":
        return None, "bertctl-world"
    folder = Path(d.dev or d.train or "").parent.name
    if folder in GLUE_FOLDERS:
        return "nyu-mll/glue", f"glue/{folder.lower().replace('-', '')}"
    return None, Path(d.dev or d.train or "local").stem


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def front_matter(*, library: str, base_model: str | None, datasets: list[str], pipeline_tag: str | None,
                 tags: list[str], name: str, task: str, dataset_type: str, dataset_name: str, split: str,
                 metrics: dict) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    results = [EvalResult(task_type=pipeline_tag or "other", task_name=task, dataset_type=dataset_type,
                          dataset_name=dataset_name, dataset_split=split, metric_type=k, metric_value=v,
                          metric_name=f"{split} {k}") for k, v in _numbers(metrics).items()]
    data = ModelCardData(library_name=library, base_model=base_model, datasets=datasets or None,
                         pipeline_tag=pipeline_tag, tags=tags, model_name=name, eval_results=results or None)
    return f"---\n{data.to_yaml()}\n---\n"


def precision_line(metrics: dict) -> list[str]:
    """The card's line on the precision the run trained in (older runs recorded none)."""
    p = metrics.get("precision")
    if not isinstance(p, dict) or "used" not in p:
        return []
    return [f"precision: {p['used']} (asked: {p.get('requested')}; {p.get('reason')})"]


def _table(metrics: dict) -> str:
    rows = "".join(f"| {k} | {v:.4f} |\n" if isinstance(v, float) else f"| {k} | {v} |\n"
                   for k, v in _numbers(metrics).items())
    return "| metric | value |\n|---|---|\n" + rows


def _body(title: str, intro: str, results_title: str, metrics: dict, recipe_text: str, command: str,
          training: list[str], usage: str) -> str:
    from bertctl.provenance import hardware, versions

    lines = "".join(f"- {t}\n" for t in [*training, f"hardware: {hardware()}", f"software: {versions()}"])
    return (f"# {title}\n\n{intro}\n\n## {results_title}\n\n{_table(metrics)}\n## Recipe\n\n```yaml\n{recipe_text}```\n\n"
            f"## Command\n\n```bash\n{command}\n```\n\n## Training\n\n{lines}\n## Use\n\n{usage}\n")


def _write(folder: Path, text: str) -> Path | None:
    if not folder.is_dir():
        return None
    atomic_write_text(folder / "README.md", text)
    return folder / "README.md"


def finetune_card(run: Run, recipe, summary: dict, task) -> list[Path]:
    """README.md in model/ (and merged/) of a finished finetune run; returns the files written.
    `task`: the run's Task (its pipeline tag and auto class name the usage)."""
    from bertctl.provenance import command_line

    if not run.main:
        return []
    kind, method = summary["kind"], summary["method"]
    pipeline_tag = task.pipeline_tag
    base = hub_id(recipe.model.name_or_path or summary["model"])
    hub_dataset, dataset_type = dataset_of(recipe)
    tags = ["bertctl", kind, summary["task"], *(["peft", "lora"] if method != "full" else []),
            *(["4-bit" if recipe.quant.bits == 4 else "8-bit", "bitsandbytes"] if method == "qlora" else [])]
    recipe_text = run.file("recipe.yaml").read_text(encoding="utf-8")
    command = command_line(f"bertctl finetune {run.path / 'recipe.yaml'}   # the resolved recipe of this run")
    training = [f"training time: {summary['train_seconds']} s ({summary['steps']} steps, "
                f"{summary['train_samples_per_s']} samples/s)",
                f"data: {summary['n_train']} train ({summary['data'].get('train', '')}), "
                f"{summary['n_dev']} dev ({summary['data'].get('dev', '')})",
                f"trainable parameters: {summary['trainable_params']:,} of {summary['total_params']:,}",
                *precision_line(summary)]
    intro = (f"`{summary['task']}` ({kind}) fine-tuned from {base or summary['model']} with {method} "
             f"fine-tuning by bertctl (`bertctl finetune`).")
    written = []
    for folder, adapter in (("model", method != "full"), ("merged", False)):
        if adapter:
            usage = ("A peft adapter: load it with `peft.AutoPeftModelForSequenceClassification` (or the task's "
                     "auto class), or run `bertctl predict RUN_DIR input.tsv` on the run folder.")
        elif not task.has_pipeline:
            usage = (f"`{task.auto_class}.from_pretrained(path)` (transformers 5 has no {pipeline_tag} "
                     "pipeline), or `bertctl predict RUN_DIR questions.jsonl`.")
        else:
            usage = (f'```python\nfrom transformers import pipeline\npipe = pipeline("{pipeline_tag}", model="PATH_OR_REPO")\n```\n\n'
                     "or `bertctl predict RUN_DIR input.tsv` on the run folder.")
        front = front_matter(library="peft" if adapter else "transformers", base_model=base,
                             datasets=[hub_dataset] if hub_dataset else [], pipeline_tag=pipeline_tag, tags=tags,
                             name=run.path.name, task=summary["task"], dataset_type=dataset_type,
                             dataset_name=summary["data"].get("dev", dataset_type), split="dev", metrics=summary["dev"])
        body = _body(run.path.name + ("" if folder == "model" else " (merged)"), intro, "Results (dev)", summary["dev"],
                     recipe_text, command, training, usage)
        path = _write(run.file(folder), front + body)
        if path:
            written.append(path)
    return written


def pretrain_card(run: Run, recipe, metrics: dict) -> list[Path]:
    """README.md in model/ of a finished pretrain run (held-out metrics as the model-index)."""
    from bertctl.provenance import command_line

    if not run.main:
        return []
    causal = recipe.objective.kind == "causal"
    pipeline_tag = "text-generation" if causal else "fill-mask"
    base = None if recipe.from_scratch else hub_id(recipe.model.init)
    held = {k: v for k, v in metrics.items() if k.endswith(("_accuracy", "_loss")) or k == "perplexity"}
    source = recipe.data.source or "World"
    command = command_line(f"bertctl pretrain {run.path / 'recipe.yaml'}   # the resolved recipe of this run")
    training = [f"training time: {metrics.get('train_seconds')} s ({metrics.get('step')} steps, "
                f"{metrics.get('tokens_per_s')} tokens/s)",
                f"data: {metrics.get('train_sequences')} training / {metrics.get('heldout_sequences')} held-out "
                f"sequences from {source}", f"parameters: {metrics.get('parameters'):,}", *precision_line(metrics)]
    usage = (f'```python\nfrom transformers import pipeline\npipe = pipeline("{pipeline_tag}", model="PATH_OR_REPO")\n```')
    front = front_matter(library="transformers", base_model=base, datasets=[], pipeline_tag=pipeline_tag,
                         tags=["bertctl", "pretraining", metrics.get("objective", "")], name=run.path.name,
                         task=metrics.get("objective", "pretraining"), dataset_type="bertctl-world" if
                         recipe.data.source is None else "text", dataset_name=f"held-out {source}",
                         split="held-out", metrics=held)
    body = _body(run.path.name, f"A {metrics.get('objective')} model pretrained by bertctl (`bertctl pretrain`).",
                 "Results (held-out)", held, run.file("recipe.yaml").read_text(encoding="utf-8"), command, training,
                 usage)
    path = _write(run.file("model"), front + body)
    return [path] if path else []
