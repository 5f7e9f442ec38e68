"""`bertctl finetune --eval-only RUN_DIR [data.*=...]`: a finished run scored on other data.

    evaluate_run(run_dir, overrides, out=None) -> metrics (one data source)
    evaluate_files(run_dir, files, overrides, out) -> {file name: metrics} (several files)

Every input is read and checked (files, columns, labels the model knows) before the model
loads and before any folder is made: a bad second file leaves nothing behind.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.finetune import data as data_mod
from bertctl.finetune.base import unk_rate
from bertctl.finetune.config import FinetuneRecipe
from bertctl.finetune.finished import FinetuneRun, load_run_recipe
from bertctl.finetune.run import Say, predict_rows, write_predictions, write_recipe
from bertctl.precision import report, resolve
from bertctl.runs import Run, write_metrics


def eval_files(overrides: list[str]) -> tuple[list[Path] | None, list[str]]:
    """Split a multi-file `data.dev` override from the others: a YAML list
    (data.dev='[a.json, b.json]') or a glob (data.dev='xquad/xquad.*.json') gives the
    files, sorted; one plain path gives None (the single-file evaluation). A path that
    exists is that file, even when its name holds glob characters (dev[1].tsv)."""
    from bertctl.recipe import parse_override

    files, rest = None, []
    for item in overrides:
        parts, value = parse_override(item)
        globbed = isinstance(value, str) and any(c in value for c in "*?[") \
            and not Path(os.path.expanduser(value)).exists()
        if parts != ["data", "dev"] or not (isinstance(value, list) or globbed):
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


# metrics.json keys beside an evaluation's scores (its summary's, the outer layout's, a
# multi-file evaluation's): a file named like one keeps its extension, or its scores would
# overwrite that key (data.tsv's scores were lost, model.tsv's ended in a traceback); "test"
# only beside a data.test (see _read)
_TAKEN = frozenset({"task", "kind", "model", "main_metric", "split", "unk_rate", "data", "notes", "bad_rows",
                    "precision", "schema", "command", "main_value", "scores", "steps", "timings", "files",
                    "results", "rows"})


def eval_name(path) -> str:
    """What an evaluation file's results are called: its name without the extension
    (xquad.zh.json -> xquad.zh), or with it when that would be a key of metrics.json
    (data.tsv -> data.tsv)."""
    full = Path(str(path)).name
    name = next((full[: -len(ext)] for ext in (".jsonl", ".json", ".tsv", ".csv", ".conllu", ".conll", ".txt")
                 if full.lower().endswith(ext)), full)
    if name in _TAKEN:
        return full if full != name else f"{name}-file"
    return name


@dataclass
class _Input:
    """One data source to score, read and checked before anything is scored or written."""

    name: str  # what its results are called
    recipe: FinetuneRecipe
    splits: data_mod.Splits


def _read(finished: FinetuneRun, recipe: FinetuneRecipe, name: str) -> _Input:
    splits = data_mod.load_splits(recipe.data, recipe.kind, need_train=False, task=recipe.task)
    if name == "test" and splits.test:  # test.tsv scored beside a data.test: both would be "test"
        full = Path(str(splits.names["dev"])).name
        name = full if full != name else f"{name}-file"
    data_mod.check_known_labels(recipe.kind, splits.dev, finished.labels, splits.names["dev"])
    if splits.test:
        data_mod.check_known_labels(recipe.kind, splits.test, finished.labels, splits.names["test"])
    return _Input(name, recipe, splits)


class _Evaluator:
    """A finished run's model, loaded once, scoring one data source after another."""

    def __init__(self, finished: FinetuneRun):
        self.finished = finished
        self.tokenizer = finished.tokenizer()
        self.model = finished.model(finished.task(self.tokenizer))
        self.precision = resolve(finished.recipe.train.precision, next(self.model.parameters()).device)

    def __call__(self, item: _Input, run: Run, say) -> dict:
        """Score the input; write metrics.json and the predictions (named after it) into
        `run`; return the summary."""
        name, recipe, splits = item.name, item.recipe, item.splits
        for note in splits.notes:
            say(note)
        task = self.finished.task(self.tokenizer, recipe)
        task.observe(splits.dev)
        task.fit_length(self.tokenizer, self.model.config)
        unk = unk_rate(self.tokenizer, task.texts(splits.dev))
        say(f"eval-only: {self.finished.path} on {len(splits.dev)} rows of {splits.names['dev']}"
            + (f" ([UNK] {unk:.1%} of tokens)" if unk else ""))
        report(self.precision, run, Say(None, getattr(say, "quiet", False)))  # report logs it itself
        results = predict_rows(self.model, task, self.tokenizer, splits.dev, self.precision)
        test_results = (predict_rows(self.model, task, self.tokenizer, splits.test, self.precision)
                        if splits.test else None)
        for note in task.report():
            say(note)
            splits.notes.append(note)
        scores = task.score(splits.dev, results)
        write_predictions(run, task, name, splits.dev, results)
        summary = {"task": recipe.task, "kind": recipe.kind, "model": str(self.finished.path),
                   "main_metric": task.main_metric, "split": name, name: scores, f"n_{name}": len(splits.dev),
                   "unk_rate": unk, "data": splits.names, "notes": splits.notes, "bad_rows": splits.bad_rows,
                   "precision": self.precision.record()}
        if test_results is not None:
            write_predictions(run, task, "test", splits.test, test_results)
            if task.labelled(splits.test):
                summary["test"] = task.score(splits.test, test_results)
        write_metrics(run, summary)
        return summary


