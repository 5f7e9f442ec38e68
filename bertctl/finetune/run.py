"""Fine-tuning as plain functions: `finetune(recipe, run)` and `evaluate_run(run_dir)`.

    finetune(recipe, run, resume=False) -> dev metrics   (and the run folder below)
    evaluate_run(run_dir, overrides, out=None) -> metrics (an existing run on other data)
    compare_table(run_dir) / results_rows(summary)        what the command prints

A finished run folder holds:

    recipe.yaml              the resolved recipe (re-run or --eval-only read it)
    model/                   HF model (full) or peft adapter (lora/qlora) + tokenizer
    merged/                  lora/qlora with `merge: true`: adapter folded into the base
    labels.json              the label list (class ids = positions)
    metrics.json             dev (and test) metrics, per-epoch history, speed, data notes
    metrics.jsonl            the loop's step log
    predictions_dev.jsonl    one line per dev example: inputs, gold, prediction
    predictions_test.jsonl   when data has a test split
    curve.png                dev metric and training loss per epoch
    random-init/, comparison.png   with `compare_init: true`
    checkpoints/             the loop's (for --resume)

`bertctl eval-glue` builds a FinetuneRecipe per GLUE task and calls `finetune`.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable

from bertctl.errors import BertctlError
from bertctl.precision import ResolvedPrecision, report, resolve
from bertctl.runs import Run, read_json
from bertctl.finetune import data as data_mod
from bertctl.finetune.base import length_grouped_batches, unk_rate
from bertctl.finetune.kinds import get_task
from bertctl.finetune.config import FinetuneRecipe

RANDOM_DIR = "random-init"


class _Say:
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


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)


# ---------------------------------------------------------------------------- finetune


def finetune(recipe: FinetuneRecipe, run: Run, resume: bool = False, quiet: bool = False) -> dict:
    """Fine-tune as the recipe says, write the run folder, return the final dev metrics.

    With `compare_init: true` the run folder is the pretrained run and `random-init/`
    the same recipe from random weights; comparison.png and the comparison in
    metrics.json are added, and the pretrained run's dev metrics are returned."""
    say = _Say(run, quiet)
    # on --resume: compared before anything is written; --merge may be added to a finished run
    write_recipe(run, recipe, resume=resume, may_differ=("merge",))
    if resume and run.finished():  # nothing to do, and nothing to rewrite (metrics.json keeps its timings)
        if recipe.merge and recipe.method != "full" and not run.file("merged").exists():
            _merge_finished(recipe, run, say)
        else:
            _Say(None, quiet)(f"{run.path} already finished: nothing to resume")  # said, not logged: no file changes
        return read_json(run.file("metrics.json"))["dev"]
    run.start(data_mod.input_files(recipe.data), resume)
    if recipe.compare_init:
        dev = _compare_init(recipe, run, resume, say)
    else:
        dev = train_one(recipe, run, resume, say, record=False)["dev"]
    run.finish()
    return dev


def _merge_finished(recipe: FinetuneRecipe, run: Run, say) -> None:
    """`--resume --merge` of a finished LoRA/QLoRA run: the one thing left to do is merged/."""
    from bertctl.models import ModelSource, load_tokenizer
    from bertctl.finetune import methods

    model_dir = run.file("model")
    tokenizer = load_tokenizer(ModelSource(str(model_dir), "local", str(model_dir)), recipe.model.trust_remote_code)
    task = get_task(recipe.kind)(recipe, read_json(run.file("labels.json")))
    if run.main:
        say(f"merged adapter into {methods.write_merged(model_dir, run.file('merged'), recipe, task, tokenizer)}")
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
        test_predictions = _predict(model, task, tokenizer, splits.test, result.precision)
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
    run.write_json("metrics.json", summary)
    from bertctl.modelcard import finetune_card

    finetune_card(run, recipe, summary, task)  # model/README.md (and merged/)
    if run.main and epochs:
        curves_png(run.file("curve.png"), {recipe.model.init: epochs}, task.main_metric,
                   f"{recipe.task}: {recipe.model.init} init, {recipe.method}")
    return summary


