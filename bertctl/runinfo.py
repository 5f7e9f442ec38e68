"""What run folders hold, read back: the library behind `bertctl runs list|show|compare`.

    find_runs(root)            run folders directly under root (recipe.yaml, log.txt or metrics.json)
    summary(path)              command, task, model, key metric, steps, status, age
    details(path)              recipe text, metrics, files
    compare(paths, png=None)   metrics side by side (+ training curves overlaid in one PNG)

Status: finished (metrics.json written), running (no metrics.json, a file changed in the
last minute), interrupted (no metrics.json but a checkpoint: `--resume` continues it),
failed (neither). Nothing here imports torch; yaml is read safely.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

from bertctl.errors import BertctlError

MARKERS = ("recipe.yaml", "log.txt", "metrics.json")
RUNNING_WINDOW_S = 60
_STAMP = re.compile(r"^(?P<command>.+?)-\d{8}-\d{6}(-\d+)?$")


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in MARKERS)


def find_runs(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise BertctlError(f"{root} is not a folder", fix="pass the folder that holds run folders (default ./runs)")
    return sorted((p for p in root.iterdir() if is_run(p)), key=lambda p: _started(p))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _recipe(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load((path / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def history(path: Path) -> list[dict]:
    """metrics.jsonl rows (a torn last line, from a kill mid-write, is skipped)."""
    rows = []
    try:
        with open(Path(path) / "metrics.jsonl", encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return rows


def _started(path: Path) -> float:
    for name in ("recipe.yaml", "log.txt"):
        if (path / name).exists():
            return (path / name).stat().st_mtime
    return path.stat().st_mtime


def _last_change(path: Path) -> float:
    times = [(path / n).stat().st_mtime for n in ("log.txt", "metrics.jsonl", "recipe.yaml") if (path / n).exists()]
    return max(times, default=path.stat().st_mtime)


def status(path: Path) -> str:
    if (path / "metrics.json").exists():
        return "finished"
    if time.time() - _last_change(path) < RUNNING_WINDOW_S:
        return "running"
    ckpts = path / "checkpoints"
    if ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir()):
        return "interrupted"
    return "failed"


def command_of(path: Path, recipe: dict) -> str:
    match = _STAMP.match(path.name)
    if match:
        return match["command"]
    return str(recipe.get("command") or "?")


def key_metric(metrics: dict) -> tuple[str, float] | None:
    """The one number a run is judged by: the finetune main metric on dev, the GLUE
    score, held-out masked accuracy or perplexity, else the first number in metrics.json."""
    if not isinstance(metrics, dict):
        return None
    dev = metrics.get("dev")
    if isinstance(dev, dict) and metrics.get("main_metric") in dev:
        return f"dev {metrics['main_metric']}", dev[metrics["main_metric"]]
    for name in ("glue_score", "mlm_accuracy", "perplexity", "lm_accuracy", "best_accuracy", "accuracy"):
        if _number(metrics.get(name)):
            return name, metrics[name]
    flat = flatten(metrics)
    return next(iter(flat.items()), None)


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


def _task(command: str, recipe: dict, metrics: dict) -> str:
    if command.startswith("finetune"):
        return str(recipe.get("task") or metrics.get("task") or "")
    if command == "pretrain":
        return str(metrics.get("objective") or (recipe.get("objective") or {}).get("kind") or "")
    if command == "eval-glue":
        return "glue " + str(recipe.get("tasks") or "all")
    if command.startswith("probe"):
        return command.split("-", 1)[-1]
    return str(recipe.get("task") or "")


def _model(command: str, recipe: dict, metrics: dict) -> str:
    if isinstance(metrics.get("model"), str):
        return metrics["model"].split(" (")[0]
    model = recipe.get("model")
    if command == "prompt":
        return ", ".join(map(str, recipe.get("models") or []))
    if isinstance(model, dict):
        if command == "pretrain":
            init = model.get("init")
            return str(init) if init else f"{model.get('arch', 'bert')} {model.get('layers', '?')}x{model.get('hidden', '?')}"
        return str(model.get("name_or_path") or "")
    return ""


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def summary(path: Path) -> dict:
    path = Path(path)
    recipe = _recipe(path)
    metrics = _read_json(path / "metrics.json") or {}
    command = command_of(path, recipe)
    key = key_metric(metrics)
    steps = metrics.get("steps", metrics.get("step")) if isinstance(metrics, dict) else None
    if steps is None:
        steps = next((r["step"] for r in reversed(history(path)) if "step" in r), None)
    return {"run": path.name, "command": command, "task": _task(command, recipe, metrics),
            "model": _model(command, recipe, metrics), "metric": f"{key[0]} {key[1]:.4g}" if key else "",
            "steps": steps, "status": status(path), "age": age(time.time() - _started(path)), "path": str(path)}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def files(path: Path) -> list[dict]:
    """Top-level entries; a folder counts its files and their total size."""
    out = []
    for p in sorted(Path(path).iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            inside = [f for f in p.rglob("*") if f.is_file()]
            out.append({"file": p.name + "/", "size": _size(sum(f.stat().st_size for f in inside)),
                        "files": len(inside)})
        else:
            out.append({"file": p.name, "size": _size(p.stat().st_size), "files": 1})
    return out


def details(path: Path) -> dict:
    path = Path(path)
    if not is_run(path):
        raise BertctlError(f"{path} is not a run folder (no recipe.yaml, log.txt or metrics.json)",
                           fix="pass a folder under runs/ (see `bertctl runs list`)")
    recipe_file = path / "recipe.yaml"
    return {"summary": summary(path), "recipe": recipe_file.read_text(encoding="utf-8") if recipe_file.exists() else "",
            "metrics": _read_json(path / "metrics.json") or {}, "files": files(path)}


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
    names = _names(paths)
    flats = [flatten(_read_json(p / "metrics.json") or {}) for p in paths]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    rows = [{"metric": k, **{n: f.get(k) for n, f in zip(names, flats)}} for k in keys]
    drawn = curves_png(png, dict(zip(names, paths))) if png is not None else None
    return {"runs": names, "rows": rows, "png": drawn}


def _names(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    if len(set(names)) < len(names):  # e.g. runs/a/model vs runs/b/model
        names = [f"{p.parent.name}/{p.name}" for p in paths]
    return names


def curves_png(path: Path, runs: dict[str, Path]) -> Path | None:
    """Training loss against step (left) and every eval_* metric the runs share (right),
    one line per run; None when no run logged any step."""
    from bertctl.report import _plt

    series = {name: history(p) for name, p in runs.items()}
    if not any(any("loss" in r for r in rows) for rows in series.values()):
        return None
    evals = [k for k in dict.fromkeys(k for rows in series.values() for r in rows for k in r) if k.startswith("eval_")]
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6.4, 4.2), squeeze=False)
    left = axes[0][0]
    for name, rows in series.items():
        pts = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
        if pts:
            left.plot(*zip(*pts), label=name)
    left.set(xlabel="step", ylabel="training loss", title="training loss")
    if evals:
        right, metric = axes[0][1], evals[0]
        for name, rows in series.items():
            pts = [(r["step"], r[metric]) for r in rows if metric in r]
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