def _default_out(run_dir: Path) -> Path:
    return run_dir / "evals" / f"eval-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


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
    out = _default_out(run_dir) if out is None else out
    if files is not None:
        return evaluate_files(run_dir, files, rest, out, quiet)
    if name is None:
        given = [o.split("=", 1)[1] for o in rest if o.split("=", 1)[0].strip() == "data.dev"]
        name = eval_name(given[-1]) if given and given[-1].strip() else "dev"
    finished = FinetuneRun.load(run_dir, rest)
    item = _read(finished, finished.recipe, name)
    evaluator = _Evaluator(finished)
    run = Run.create(out, "finetune-eval")
    write_recipe(run, finished.recipe, f"bertctl finetune --eval-only {run_dir}")
    return evaluator(item, run, Say(run, quiet))[name]


def evaluate_files(run_dir: Path, files: list[Path], overrides: list[str], out, quiet: bool = False) -> dict:
    """Score a finished run on several files (zero-shot cross-lingual: one XQuAD file per
    language): one sub-folder per file (named after it) with its metrics.json and
    predictions; in `out` a metrics.json with a row per file and scores.png, a bar chart
    of the main metric by file. Returns {file name: metrics}."""
    finished = FinetuneRun.load(run_dir, [*overrides, f"data.dev={files[0]}"])
    items = [_read(finished, load_run_recipe(finished.path, [*overrides, f"data.dev={path}"]), eval_name(path))
             for path in files]  # every file checked before the first is scored
    evaluator = _Evaluator(finished)
    run = Run.create(out, "finetune-eval")
    say = Say(run, quiet)
    results, rows = {}, []
    main_metric = None
    for item in items:
        sub = Run.create(run.path / item.name, "finetune-eval")
        write_recipe(sub, item.recipe, f"bertctl finetune --eval-only {run_dir}")
        summary = evaluator(item, sub, say)
        main_metric = summary["main_metric"]
        results[item.name] = summary[item.name]
        rows.append({"file": item.name, "rows": summary[f"n_{item.name}"], "unk_rate": summary["unk_rate"],
                     **summary[item.name]})
        sub.finish()
    write_recipe(run, load_run_recipe(finished.path, overrides), f"bertctl finetune --eval-only {run_dir} (several files)")
    write_metrics(run, {"model": str(run_dir), "main_metric": main_metric, "files": [str(f) for f in files],
                        "results": results, "rows": rows})
    if run.main:
        from bertctl.report import bar_chart

        bar_chart(run.file("scores.png"), list(results), {main_metric: [r[main_metric] for r in results.values()]},
                  main_metric, f"{run_dir.name}: {main_metric} by evaluation file")
    return results
