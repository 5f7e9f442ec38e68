"""The GLUE suite: for each task (and seed) one `bertctl finetune` run, then one table.

Layout of a suite folder:

    recipe.yaml, log.txt
    data/<Task>/train.jsonl, dev.jsonl (MNLI: m.jsonl, mm.jsonl), <Submission>.jsonl
    <Task>/seed<S>/          a complete `bertctl finetune` run folder (model, metrics, ...)
    <Task>/seed<S>/glue.json  this seed's GLUE metrics and test predictions: the task is done
    results.json / results.csv / results.md / glue.png
    submission/*.tsv, submission.zip
    metrics.json             the summary; written last

Resume (why it is safe): each (task, seed) is its own run folder. One with glue.json is
finished and only read back; one with checkpoints continues inside `finetune` from its
last checkpoint; one with neither never got past its first step and starts over.

Under torchrun/accelerate every rank runs the suite (the fine-tuning needs them all), but
only rank 0 writes files: the others wait (`wait_for_everyone`) until what they read is written.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bertctl.distributed import is_main_process, wait_for_everyone
from bertctl.errors import BertctlError
from bertctl.glue import score, submission
from bertctl.glue.config import SANE_MAX_EPOCHS, GlueRecipe
from bertctl.glue.data import HOW_TO_PROVIDE, TaskData, load_task, locate
from bertctl.glue.tasks import TASKS, GlueTask, task_names
from bertctl.jsonl import read_jsonl, write_jsonl
from bertctl.runs import Run, read_json, read_metrics, write_json, write_metrics

DONE = "glue.json"


@dataclass
class SuiteResult:
    rows: list[dict]
    summary: dict
    results: dict[str, dict]           # task -> score.aggregate() output
    skipped: dict[str, str]            # task -> why
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------- recipes per task


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def task_settings(recipe: GlueRecipe, name: str) -> dict:
    """The shared setting with this task's `per_task` overrides applied (a plain dict)."""
    shared = recipe.model_dump(include={"model", "method", "lora", "quant", "train", "eval_batch_size", "max_train_rows"})
    return _deep_merge(shared, recipe.per_task.get(name, {}))


def finetune_recipe(recipe: GlueRecipe, task: GlueTask, files: dict[str, Path | None], seed: int):
    """The `bertctl finetune` recipe of one task and seed, validated (bad per_task keys fail here)."""
    from bertctl.recipe import describe_errors
    from bertctl.finetune.config import FinetuneRecipe
    from pydantic import ValidationError

    body = task_settings(recipe, task.name)
    body.pop("max_train_rows", None)
    body["train"] = {**body["train"], "seed": seed}
    columns = {"text": "sentence1", "label": "label"}
    if len(task.inputs) == 2:
        columns["text_pair"] = "sentence2"
    body.update(task=task.kind, data={
        "train": str(files["train"]), "dev": str(files["dev"]),
        "test": str(files["test"]) if files.get("test") else None,
        "format": "jsonl", "columns": columns,
    })
    try:
        return FinetuneRecipe.model_validate(body)
    except ValidationError as e:
        raise BertctlError(describe_errors(e, FinetuneRecipe, f"per_task.{task.name}"),
                           fix="fix these keys in the recipe's per_task block") from None


def not_sane(recipe: GlueRecipe) -> list[str]:
    """Why the recipe breaks cramming's rule (one setting for every task, at most 5
    epochs, no step cap); empty when it keeps it."""
    training = sorted({k for o in recipe.per_task.values() for k in o} - {"max_train_rows"})
    epochs = recipe.train.epochs
    return ([f"per-task training overrides ({', '.join(training)})"] if training else []) + \
        (["train.max_steps is set"] if recipe.train.max_steps is not None else []) + \
        ([f"more than {SANE_MAX_EPOCHS} epochs"] if epochs is None or epochs > SANE_MAX_EPOCHS else [])


def is_sane(recipe: GlueRecipe) -> bool:
    return not not_sane(recipe)


# -------------------------------------------------------------------- task files


def write_task_files(data: TaskData, folder: Path, write: bool = True) -> dict[str, Path]:
    """Rows as JSON lines for `finetune` (one shape for every task, quirks gone).
    write=False: only the paths (the other ranks under torchrun, rank 0 writes)."""
    if write:
        folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def put(name: str, rows: list[dict]) -> Path:
        path = folder / f"{name}.jsonl"
        if write:
            write_jsonl(path, rows)
        return path

    files["train"] = put("train", data.train)
    for name, rows in data.evals.items():
        files[f"eval:{name}"] = put(name, rows)
    for name, rows in data.tests.items():
        files[f"test:{name}"] = put(Path(name).stem, rows)
    return files


# --------------------------------------------------------------- one task, one seed


