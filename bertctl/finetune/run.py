"""Fine-tuning, the training job: `finetune(recipe, run)`.

    finetune(recipe, run, resume=False) -> dev metrics   (and the run folder below)
    results_rows(summary)                                 what the command prints

The other jobs have modules of their own: compare-init (finetune/compare.py), eval-only
(finetune/evaluate.py), and reading a finished run back (finetune/finished.py).

A finished run folder holds:

    recipe.yaml              the resolved recipe (re-run or --eval-only read it)
    model/                   HF model (full) or peft adapter (lora/qlora) + tokenizer
    merged/                  lora/qlora with `merge: true`: adapter folded into the base
    labels.json              the label list (class ids = positions)
    metrics.json             dev (and test) metrics, per-epoch history, speed, data notes
    metrics.jsonl            the loop's step log
    predictions_dev.jsonl    one line per dev example (bertctl.finetune.base.prediction_records)
    predictions_test.jsonl   when data has a test split
    curve.png                dev metric and training loss per epoch
    random-init/, comparison.png   with `compare_init: true`
    checkpoints/             the loop's (for --resume)

`bertctl eval-glue` builds a FinetuneRecipe per GLUE task and calls `finetune`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable

from bertctl.jsonl import dumps_line
from bertctl.precision import ResolvedPrecision, report, resolve
from bertctl.runs import Run, read_json, write_metrics
from bertctl.finetune import data as data_mod
from bertctl.finetune.base import length_grouped_batches, prediction_records
from bertctl.finetune.compare import compare_init, curves_png
from bertctl.finetune.kinds import get_task
from bertctl.finetune.config import FinetuneRecipe


class Say:
    """A progress line on stderr (unless quiet; see bertctl.console.say) kept in the run's log.txt."""

    def __init__(self, run: Run | None, quiet: bool = False):
        self.run, self.quiet = run, quiet

    def __call__(self, text: str) -> None:
        if not self.quiet and (self.run is None or self.run.main):
            from bertctl.console import say

            say(text, soft_wrap=True, markup=False)
        if self.run is not None:
            self.run.log(text)


def write_recipe(run: Run, recipe: FinetuneRecipe, line: str = "bertctl finetune", resume: bool = False,
                 may_differ: tuple[str, ...] = ()) -> None:
    """recipe.yaml; on --resume the recorded one is compared instead (see Run.keep_recipe)."""
    from bertctl.recipe import dump

    run.keep_recipe(f"# {line}\n" + dump(recipe), resume, may_differ)
    run.note(task=recipe.task, kind=recipe.kind, model=str(recipe.model.name_or_path))  # for run.json


@contextmanager
def inference(model, precision: ResolvedPrecision):
    """No gradients, eval mode, and the resolved precision's autocast (bf16/fp16, or none)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), precision.autocast_context(device.type):
            yield
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------- finetune


def finetune(recipe: FinetuneRecipe, run: Run, resume: bool = False, quiet: bool = False) -> dict:
    """Fine-tune as the recipe says, write the run folder, return the final dev metrics.

    With `compare_init: true` the run folder is the pretrained run and `random-init/`
    the same recipe from random weights; comparison.png and the comparison in
    metrics.json are added, and the pretrained run's dev metrics are returned."""
    say = Say(run, quiet)
    # on --resume: compared before anything is written; --merge may be added to a finished run
    write_recipe(run, recipe, resume=resume, may_differ=("merge",))
    if resume and run.finished():  # nothing to do, and nothing to rewrite (metrics.json keeps its timings)
        if recipe.merge and recipe.method != "full" and not run.file("merged").exists():
            _merge_finished(recipe, run, say)
        else:
            Say(None, quiet)(f"{run.path} already finished: nothing to resume")  # said, not logged: no file changes
        return read_json(run.file("metrics.json"))["dev"]
    run.start(data_mod.input_files(recipe.data), resume)
    if recipe.compare_init:
        dev = compare_init(recipe, run, resume, say, train_one)
    else:
        dev = train_one(recipe, run, resume, say, record=False)["dev"]
    run.finish()
    return dev


