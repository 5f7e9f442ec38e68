"""GLUE scoring by the official rules, and the results table in every format.

Rules (as the GLUE leaderboard computes its "Score" column):
  - every metric is in points (0-100);
  - a task's score is the mean of its metrics (MRPC: F1 and accuracy; STS-B: Pearson
    and Spearman; QQP: F1 and accuracy; MNLI: matched and mismatched accuracy);
  - the GLUE score is the mean of the task scores.
With the human-baseline figures this gives 87.1, the leaderboard's number (a test).

When only some tasks ran, the reference rows are also scored over the same subset, so
the comparison on screen is like for like. Pure Python apart from the plot.
"""

from __future__ import annotations

import csv
import io
import statistics
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from bertctl.glue.tasks import REFERENCES, TASKS, GlueTask


def round_half_up(x: float, digits: int = 1) -> float:
    """87.05 -> 87.1 as people (and the leaderboard) round, not 87.0 as binary floats do."""
    return float(Decimal(repr(round(x, 9))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def points(metrics: dict, task: GlueTask) -> dict[str, float]:
    """The task's official metrics in GLUE points, from fractions (0-1) keyed by Metric.key."""
    missing = [k for k in task.metric_keys() if k not in metrics]
    if missing:
        raise KeyError(f"{task.name}: no {', '.join(missing)} in {sorted(metrics)}")
    return {k: 100.0 * float(metrics[k]) for k in task.metric_keys()}


def task_score(values: dict[str, float], task: GlueTask) -> float:
    """Mean of the task's metrics (already in points)."""
    return statistics.fmean(values[k] for k in task.metric_keys())


def glue_score(task_scores: dict[str, float]) -> float | None:
    """Mean over the tasks present (None when there are none)."""
    return statistics.fmean(task_scores.values()) if task_scores else None


def reference_scores(reference: dict[str, dict[str, float]], names=None) -> dict[str, float]:
    """Per-task scores of a reference row (HUMAN, BERT_BASE), for the named tasks."""
    names = list(names) if names is not None else list(reference)
    return {n: task_score(reference[n], TASKS[n]) for n in names if n in reference}


def aggregate(task: GlueTask, per_seed: list[dict[str, float]]) -> dict:
    """Mean and (sample) standard deviation over seeds, per metric and for the score.

    per_seed: one {metric key: points} dict per finished seed.
    """
    scores = [task_score(m, task) for m in per_seed]
    out = {"n_seeds": len(per_seed), "score": statistics.fmean(scores),
           "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "metrics": {}, "metrics_std": {}}
    for key in task.metric_keys():
        values = [m[key] for m in per_seed]
        out["metrics"][key] = statistics.fmean(values)
        out["metrics_std"][key] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


# ------------------------------------------------------------------------- the rows


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{round_half_up(x):.1f}"


def _metric_values(task: GlueTask, values: dict[str, float]) -> str:
    return "/".join(_fmt(values[m.key]) for m in task.metrics)


def result_rows(results: dict[str, dict]) -> tuple[list[dict], dict]:
    """The table as rows of strings (same for terminal, Markdown and CSV), plus the
    summary numbers. results: task name -> aggregate() output, for tasks that ran."""
    names = [n for n in TASKS if n in results]
    rows = []
    for name in names:
        task, r = TASKS[name], results[name]
        human, bert = REFERENCES["Human baseline"][name], REFERENCES["BERT-base dev"][name]
        model = _metric_values(task, r["metrics"])
        if r["n_seeds"] > 1:
            model += " ± " + _metric_values(task, r["metrics_std"])
        rows.append({
            "task": name,
            "metric": "/".join(m.label for m in task.metrics),
            "model": model,
            "score": _fmt(r["score"]) + (f" ± {_fmt(r['score_std'])}" if r["n_seeds"] > 1 else ""),
            "human": _metric_values(task, human),
            "bert_base": _metric_values(task, bert),
        })
    model = glue_score({n: results[n]["score"] for n in names})
    subset = {label: glue_score(reference_scores(ref, names)) for label, ref in REFERENCES.items()}
    full = {label: glue_score(reference_scores(ref)) for label, ref in REFERENCES.items()}
    complete = len(names) == len(TASKS)
    if names and not complete:  # like for like: the references over the same tasks
        rows.append({"task": f"GLUE score ({len(names)} tasks)", "metric": "mean", "model": "", "score": _fmt(model),
                     "human": _fmt(subset["Human baseline"]), "bert_base": _fmt(subset["BERT-base dev"])})
    rows.append({"task": "GLUE score (all 9)", "metric": "mean", "model": "", "score": _fmt(model) if complete else "",
                 "human": _fmt(full["Human baseline"]), "bert_base": _fmt(full["BERT-base dev"])})
    summary = {
        "glue_score": model, "tasks": names, "complete": complete,
        "reference_same_tasks": subset, "reference_all_tasks": full,
    }
    return rows, summary


COLUMNS = {"task": "Task", "metric": "Metric", "model": "Model", "score": "Score",
           "human": "Human baseline", "bert_base": "BERT-base dev"}


def rich_table(rows: list[dict], title: str, caption: str | None = None):
    from rich.table import Table

    t = Table(title=title, caption=caption, title_style="bold")
    for key, head in COLUMNS.items():
        t.add_column(head, justify="left" if key in ("task", "metric") else "right",
                     style="bold" if key == "score" else None, no_wrap=key == "task")
    n_tasks = sum(1 for r in rows if r["task"] in TASKS)
    for i, row in enumerate(rows):
        t.add_row(*(row[k] for k in COLUMNS), end_section=(i == n_tasks - 1))
    return t


def markdown(rows: list[dict], title: str, notes: list[str] = ()) -> str:
    head = "| " + " | ".join(COLUMNS.values()) + " |"
    rule = "|" + "|".join("---" if k in ("task", "metric") else "---:" for k in COLUMNS) + "|"
    body = ["| " + " | ".join(r[k] for k in COLUMNS) + " |" for r in rows]
    return "\n".join([f"# {title}", "", head, rule, *body, "", *[f"- {n}" for n in notes]]).rstrip() + "\n"


def csv_text(results: dict[str, dict]) -> str:
    """One line per task and metric, with numbers (not formatted strings): for scripts."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "metric", "value", "std", "n_seeds", "task_score", "task_score_std", "human", "bert_base", "seconds"])
    for name in [n for n in TASKS if n in results]:
        r = results[name]
        for key in TASKS[name].metric_keys():
            w.writerow([name, key, f"{r['metrics'][key]:.4f}", f"{r['metrics_std'][key]:.4f}", r["n_seeds"],
                        f"{r['score']:.4f}", f"{r['score_std']:.4f}",
                        REFERENCES["Human baseline"][name][key], REFERENCES["BERT-base dev"][name][key], r.get("seconds", "")])
    return buf.getvalue()


def bar_chart(path: Path, results: dict[str, dict], model_label: str) -> Path:
    """Task scores of the model next to the human baseline and BERT-base."""
    from bertctl.report import bar_chart as draw

    names = [n for n in TASKS if n in results]
    series = {model_label: [results[n]["score"] for n in names]}
    for label, ref in REFERENCES.items():
        scores = reference_scores(ref, names)
        series[label] = [scores[n] for n in names]
    return draw(path, names, series, ylabel="task score (GLUE points)", title="GLUE dev: model vs references")