def finetune_task(task: GlueTask, data: TaskData, files: dict[str, Path], recipe: GlueRecipe, seed: int,
                  folder: Path, resume: bool) -> dict:
    """Fine-tune one task with one seed through `bertctl finetune`; return its GLUE
    metrics (fractions, keyed by Metric.key) and test predictions (label strings).

    This is the only place that knows the finetune API. The first dev split and the
    first test split go through `finetune` itself. MNLI's mismatched dev set is then
    scored with `evaluate_run` on the trained run, and its other test sets (mismatched
    and the diagnostic AX) are predicted in that same call, concatenated into one file.
    A run whose metrics.json exists has finished training and is not trained again.
    """
    from bertctl.finetune.evaluate import evaluate_run
    from bertctl.finetune.run import finetune

    evals, tests = list(data.evals), list(data.tests)
    ft = finetune_recipe(recipe, task, {"train": files["train"], "dev": files[f"eval:{evals[0]}"],
                                        "test": files[f"test:{tests[0]}"] if tests else None}, seed)
    if Run(folder, "finetune").finished():
        dev = read_metrics(folder)["scores"]["dev"]  # trained earlier; only the extra steps were missing
    else:
        dev = finetune(ft, Run.create(folder, "finetune", resume=resume), resume=resume)
    wait_for_everyone()  # rank 0 has written the predictions read below
    by_split = {evals[0]: dev}
    predictions = {}
    if tests:
        predictions[tests[0]] = _read_predictions(folder / "predictions_test.jsonl", len(data.tests[tests[0]]))
    extra_tests = tests[1:]
    for k, name in enumerate(evals[1:] or ([evals[0]] if extra_tests else [])):
        overrides = [f"data.dev={files[f'eval:{name}']}"]
        rows = [r for t in extra_tests for r in data.tests[t]] if k == 0 and extra_tests else []
        out = folder / "evals" / name
        if is_main_process():  # evaluation is not distributed: rank 0 does it, the others read its files
            if rows:  # all remaining test sets in one file, split back by length
                combined = files["train"].parent / "more_tests.jsonl"
                write_jsonl(combined, rows)
                overrides.append(f"data.test={combined}")
            shutil.rmtree(out, ignore_errors=True)  # a half-written evaluation from an interrupted suite
            evaluate_run(folder, overrides, out=out, name="dev")
        wait_for_everyone()
        by_split[name] = read_metrics(out)["scores"]["dev"]
        if k == 0 and extra_tests:
            preds = _read_predictions(out / "predictions_test.jsonl", len(rows))
            for t in extra_tests:
                predictions[t], preds = preds[:len(data.tests[t])], preds[len(data.tests[t]):]
    metrics = {m.key: float(by_split[m.split][m.measure]) for m in task.metrics}
    return {"metrics": metrics, "predictions": predictions}


def _read_predictions(path: Path, n: int) -> list:
    if not path.exists():
        raise BertctlError(f"finetune wrote no {path.name}", fix="this is a bug; please report it")
    rows = read_jsonl(path)
    rows.sort(key=lambda r: r.get("index", 0))
    if len(rows) != n:
        raise BertctlError(f"{path}: {len(rows)} predictions for {n} test rows", fix="rerun the task (delete its folder)")
    return [r["prediction"] for r in rows]


# ----------------------------------------------------------------------- the suite


FinetuneFn = Callable[..., dict]


def seed_folder(run: Run, name: str, seed: int) -> Path:
    return run.path / name / f"seed{seed}"


def _prepare_seed_folder(folder: Path, resume: bool) -> bool | None:
    """None: finished (glue.json). True: resume from a checkpoint. False: start fresh."""
    if (folder / DONE).exists():
        return None
    state = False
    if resume and folder.is_dir():
        if Run(folder, "finetune").finished() or Run(folder, "finetune").latest_checkpoint() is not None:
            state = True
        elif is_main_process():
            shutil.rmtree(folder)  # never reached a checkpoint: nothing worth keeping
    wait_for_everyone()  # every rank decided on the same folder before rank 0 writes into it
    return state


@dataclass
class Plan:
    """What will run: decided before anything is written, so a suite without data
    leaves no run folder behind."""

    source: object
    present: list[str]
    skipped: dict[str, str]


def plan(recipe: GlueRecipe) -> Plan:
    names = task_names(recipe.tasks)
    source = locate(recipe.glue_dir, recipe.source)
    skipped = {n: why for n in names if (why := source.missing(TASKS[n]))}
    present = [n for n in names if n not in skipped]
    if not present:
        raise BertctlError(f"none of the selected GLUE tasks ({', '.join(names)}) is in {source.describe()}: "
                           + "; ".join(skipped.values()), fix=HOW_TO_PROVIDE)
    return Plan(source, present, skipped)


