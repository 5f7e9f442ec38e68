"""`run_prompt`: sweep models x shots over a task, write the run folder, return the table.

Run folder:
    recipe.yaml            the resolved recipe
    predictions.jsonl      one line per (model, K, example): prompt, demos, option scores, prediction
    metrics.json, results.md   accuracy and macro-F1 per (model, K), the best accuracy, the majority-class baseline
    accuracy_vs_shots.png  accuracy against K, one line per model (scoring mode)
    log.txt
"""

from __future__ import annotations

import json
import time
from collections import Counter

from bertctl.errors import BertctlError
from bertctl.prompting.config import PromptRecipe
from bertctl.prompting.prompts import content_free_prompts, option_texts, prompts_for
from bertctl.prompting.tasks import Task, load_task, render


def choose_mode(recipe: PromptRecipe, task: Task) -> str:
    if recipe.mode == "score" or (recipe.mode == "auto" and task.labelled and task.words):
        if not task.words:
            raise BertctlError(f"task '{task.name}' has no labels to score",
                               fix="give `labels` (label -> word) or use mode=generate")
        return "score"
    return "generate"


def classification_metrics(gold: list[str], pred: list[str]) -> dict:
    """Accuracy and macro-F1 (over the labels that occur in gold or predictions)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(gold, pred)),
            "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0))}


def majority_baseline(gold: list[str], labels: list[str]) -> dict:
    """Always predict the eval set's most frequent label (ties: the first in label order)."""
    counts = Counter(gold)
    order = {label: i for i, label in enumerate(labels)}
    top = max(counts, key=lambda g: (counts[g], -order.get(g, len(order))))
    return {"label": top, **classification_metrics(gold, [top] * len(gold))}


def _write_table_md(rows: list[dict], columns: list[str]) -> str:
    from bertctl.report import fmt

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _score_one(lm, task: Task, recipe: PromptRecipe, requests, calibration, options: list[str],
               progress) -> list[dict]:
    """Score every eval row at K shots; one prediction dict per row.

    calibration: None, or (content-free requests, index of each row's content-free request).
    """
    from bertctl.prompting.scoring import choose, normalized, score

    s = recipe.scoring
    scores = score(lm.model, requests, s.method, s.batch_size, s.option_batch, lm.pad_id, progress)
    free = None
    if calibration is not None:
        free_requests, which = calibration
        free_scores = score(lm.model, free_requests, s.method, s.batch_size, s.option_batch, lm.pad_id)
        free = [free_scores[j] for j in which]
    out = []
    for i, (row, per_option) in enumerate(zip(task.eval_rows, scores)):
        raw = per_option if free is None else [(lp - cf, n) for (lp, n), (cf, _) in zip(per_option, free[i])]
        values = normalized(raw, options, s.normalize)
        pred = task.labels[choose(values)]
        gold = task.label_of(row) if task.labelled else None
        out.append({"index": i, "label": gold, "prediction": pred,
                    "correct": None if gold is None else pred == gold,
                    "scores": dict(zip(task.labels, values)),
                    "logprobs": dict(zip(task.labels, (lp for lp, _ in per_option))),
                    "tokens": dict(zip(task.labels, (n for _, n in per_option)))})
        if free is not None:
            out[-1]["content_free_logprobs"] = dict(zip(task.labels, (lp for lp, _ in free[i])))
    return out


def _generate_one(lm, task: Task, recipe: PromptRecipe, k: int, prompts: list[str], console) -> list[dict]:
    """Generate a continuation for every eval row at K shots, streaming it to stdout
    (unless `console`, the results console, is quiet)."""
    from bertctl.prompting.lm import generate

    settings = recipe.generation.model_copy(update={"stream": recipe.generation.stream and not console.quiet})
    words = {w.strip(): label for label, w in task.words.items()}
    out = []
    for i, (row, prompt) in enumerate(zip(task.eval_rows, prompts)):
        if settings.stream:
            query = render(task.input, row).replace("\n", " ")
            console.print(f"[dim][{lm.name} {k}-shot #{i}][/] {query}", markup=True, end="", soft_wrap=True)
        text = generate(lm, prompt, settings, seed=recipe.seed + i)
        gold = task.label_of(row) if task.labelled else None
        pred = words.get(text.strip(), text.strip())
        gold_text = task.words.get(gold, gold) if gold is not None else None
        out.append({"index": i, "label": gold, "generation": text, "prediction": pred,
                    "correct": None if gold is None else text.strip() == str(gold_text).strip()})
    return out