def _merge_finished(recipe: FinetuneRecipe, run: Run, say) -> None:
    """`--resume --merge` of a finished LoRA/QLoRA run: the one thing left to do is merged/."""
    from bertctl.finetune import methods
    from bertctl.finetune.finished import FinetuneRun

    run.resumed()  # nothing to load: the merge is what this resume does
    finished = FinetuneRun.load(run.path, held=True)  # run.finished() said so; this command holds it
    tokenizer = finished.tokenizer()
    task = finished.task(tokenizer, recipe)
    if run.main:
        say(f"merged adapter into {methods.write_merged(finished.model_dir, run.file('merged'), recipe, task, tokenizer)}")
    write_recipe(run, recipe)  # the run now has merged/: its recipe says merge: true


def train_one(recipe: FinetuneRecipe, run: Run, resume: bool, say: Callable[[str], None], record: bool = True) -> dict:
    """One fine-tuning run; returns the summary written to metrics.json. `record`: write
    (or on resume compare) the run's recipe.yaml; `finetune` has done so already."""
    from bertctl.models import load_tokenizer
    from bertctl.finetune import methods
    from bertctl.train import Job, fit

    kind = recipe.kind
    if record:
        write_recipe(run, recipe, resume=resume)
    source, line = methods.pick_model(recipe.model.name_or_path, recipe.model.allow_pickle)
    say(line + ("" if recipe.model.init == "pretrained" else " [architecture only: random init]"))
    splits = data_mod.load_splits(recipe.data, kind, task=recipe.task)
    for note in splits.notes:
        say(note)
    say(f"data: {len(splits.train)} train ({splits.names['train']}), {len(splits.dev)} dev ({splits.names['dev']})"
        + (f", {len(splits.test)} test ({splits.names['test']})" if splits.test else ""))
    task = get_task(kind)(recipe, splits.labels)
    if task.labels:
        say(f"task: {recipe.task} ({kind}), {task.describe_labels()}")
    methods.quiet_transformers()
    tokenizer = load_tokenizer(source, recipe.model.trust_remote_code)
    task.setup(tokenizer)
    task.observe(splits.train)
    model, info = methods.build_model(recipe, task, source)
    capped = task.fit_length(tokenizer, model.config)
    if capped:
        say(capped)
    say(f"method: {recipe.method}; trainable parameters {info['trainable_params']:,} of {info['total_params']:,}"
        + (f"; new: {', '.join(info['new_modules'])}" if info["new_modules"] and recipe.model.init == "pretrained" else ""))

    train_features = task.encode(tokenizer, splits.train, train=True)
    dev_features = task.encode(tokenizer, splits.dev, train=False)
    for note in task.report():
        say(note)
        splits.notes.append(note)  # kept in metrics.json
    lengths = [task.length(f) for f in train_features]
    s = recipe.train
    state = {"predictions": None, "eval_seconds": 0.0}
    running = {"loss": 0.0, "units": 0}  # training loss since the last evaluation; checkpointed by fit

    def batches(epoch: int) -> list[list[int]]:
        return length_grouped_batches(lengths, s.batch_size, s.seed, epoch, recipe.group_by_length)

    def collate(examples: list, epoch: int) -> dict:
        return task.collate(examples)

    def losses(model, batch):
        # accumulated as device tensors (float64, as the Python floats were): a float() here
        # would make every step wait for the GPU; fit turns them into numbers at checkpoints
        sums, extras = task.losses(model, batch)
        running["loss"] = running["loss"] + sum(v.detach().double() for v in sums.values())
        running["units"] = running["units"] + sum(task.units(batch).values())
        return sums, extras

    def evaluate(model) -> dict:
        t0 = time.perf_counter()
        predictions = task.predict(model, splits.dev, dev_features)
        metrics = task.score(splits.dev, predictions)
        state["predictions"] = predictions
        loss, units = (float(running[k]) for k in ("loss", "units"))  # the host sync, once per evaluation
        if units:  # mean training loss since the previous evaluation (per unit)
            metrics["train_loss"] = loss / units
        running["loss"], running["units"] = 0.0, 0
        state["eval_seconds"] += time.perf_counter() - t0
        return metrics

    job = Job(batches, train_features, collate, task.units, losses, evaluate, state=running)
    result = fit(model, job, s, run, resume, describe=f"finetune {recipe.task}")
    model = _unwrap(model)
    run.note(decisions=task.decisions())  # what training decided from its data, for FinetuneRun

    if state["predictions"] is None:  # resumed a finished run: the loop had nothing left to do
        with inference(model, result.precision):
            state["predictions"] = task.predict(model, splits.dev, dev_features)
    dev = task.score(splits.dev, state["predictions"])
    dev.pop("train_loss", None)

    model_dir = (methods.save_model(model, tokenizer, run.file("model"), recipe, state_dict=result.state_dict)
                 if run.main else run.file("model"))
    run.write_json("labels.json", task.labels)
    write_predictions(run, task, "dev", splits.dev, state["predictions"])
    test = None
    if splits.test:
        test_predictions = predict_rows(model, task, tokenizer, splits.test, result.precision)
        write_predictions(run, task, "test", splits.test, test_predictions)
        if task.labelled(splits.test):
            test = task.score(splits.test, test_predictions)
    if recipe.merge and recipe.method != "full" and run.main:
        merged = methods.write_merged(model_dir, run.file("merged"), recipe, task, tokenizer)
        say(f"merged adapter into {merged}")

    steps_per_epoch = max(1, len(batches(0)) // s.grad_accum)
    epochs = [{"epoch": round(e["step"] / steps_per_epoch, 2), "step": e["step"],
               **{k[5:]: v for k, v in e.items() if k.startswith("eval_")}} for e in result.evals]
    train_seconds = max(result.seconds - state["eval_seconds"], 1e-9)
    summary = {
        "task": recipe.task, "kind": kind, "model": source.label, "init": recipe.model.init, "method": recipe.method,
        "main_metric": task.main_metric, "dev": dev, **({"test": test} if test else {}),
        "labels": task.labels, "n_train": len(splits.train), "n_dev": len(splits.dev),
        "n_test": len(splits.test or []), "data": splits.names, "notes": splits.notes,
        "bad_rows": splits.bad_rows,
        "epochs": epochs, "steps": result.steps, "train_seconds": round(train_seconds, 2),
        "train_samples_per_s": round(result.samples / train_seconds, 2),
        "train_tokens_per_s": round(result.tokens / train_seconds, 1),
        "trainable_params": info["trainable_params"], "total_params": info["total_params"],
        "precision": result.precision.record(),
    }
    write_metrics(run, summary)
    from bertctl.modelcard import finetune_card

    finetune_card(run, recipe, summary, task)  # model/README.md (and merged/)
    if run.main and epochs:
        curves_png(run.file("curve.png"), {recipe.model.init: epochs}, task.main_metric,
                   f"{recipe.task}: {recipe.model.init} init, {recipe.method}")
    return summary


def write_predictions(run: Run, task, split: str, rows: list[dict], predictions: list[dict]) -> None:
    """predictions_<split>.jsonl (the records `bertctl predict` writes, with the gold),
    plus the task's files in other tools' formats (QA: predictions.json / null_odds.json
    for the official SQuAD scripts, _<split> suffixed except for dev, the run's own
    evaluation)."""
    run.write_text(f"predictions_{split}.jsonl", "".join(map(dumps_line, prediction_records(task, rows, predictions))))
    for name, content in task.official_files(rows, predictions).items():
        if split != "dev":
            stem, _, ext = name.rpartition(".")
            name = f"{stem}_{split}.{ext}"
        run.write_json(name, content)


def _unwrap(model):
    return getattr(model, "module", model)


def predict_rows(model, task, tokenizer, rows: list[dict], precision: ResolvedPrecision) -> list[dict]:
    features = task.encode(tokenizer, rows, train=False)
    with inference(model, precision):
        return task.predict(model, rows, features)


# ---------------------------------------------------------------------------- reports


def results_rows(summary: dict) -> list[dict]:
    """metric | <split> | test rows for the final table (split: "dev", or the evaluated file's name)."""
    rows = []
    split = summary.get("split", "dev")
    for name, value in summary[split].items():
        row = {"metric": name, split: value}
        if "test" in summary:
            row["test"] = summary["test"].get(name)
        rows.append(row)
    return rows