def write_predictions(run: Run, task, split: str, rows: list[dict], predictions: list) -> None:
    """predictions_<split>.jsonl, plus the task's files in other tools' formats (QA:
    predictions.json / null_odds.json for the official SQuAD scripts, _<split> suffixed
    except for dev, the run's own evaluation)."""
    run.write_text(f"predictions_{split}.jsonl", _jsonl(task.records(rows, predictions)))
    for name, content in task.official_files(rows, predictions).items():
        if split != "dev":
            stem, _, ext = name.rpartition(".")
            name = f"{stem}_{split}.{ext}"
        run.write_json(name, content)


def _unwrap(model):
    return getattr(model, "module", model)


def _predict(model, task, tokenizer, rows: list[dict], precision: ResolvedPrecision) -> list:
    features = task.encode(tokenizer, rows, train=False)
    with inference(model, precision):
        return task.predict(model, rows, features)


# ---------------------------------------------------------------------------- compare init


def _compare_init(recipe: FinetuneRecipe, run: Run, resume: bool, say) -> dict:
    if recipe.method != "full" or recipe.model.init != "pretrained":
        raise BertctlError(f"compare_init trains from pretrained and from random weights with full fine-tuning, "
                           f"not method={recipe.method} / model.init={recipe.model.init}",
                           fix="use method=full and model.init=pretrained with compare_init")
    pretrained = recipe.model_copy(update={"compare_init": False,
                                           "model": recipe.model.model_copy(update={"init": "pretrained"})})
    random_ = recipe.model_copy(update={"compare_init": False,
                                        "model": recipe.model.model_copy(update={"init": "random"})})
    say("compare_init: 1/2 pretrained weights")
    a = train_one(pretrained, run, resume, say, record=False)  # run's recipe.yaml is the compare_init one
    sub_path = run.path / RANDOM_DIR
    sub_resume = resume and Run(sub_path, "finetune").latest_checkpoint() is not None
    sub = Run.create(sub_path, "finetune", resume=sub_resume)
    say("compare_init: 2/2 random weights, same architecture")
    b = train_one(random_, sub, sub_resume, say)
    comparison = {"pretrained": a["dev"], "random": b["dev"],
                  "epochs": {"pretrained": a["epochs"], "random": b["epochs"]}}
    run.write_json("metrics.json", {**a, "compare_init": comparison})
    if run.main:
        curves_png(run.file("comparison.png"), {"pretrained": a["epochs"], "random init": b["epochs"]},
                   a["main_metric"], f"{recipe.task}: pretrained vs random init ({a['model'].split(' (')[0]})")
    return a["dev"]


# ---------------------------------------------------------------------------- eval only


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


def load_run_recipe(run_dir: Path, overrides: list[str]) -> FinetuneRecipe:
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


def eval_files(overrides: list[str]) -> tuple[list[Path] | None, list[str]]:
    """Split a multi-file `data.dev` override from the others: a YAML list
    (data.dev='[a.json, b.json]') or a glob (data.dev='xquad/xquad.*.json') gives the
    files, sorted; one plain path gives None (the single-file evaluation)."""
    import glob

    from bertctl.recipe import parse_override

    files, rest = None, []
    for item in overrides:
        parts, value = parse_override(item)
        if parts != ["data", "dev"] or not (isinstance(value, list) or any(c in str(value) for c in "*?[")):
            rest.append(item)
            continue
        if isinstance(value, list):
            if not value or not all(isinstance(v, str) and v for v in value):
                raise BertctlError(f"data.dev={value!r}: a list of files must hold file paths",
                                   fix="e.g. data.dev='[xquad.en.json, xquad.de.json]'")
            paths = [Path(os.path.expanduser(v)) for v in value]
        else:
            paths = [Path(p) for p in sorted(glob.glob(os.path.expanduser(str(value))))]
            if not paths:
                raise BertctlError(f"data.dev={value}: no file matches", fix="check the pattern (quote it in the shell)")
        files = [p if p.is_absolute() else Path.cwd() / p for p in paths]
    if files is not None:
        names = [eval_name(f) for f in files]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice:
            raise BertctlError(f"two evaluation files are both named {twice}",
                               fix="evaluate files with different names (results are filed under each name)")
    return files, rest