def run_suite(recipe: GlueRecipe, run: Run, resume: bool = False, say: Callable[[str], None] = lambda m: None,
              finetune_fn: FinetuneFn = finetune_task, planned: Plan | None = None) -> SuiteResult:
    p = planned or plan(recipe)
    run.resumed()  # a suite loads no checkpoint of its own: each seed's run holds its log until its checkpoint loads
    source, present, skipped = p.source, p.present, p.skipped
    seeds = [recipe.train.seed + k for k in range(recipe.seeds)]
    say(f"GLUE data: {source.describe()}")
    say(f"tasks: {', '.join(present)}" + (f"; skipped: {', '.join(f'{n} ({w})' for n, w in skipped.items())}" if skipped else ""))
    run.log(f"GLUE from {source.describe()}; tasks {present}; skipped {skipped}; seeds {seeds}")
    run.note(task=f"glue {', '.join(present)}", model=str(recipe.model.name_or_path))

    notes: list[str] = []
    if not is_sane(recipe):
        notes.append(f"not GLUE-sane: {'; '.join(not_sane(recipe))}")
    runs: dict[str, list[dict]] = {}   # task -> one glue.json per seed
    best: dict[str, dict] = {}         # task -> the seed with the best dev score (its test predictions are submitted)
    test_ids: dict[str, dict] = {}     # task -> submission file -> ids, in file order
    for name in present:
        task = TASKS[name]
        cap = task_settings(recipe, name).get("max_train_rows")
        data = load_task(source, task, cap, recipe.max_eval_rows, recipe.max_test_rows, tests=recipe.submission)
        notes += [f"{name}: {n}" for n in data.notes]
        files = write_task_files(data, run.path / "data" / name, write=run.main)
        test_ids[name] = {k: [r["idx"] for r in rows] for k, rows in data.tests.items()}
        runs[name] = []
        for seed in seeds:
            folder = seed_folder(run, name, seed)
            state = _prepare_seed_folder(folder, resume)
            if state is None:
                say(f"{name} seed {seed}: finished earlier, skipped")
                result = read_json(folder / DONE)
            else:
                say(f"{name} seed {seed}: {'resuming' if state else 'fine-tuning'} on {len(data.train):,} rows")
                t0 = time.perf_counter()
                out = finetune_fn(task, data, files, recipe, seed, folder, state)
                result = {"task": name, "seed": seed, "metrics": out["metrics"],
                          "points": score.points(out["metrics"], task), "seconds": round(time.perf_counter() - t0, 1),
                          "train_rows": len(data.train), "predictions": out["predictions"]}
                if run.main:
                    write_json(folder / DONE, result)
                    if not recipe.keep_checkpoints:  # finished: model/ is what counts (MiniLM: ~270 MB per checkpoint)
                        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
                wait_for_everyone()
                run.log(f"{name} seed {seed}: {result['points']} in {result['seconds']} s")
            runs[name].append(result)
        best[name] = max(runs[name], key=lambda r: score.task_score(r["points"], task))
    results = {}
    for n in present:
        results[n] = score.aggregate(TASKS[n], [r["points"] for r in runs[n]])
        results[n].update(seeds=seeds, seconds=round(sum(r["seconds"] for r in runs[n]), 1),
                          train_rows=runs[n][0]["train_rows"])
    files = _write_outputs(run, recipe, results, runs, best, test_ids, skipped, notes) if run.main else []
    rows, summary = score.result_rows(results)
    return SuiteResult(rows, summary, results, skipped, notes, files)


# ----------------------------------------------------------------------- outputs


def _write_outputs(run: Run, recipe: GlueRecipe, results: dict, runs: dict, best: dict, test_ids: dict,
                   skipped: dict, notes: list[str]) -> list[Path]:
    rows, summary = score.result_rows(results)
    title = f"GLUE dev — {recipe.model.name_or_path} ({recipe.method})"
    written = []
    if recipe.submission:
        written += _write_submission(run, best, test_ids, notes)
    payload = {"model": recipe.model.name_or_path, "method": recipe.method, **summary, "sane": is_sane(recipe),
               "results": results, "skipped": skipped, "notes": notes,
               "runs": {n: [{k: v for k, v in r.items() if k != "predictions"} for r in runs[n]] for n in results},
               "submitted_seed": {n: best[n]["seed"] for n in results}}
    written.append(run.write_json("results.json", payload))
    written.append(run.write_text("results.csv", score.csv_text(results)))
    written.append(run.write_text("results.md", score.markdown(rows, title, notes + [f"skipped {n}: {w}" for n, w in skipped.items()])))
    written.append(score.bar_chart(run.file("glue.png"), results, str(recipe.model.name_or_path)))
    tasks = {n: r["score"] for n, r in results.items()}
    write_metrics(run, {"glue_score": summary["glue_score"], "tasks": tasks, "complete": summary["complete"]},
                  scores={"dev": tasks}, main_metric="glue_score")
    return written


def _write_submission(run: Run, best: dict, test_ids: dict, notes: list[str]) -> list[Path]:
    folder = run.path / "submission"
    folder.mkdir(exist_ok=True)
    out = []
    for name, result in best.items():
        task = TASKS[name]
        for file, preds in result["predictions"].items():
            out.append(submission.write_tsv(folder / file, task, test_ids[name][file], preds))
    if not out:
        notes.append("no test files found: no submission written")
        return []
    missing = sorted({t.submission for n in TASKS for t in TASKS[n].tests} - {p.name for p in folder.glob("*.tsv")})
    if missing:
        notes.append(f"submission lacks {', '.join(missing)} (the leaderboard needs all files)")
    return out + [submission.zip_folder(folder, run.path / "submission.zip")]