def _show_prompts(console, prompts: dict, options: list[str]) -> None:
    """--show-prompt: the exact text of example 0's prompt at every K (no markup applied)."""
    for k, (texts, _) in prompts.items():
        console.rule(f"prompt of example 0 at {k} shots")
        console.print(texts[0], markup=False, highlight=False, soft_wrap=True)
        if options:
            console.print("[dim]options:[/] " + " | ".join(repr(o) for o in options), soft_wrap=True)
    console.rule()


def _encode_all(lm, task: Task, recipe: PromptRecipe, prompts: dict, options: list[str], shown: str):
    """Token ids of every K's prompts (and content-free prompts when calibrating), checked
    against the model's context first, so a too-long prompt fails before any scoring."""
    from bertctl.prompting.scoring import check_lengths, encode

    requests, calibration = {}, {}
    for k, (texts, demos) in prompts.items():
        requests[k] = encode(lm.tokenizer, texts, options)
        check_lengths(requests[k], lm.model, f"{shown} at {k} shots")
        calibration[k] = None
        if recipe.scoring.calibrate:  # identical content-free prompts (fixed demos) are scored once
            free = content_free_prompts(task, demos, recipe.scoring.content_free)
            unique = list(dict.fromkeys(free))
            where = {p: j for j, p in enumerate(unique)}
            calibration[k] = (encode(lm.tokenizer, unique, options), [where[p] for p in free])
    return requests, calibration


def _write_results(run, task: Task, recipe: PromptRecipe, mode: str, results: list[dict], series: dict) -> dict:
    """metrics.json, results.md and the plot; returns metrics.json's dict with "tables": the
    terminal table (with the majority-class row)."""
    from bertctl.report import Table, line_plot
    from bertctl.runs import write_metrics

    report = {"task": task.name, "mode": mode, "source": task.source, "n_eval": len(task.eval_rows),
              "n_pool": len(task.pool_rows), "labels": task.words, "normalize": recipe.scoring.normalize,
              "calibrate": recipe.scoring.calibrate, "method": recipe.scoring.method, "demos": recipe.demos,
              "notes": task.notes, "rows": results}
    columns = ["model", "shots", "n", "accuracy", "macro_f1", "seconds"]
    table_rows = list(results)
    if task.labelled:
        base = majority_baseline([task.label_of(r) for r in task.eval_rows], task.labels)
        report["majority"] = base
        table_rows.append({"model": f"majority class ({task.words.get(base['label'], base['label'])})",
                           "n": len(task.eval_rows), "accuracy": base["accuracy"], "macro_f1": base["macro_f1"]})
    else:
        columns = ["model", "shots", "n", "seconds"]
    if task.labelled and results:
        report["best_accuracy"] = max(r["accuracy"] for r in results)
    write_metrics(run, report, scores={f"{r['model']} {r['shots']}-shot": r for r in results},
                  main_metric="best_accuracy" if "best_accuracy" in report else None)
    run.write_text("results.md", f"# bertctl prompt: {task.name}\n\n" + _write_table_md(table_rows, columns))
    if series:
        line_plot(run.file("accuracy_vs_shots.png"), series, "demonstrations in the prompt (K)", "accuracy",
                  f"{task.name}: accuracy vs shots ({len(task.eval_rows)} examples)",
                  hlines={"majority class": report["majority"]["accuracy"]})
    caption = (f"scores: {recipe.scoring.normalize} normalisation{', calibrated' if recipe.scoring.calibrate else ''}"
               f"; demos {recipe.demos}") if mode == "score" else "free generation (exact match when labelled)"
    return {**report, "tables": [Table(f"bertctl prompt: {task.name}", table_rows, columns, caption=caption)]}