def eval_name(path) -> str:
    """What an evaluation file's results are called: its name without the extension
    (xquad.zh.json -> xquad.zh)."""
    name = Path(str(path)).name
    for ext in (".jsonl", ".json", ".tsv", ".csv", ".conllu", ".conll", ".txt"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


class _Evaluator:
    """A finished run's model, loaded once, scoring one data source after another."""

    def __init__(self, run_dir: Path, overrides: list[str]):
        from bertctl.models import ModelSource, load_tokenizer
        from bertctl.finetune import methods

        if not run_dir.is_dir():
            raise BertctlError(f"{run_dir} does not exist" if not run_dir.exists() else f"{run_dir} is not a folder",
                               fix="pass the --out folder of a finished `bertctl finetune` run")
        if not (run_dir / "model").is_dir():
            raise BertctlError(f"{run_dir} has no model/ (the run did not finish)",
                               fix="pass the folder of a finished `bertctl finetune` run, or --resume it first")
        self.run_dir = run_dir
        recipe = load_run_recipe(run_dir, overrides)
        labels_path = run_dir / "labels.json"
        self.labels = read_json(labels_path) if labels_path.exists() else None
        methods.quiet_transformers()
        self.tokenizer = load_tokenizer(ModelSource(str(run_dir / "model"), "local", str(run_dir / "model")),
                                        recipe.model.trust_remote_code)
        self.model = methods.load_trained(run_dir / "model", recipe, self._task(recipe))
        self.precision = resolve(recipe.train.precision, next(self.model.parameters()).device)
        self.recipe = recipe  # the recipe of the overrides given (the first file's, for several)

    def _task(self, recipe):
        task = get_task(recipe.kind)(recipe, self.labels)
        task.setup(self.tokenizer)
        return task

    def __call__(self, recipe: FinetuneRecipe, run: Run, name: str, say) -> dict:
        """Score `recipe`'s data; write metrics.json and the predictions (named `name`)
        into `run`; return the summary."""
        kind = recipe.kind
        splits = data_mod.load_splits(recipe.data, kind, need_train=False, task=recipe.task)
        for note in splits.notes:
            say(note)
        data_mod.check_known_labels(kind, splits.dev, self.labels, splits.names["dev"])
        task = self._task(recipe)
        task.observe(splits.dev)
        task.fit_length(self.tokenizer, self.model.config)
        unk = unk_rate(self.tokenizer, task.texts(splits.dev))
        say(f"eval-only: {self.run_dir} on {len(splits.dev)} rows of {splits.names['dev']}"
            + (f" ([UNK] {unk:.1%} of tokens)" if unk else ""))
        report(self.precision, run, _Say(None, getattr(say, "quiet", False)))  # report logs it itself
        predictions = _predict(self.model, task, self.tokenizer, splits.dev, self.precision)
        scores = task.score(splits.dev, predictions)
        write_predictions(run, task, name, splits.dev, predictions)
        summary = {"task": recipe.task, "kind": kind, "model": str(self.run_dir), "main_metric": task.main_metric,
                   "split": name, name: scores, f"n_{name}": len(splits.dev), "unk_rate": unk,
                   "data": splits.names, "notes": splits.notes, "bad_rows": splits.bad_rows,
                   "precision": self.precision.record()}
        if splits.test:
            test_predictions = _predict(self.model, task, self.tokenizer, splits.test, self.precision)
            write_predictions(run, task, "test", splits.test, test_predictions)
            if task.labelled(splits.test):
                summary["test"] = task.score(splits.test, test_predictions)
        run.write_json("metrics.json", summary)
        return summary


def evaluate_run(run_dir, overrides: list[str] | None = None, out=None, quiet: bool = False,
                 name: str | None = None) -> dict:
    """Evaluate a finished fine-tuning run on its dev data or on other data given as
    data.* overrides (e.g. `data.world.language=xx` for zero-shot on the other
    language, `data.dev=other.tsv`). Writes metrics.json and predictions into `out`
    (default RUN_DIR/evals/eval-<time>/) and returns the metrics.

    Results are named after the file they score (`data.dev=xquad.zh.json` ->
    "xquad.zh": predictions_xquad.zh.jsonl, metrics.json["xquad.zh"]); the run's own dev
    data (no data file given) is "dev". Several files (data.dev as a list or a glob):
    see `evaluate_files`; this then returns {file name: metrics}."""
    overrides = list(overrides or [])
    files, rest = eval_files(overrides)
    run_dir = Path(run_dir)
    if out is None:
        out = run_dir / "evals" / f"eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if files is not None:
        return evaluate_files(run_dir, files, rest, out, quiet)
    if name is None:
        given = [o.split("=", 1)[1] for o in rest if o.split("=", 1)[0].strip() == "data.dev"]
        name = eval_name(given[-1]) if given and given[-1].strip() else "dev"
    evaluator = _Evaluator(run_dir, rest)
    recipe = evaluator.recipe
    run = Run.create(out, "finetune-eval")
    write_recipe(run, recipe, f"bertctl finetune --eval-only {run_dir}")
    return evaluator(recipe, run, name, _Say(run, quiet))[name]


def evaluate_files(run_dir: Path, files: list[Path], overrides: list[str], out, quiet: bool = False) -> dict:
    """Score a finished run on several files (zero-shot cross-lingual: one XQuAD file per
    language): one sub-folder per file (named after it) with its metrics.json and
    predictions; in `out` a metrics.json with a row per file and scores.png, a bar chart
    of the main metric by file. Returns {file name: metrics}."""
    evaluator = _Evaluator(run_dir, [*overrides, f"data.dev={files[0]}"])
    run = Run.create(out, "finetune-eval")
    say = _Say(run, quiet)
    results, rows = {}, []
    main_metric = None
    for path in files:
        name = eval_name(path)
        recipe = load_run_recipe(run_dir, [*overrides, f"data.dev={path}"])
        sub = Run.create(run.path / name, "finetune-eval")
        write_recipe(sub, recipe, f"bertctl finetune --eval-only {run_dir}")
        summary = evaluator(recipe, sub, name, say)
        main_metric = summary["main_metric"]
        results[name] = summary[name]
        rows.append({"file": name, "rows": summary[f"n_{name}"], "unk_rate": summary["unk_rate"], **summary[name]})
    write_recipe(run, load_run_recipe(run_dir, overrides), f"bertctl finetune --eval-only {run_dir} (several files)")
    run.write_json("metrics.json", {"model": str(run_dir), "main_metric": main_metric, "files": [str(f) for f in files],
                                    "results": results, "rows": rows})
    if run.main:
        from bertctl.report import bar_chart

        bar_chart(run.file("scores.png"), list(results), {main_metric: [r[main_metric] for r in results.values()]},
                  main_metric, f"{run_dir.name}: {main_metric} by evaluation file")
    return results


# ---------------------------------------------------------------------------- reports


def curves_png(path: Path, series: dict[str, list[dict]], metric: str, title: str) -> Path:
    """Two panels over epochs: the dev metric at each evaluation and the mean training loss
    since the previous one, one line per run."""
    from bertctl.report import _plt

    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, epochs in series.items():
        xs = [e["epoch"] for e in epochs]
        left.plot(xs, [e.get(metric, math.nan) for e in epochs], marker="o", label=name)
        right.plot(xs, [e.get("train_loss", math.nan) for e in epochs], marker="o", label=name)
    left.set(xlabel="epoch", ylabel=f"dev {metric}", title=f"dev {metric}")
    right.set(xlabel="epoch", ylabel="training loss", title="training loss (mean since the previous dev point)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


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


def comparison_rows(summary: dict) -> list[dict]:
    """metric | pretrained | random init | difference, for compare_init runs."""
    c = summary["compare_init"]
    return [{"metric": k, "pretrained": v, "random init": c["random"].get(k),
             "difference": v - c["random"][k] if isinstance(c["random"].get(k), (int, float)) else None}
            for k, v in c["pretrained"].items()]
