"""A finished fine-tuning run, read back: the one loader behind `--eval-only`, `bertctl
predict`, `--resume --merge` and eval-glue.

    run = FinetuneRun.load(PATH)      a run folder, or its model/ or merged/ folder
    run.recipe, run.labels            the recorded recipe (with eval-only overrides) and labels.json
    run.source                        the ModelSource of the trained model
    run.tokenizer(), run.task(...)    the tokenizer, and the kind's Task with its labels and
                                      the decisions training made from its data (run.json)
    run.model(task)                   the trained model (full, LoRA, QLoRA or merged/)

A run that failed, was interrupted or is still running is refused with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.finetune.config import FinetuneRecipe
from bertctl.finetune.kinds import get_task
from bertctl.runs import Run, read_json, read_metrics, read_record

FINISHED_RUN = "pass the --out folder of a finished `bertctl finetune` run"


def load_run_recipe(run_dir: Path, overrides: list[str]) -> FinetuneRecipe:
    """The run's recipe.yaml, with eval-only data overrides replacing its data source."""
    from bertctl.recipe import apply_overrides, read_yaml, validate

    path = run_dir / "recipe.yaml"
    if not path.exists():
        raise BertctlError(f"{run_dir} is not a finetune run folder (no recipe.yaml)",
                           fix="pass the --out folder of a `bertctl finetune` run")
    raw = read_yaml(path)
    command = raw.pop("command", "finetune")
    if command != "finetune":
        raise BertctlError(f"{run_dir} is a `bertctl {command}` run, not a finetune run",
                           fix="pass the folder of a `bertctl finetune` run")
    recipe = validate(FinetuneRecipe, raw, str(path), run_dir)
    if not overrides:
        return recipe  # type: ignore[return-value]
    dumped = recipe.model_dump()
    dumped["data"] = _clear_for(dumped["data"], overrides)
    return validate(FinetuneRecipe, apply_overrides(dumped, overrides), f"{path} (with overrides)", Path.cwd())  # type: ignore[return-value]


def _clear_for(data: dict, overrides: list[str]) -> dict:
    """Eval-only data overrides replace the run's data source instead of mixing with it:
    `data.dev=FILE` drops the run's train file and split, `data.world.*` switches to
    World data, `data.hf.*` to a dataset."""
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    data = dict(data)
    if any(k in ("data.dev", "data.test") for k in keys):
        data.update(train=None, dev=None, test=None, split=None, split_by=None, hf=None)
    elif any(k.startswith("data.hf") for k in keys):
        data.update(train=None, dev=None, test=None, split=None, split_by=None)
    elif any(k.startswith("data.world") for k in keys):
        data.update(train=None, dev=None, test=None, split=None, split_by=None, hf=None)
    return data


def find_run(path: Path) -> tuple[Path, Path]:
    """(run folder, model folder) for a finetune run folder or one of its model/ or
    merged/ folders."""
    path = Path(path)
    if not path.exists():
        raise BertctlError(f"{path} does not exist", fix=FINISHED_RUN)
    if not path.is_dir():
        raise BertctlError(f"{path} is not a folder", fix=FINISHED_RUN)
    if (path / "recipe.yaml").exists():
        return path, path / "model"
    if (path / "config.json").exists() or (path / "adapter_config.json").exists():
        if (path.parent / "recipe.yaml").exists():
            return path.parent, path
    what = "no recipe.yaml" if (path / "model").is_dir() else "has no model/ (the run did not finish) and no recipe.yaml"
    raise BertctlError(f"{path} is not a finetune run folder ({what})",
                       fix="pass the --out folder of a `bertctl finetune` run (or its model/ or merged/)")


def check_finished(run_dir: Path, model_dir: Path) -> dict:
    """run.json of a run whose model can be used; one line for one that cannot."""
    known = read_record(run_dir)  # the status it has now: "running" only while its lock is held
    if known is not None and known.command == "finetune-eval":  # its recipe.yaml says finetune: the run's
        try:
            evaluated = read_metrics(run_dir).get("model")
        except BertctlError:  # a torn metrics.json: the line says what the folder is all the same
            evaluated = None
        raise BertctlError(f"{run_dir} is an --eval-only folder (`bertctl finetune --eval-only`), not a finetune run",
                           fix="pass the run it evaluated" + (f" ({evaluated})" if isinstance(evaluated, str) else ""))
    if known is not None and known.status != "finished":
        why = f": {known.error}" if known.error else ""
        raise BertctlError(f"{run_dir} did not finish (it is {known.status}{why})",
                           fix=f"--resume it first, or {FINISHED_RUN}")
    record = Run(run_dir, "finetune").record()
    if not model_dir.is_dir():
        raise BertctlError(f"{run_dir} has no {model_dir.name}/ (the run did not finish)",
                           fix=f"--resume it first, or {FINISHED_RUN}")
    return record


@dataclass
class FinetuneRun:
    path: Path  # the run folder
    model_dir: Path  # model/ or merged/
    recipe: FinetuneRecipe  # recipe.yaml with the overrides given to load()
    labels: list[str] | None  # labels.json (None: a kind without a label set)
    record: dict  # run.json ({} for folders older than it)

    @classmethod
    def load(cls, path, overrides: list[str] | None = None, held: bool = False) -> "FinetuneRun":
        """`held`: the caller holds the run open and knows it finished (`--resume --merge`)."""
        run_dir, model_dir = find_run(Path(path))
        recipe = load_run_recipe(run_dir, list(overrides or []))
        record = Run(run_dir, "finetune").record() if held else check_finished(run_dir, model_dir)
        labels_path = run_dir / "labels.json"
        labels = read_json(labels_path) if labels_path.exists() else None
        if labels is None and get_task(recipe.kind).has_label_set:
            raise BertctlError(f"{run_dir} has no labels.json (the run did not finish)",
                               fix=f"re-run the fine-tuning, or {FINISHED_RUN}")
        return cls(run_dir, model_dir, recipe, labels, record)

    @property
    def source(self):
        """The trained model's files (model/ or merged/), as models.load_* take them."""
        from bertctl.models import ModelSource

        return ModelSource(str(self.model_dir), "local", str(self.model_dir))

    @property
    def is_adapter(self) -> bool:
        from bertctl.finetune.methods import is_adapter

        return is_adapter(self.model_dir)

    def tokenizer(self):
        from bertctl.finetune.methods import quiet_transformers
        from bertctl.models import load_tokenizer

        quiet_transformers()
        return load_tokenizer(self.source, self.recipe.model.trust_remote_code)

    def task(self, tokenizer, recipe: FinetuneRecipe | None = None):
        """The kind's Task with the run's labels, set up for `tokenizer`, and what training
        decided from its data (QA: whether "no answer" is allowed) as run.json records it;
        a run from before those records reads its predictions_dev.jsonl once instead."""
        recipe = recipe or self.recipe
        task = get_task(recipe.kind)(recipe, self.labels)
        task.setup(tokenizer)
        task.restore(self.record.get("decisions") or {}, self.path)
        return task

    def model(self, task):
        """The trained model in eval mode (a LoRA adapter folded into its base)."""
        from bertctl.finetune import methods

        model = methods.load_trained(self.model_dir, self.recipe, task)
        if self.recipe.method == "lora" and self.is_adapter:
            model = model.merge_and_unload()  # same function, one matmul per layer fewer
        model.eval()
        return model