def run_prompt(recipe: PromptRecipe, out=None, show_prompt: bool = False, console=None, stdout=None) -> dict:
    """Prompt every model at every K on the task; returns what metrics.json holds, with "run"
    (the folder) and "tables" (the results table, to print).

    console: the rich Console (bertctl.console) that shows the work as it happens (the CLI's
    is on stderr): the task, models loading, progress bars; None: nothing shown.
    stdout: the Console for what the user asked to see as it comes (the CLI's is stdout):
    --show-prompt and streamed generations; None: nothing shown.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bertctl.console import console as make_console
    from bertctl.precision import report
    from bertctl.prompting.lm import load_lm
    from bertctl.recipe import dump
    from bertctl.jsonl import dumps_line
    from bertctl.runs import Run

    console = console or make_console(quiet=True)
    stdout = stdout or make_console(quiet=True)
    task = load_task(recipe)
    mode = choose_mode(recipe, task)
    fixed = recipe.demos == "fixed"
    # prompts depend only on the task and K, not the model: build (and check) them all first
    prompts = {k: prompts_for(task, k, recipe.seed, fixed) for k in recipe.shots}
    options = option_texts(task) if mode == "score" else []

    run = Run.create(out, "prompt")
    run.note(task=task.name, model=", ".join(map(str, recipe.models)))
    run.write_text("recipe.yaml", dump(recipe))
    summary = (f"task {task.name} ({mode}): {len(task.eval_rows)} examples from {task.source}, "
               f"{len(task.pool_rows)} in the demonstration pool; shots {', '.join(map(str, recipe.shots))}")
    console.print(summary)
    run.log(summary)
    for note in task.notes:
        console.print(f"  [dim]{note}[/]")
        run.log(note)
    if show_prompt:
        _show_prompts(stdout, prompts, options)

    results, series = [], {}
    with open(run.file("predictions.jsonl"), "w", encoding="utf-8") as pred_file:
        for name in recipe.models:
            console.print(f"loading {name} ...")
            lm = load_lm(name, recipe.model)
            run.log(f"loaded {lm.label} in {lm.load_seconds:.1f}s")
            report(lm.precision, run, lambda text: console.print(f"  [dim]{text}[/]"))
            taken = {r["model"] for r in results}  # two folders both named "model" get distinct names
            shown = lm.name if lm.name not in taken else f"{lm.name}-{len(taken) + 1}"
            requests, calibration = ({}, {}) if mode != "score" else \
                _encode_all(lm, task, recipe, prompts, options, shown)
            for k in recipe.shots:
                t0 = time.perf_counter()
                if mode == "score":
                    with Progress(TextColumn(f"{shown} {k}-shot"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console, transient=True) as bar:
                        job = bar.add_task("score", total=len(task.eval_rows))
                        preds = _score_one(lm, task, recipe, requests[k], calibration[k], options,
                                           lambda n: bar.advance(job, n))
                else:
                    preds = _generate_one(lm, task, recipe, k, prompts[k][0], stdout)
                seconds = time.perf_counter() - t0
                for p, prompt, demos in zip(preds, *prompts[k]):
                    row = task.eval_rows[p["index"]]
                    line = {"model": shown, "shots": k, **p, "demos": demos, "prompt": prompt,
                            "input": {f: row.get(f) for f in task.input_fields()}}
                    pred_file.write(dumps_line(line))
                pred_file.flush()
                entry = {"model": shown, "shots": k, "n": len(preds), "seconds": round(seconds, 2),
                         "precision": lm.precision.name}
                if task.labelled:
                    entry.update(classification_metrics([p["label"] for p in preds],
                                                         [p["prediction"] for p in preds]))
                    series.setdefault(shown, ([], []))
                    series[shown][0].append(k)
                    series[shown][1].append(entry["accuracy"])
                results.append(entry)
                run.log(json.dumps(entry))

    report = _write_results(run, task, recipe, mode, results, series)
    report["run"] = str(run.path)
    return report
