"""What run folders hold, read back: the library behind `bertctl runs list|show|compare`.

    find_runs(root)            run folders directly under root (see runs.read_record)
    summary(path)              command, task, model, key metric, steps, status, age
    details(path)              recipe text, metrics, files, notes
    compare(paths, png=None)   metrics side by side (+ training curves overlaid in one PNG)

Every fact comes from the folder's record (runs.read_record: run.json, status by its lock)
and its metrics (runs.read_metrics: one layout), never from names or clocks. A damaged file
is shown as such, not a traceback. Nothing here imports torch; yaml is read safely.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.jsonl import read_jsonl
from bertctl.runs import RunRecord, read_metrics, read_recipe, read_record


def is_run(path: Path) -> bool:
    return read_record(path) is not None


def find_runs(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise BertctlError(f"{root} is not a folder", fix="pass the folder that holds run folders (default ./runs)")
    return sorted((p for p in root.iterdir() if is_run(p)), key=lambda p: _started(p))


def _record(path: Path) -> RunRecord:
    record = read_record(path)
    if record is None:
        raise BertctlError(f"{path} is not a run folder (no run.json, nor a recipe.yaml naming its command)",
                           fix="pass a folder under runs/ (see `bertctl runs list`)")
    return record


def metrics_of(path: Path) -> tuple[dict, str]:
    """(metrics.json in the one layout, "" or why it could not be read)."""
    try:
        return read_metrics(path), ""
    except BertctlError as e:
        return {}, e.message


def history(path: Path) -> list[dict]:
    """metrics.jsonl rows (a torn last line, from a kill mid-write, is skipped); a
    damaged log reads as no log, as `runs` only shows it."""
    try:
        return read_jsonl(Path(path) / "metrics.jsonl", objects=False)
    except BertctlError:
        return []


def _started(path: Path) -> float:
    for name in ("recipe.yaml", "log.txt", "run.json", ""):  # run.json is rewritten when the run ends
        try:
            return (path / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def status(path: Path) -> str:
    return _record(path).status


def key_metric(metrics: dict, split_named: bool = True) -> tuple[str, object] | None:
    """The one number a run is judged by: metrics.json's main metric (named with its split,
    e.g. "dev accuracy", when `split_named`), else its first number."""
    if not isinstance(metrics, dict):
        return None
    main, scores = metrics.get("main_metric"), metrics.get("scores") or {}
    if main is not None and "main_value" in metrics:
        split = next((k for k, v in scores.items() if isinstance(v, dict) and main in v), None)
        return (f"{split} {main}" if split and split_named else str(main)), metrics["main_value"]
    return next(iter(flatten(_detail(metrics)).items()), None)


def shown(value) -> str:
    """A metric's value for a table: a number to 4 significant digits, anything else as text."""
    if _number(value):
        return f"{value:.4g}"
    return "null" if value is None else str(value)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Every finite number of a metrics.json, nested keys joined with '.', lists left out."""
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif _number(v):
            out[f"{prefix}{k}"] = v
    return out


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def summary(path: Path) -> dict:
    path = Path(path)
    record = _record(path)
    metrics, problem = metrics_of(path)
    key = key_metric(metrics, split_named=record.command.startswith("finetune"))
    steps = metrics.get("steps")
    if steps is None:
        steps = next((r["step"] for r in reversed(history(path)) if isinstance(r, dict) and "step" in r), None)
    metric = "metrics.json unreadable" if problem else f"{key[0]} {shown(key[1])}" if key else ""
    return {"run": path.name, "command": record.command, "task": record.task, "model": record.model,
            "metric": metric, "steps": steps, "status": record.status,
            "age": age(time.time() - _started(path)), "path": str(path)}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def files(path: Path) -> list[dict]:
    """Top-level entries; a folder counts its files and their total size. A link that
    points nowhere is listed as such."""
    out = []
    for p in sorted(Path(path).iterdir()):
        if p.name.startswith("."):
            continue
        try:
            if p.is_dir():
                inside = [f for f in p.rglob("*") if f.is_file()]
                out.append({"file": p.name + "/", "size": _size(sum(f.stat().st_size for f in inside)),
                            "files": len(inside)})
            else:
                out.append({"file": p.name, "size": _size(p.stat().st_size), "files": 1})
        except OSError:
            out.append({"file": p.name, "size": "unreadable (a broken link?)", "files": 0})
    return out


def details(path: Path) -> dict:
    path = Path(path)
    record = _record(path)
    metrics, problem = metrics_of(path)
    notes = list(record.notes) + ([problem] if problem else [])
    if record.error and record.status in ("failed", "interrupted"):
        notes.append(f"ended with: {record.error}")
    return {"summary": summary(path), "recipe": read_recipe(path)[0], "metrics": _detail(metrics),
            "files": files(path), "notes": notes}


# ---------------------------------------------------------------------------- compare


def compare(paths: list[Path], png: Path | None = None) -> dict:
    """{"runs": names, "rows": [{"metric", name: value, ...}], "png": path or None}.
    Rows: the metrics any run has (flattened metrics.json), in first-seen order."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise BertctlError("compare needs at least two run folders", fix="bertctl runs compare RUN RUN [RUN ...]")
    for p in paths:
        if not is_run(p):
            raise BertctlError(f"{p} is not a run folder", fix="pass folders under runs/ (see `bertctl runs list`)")
    if png is not None and not Path(png).parent.is_dir():
        raise BertctlError(f"cannot write {png}: folder {Path(png).parent} does not exist",
                           fix="create it first, or pass --png in an existing folder")
    names = _names(paths)
    flats = [flatten(_detail(metrics_of(p)[0])) for p in paths]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    rows = [{"metric": k, **{n: f.get(k) for n, f in zip(names, flats)}} for k in keys]
    drawn = curves_png(png, dict(zip(names, paths))) if png is not None else None
    return {"runs": names, "rows": rows, "png": drawn}


def _detail(metrics: dict) -> dict:
    """What compare and show list: the command's own numbers, as it wrote them (the outer
    layout's scores, main value and timings are copies of them)."""
    return {k: v for k, v in metrics.items() if k not in ("schema", "main_value", "scores", "timings")}


def _names(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    if len(set(names)) < len(names):  # e.g. runs/a/model vs runs/b/model
        names = [f"{p.parent.name}/{p.name}" for p in paths]
    return names


def curves_png(path: Path, runs: dict[str, Path]) -> Path | None:
    """Training loss against step (left) and every eval_* metric the runs share (right),
    one line per run; None when no run logged any step."""
    from bertctl.report import _plt

    series = {name: [r for r in history(p) if isinstance(r, dict)] for name, p in runs.items()}
    if not any(any(_number(r.get("loss")) for r in rows) for rows in series.values()):
        return None
    evals = [k for k in dict.fromkeys(k for rows in series.values() for r in rows for k in r) if k.startswith("eval_")]
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6.4, 4.2), squeeze=False)
    left = axes[0][0]
    for name, rows in series.items():
        pts = [(r["step"], r["loss"]) for r in rows if _number(r.get("loss")) and _number(r.get("step"))]
        if pts:
            left.plot(*zip(*pts), label=name)
    left.set(xlabel="step", ylabel="training loss", title="training loss")
    if evals:
        right, metric = axes[0][1], evals[0]
        for name, rows in series.items():
            pts = [(r["step"], r[metric]) for r in rows if _number(r.get(metric)) and _number(r.get("step"))]
            if pts:
                right.plot(*zip(*pts), marker="o", label=name)
        right.set(xlabel="step", ylabel=metric[5:], title=f"evaluation: {metric[5:]}")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
