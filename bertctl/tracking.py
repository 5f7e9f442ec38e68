"""What the training loop reports besides metrics.jsonl: experiment trackers and, when
stderr is not a terminal, one progress line per logging step (on stderr, the progress
channel: stdout holds results only; hidden by --quiet).

Trackers (`train.report_to: [tensorboard, mlflow, wandb]`, default none) go through
accelerate's tracking API (`Accelerator(log_with=...)`, `init_trackers`, `log`,
`end_training`), on rank 0 only (accelerate's trackers are main-process only). Where
each writes, unless its own environment variables say otherwise:

    tensorboard   RUN/tensorboard/bertctl/   (`tensorboard --logdir runs/` shows every run)
    mlflow        file:RUN/mlruns            (MLFLOW_TRACKING_URI for a server or a shared store)
    wandb         RUN/wandb/                 (WANDB_MODE=offline to sync later; project "bertctl")

Logged: train/loss, train/lr, train/tokens_per_s (and the loop's extras) at every logging
step, eval/<metric> at every evaluation, and the resolved recipe (recipe.yaml, flattened
to dotted keys) as hyperparameters.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from datetime import timedelta

from bertctl.errors import BertctlError

BACKENDS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # name -> module to import
PROJECT = "bertctl"


def check_installed(report_to: list[str]) -> None:
    """A missing backend is one error line naming the extra that installs it."""
    for name in report_to:
        if importlib.util.find_spec(BACKENDS[name]) is None:
            raise BertctlError(f"train.report_to includes {name}, which is not installed",
                               fix=f"pip install 'bertctl[{name}]' (or drop {name} from train.report_to)")


def accelerator_kwargs(report_to: list[str], run) -> dict:
    if not report_to:
        return {}
    return {"log_with": list(report_to), "project_dir": str(run.path / "tensorboard")}


def hyperparameters(run) -> dict:
    """recipe.yaml flattened to {"train.lr": 5e-05, ...}; lists and None as text (what
    every backend accepts)."""
    import yaml

    path = run.file("recipe.yaml")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    out = {}

    def walk(d, prefix=""):
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v if isinstance(v, (bool, int, float, str)) else str(v)

    walk(data if isinstance(data, dict) else {})
    return out


class Trackers:
    """Context manager around the loop: starts the trackers, logs rows, ends them."""

    def __init__(self, acc, report_to: list[str], run):
        self.acc, self.report_to, self.run = acc, list(report_to), run
        self.active = bool(self.report_to) and run.main

    def __enter__(self):
        if self.active:
            if "mlflow" in self.report_to and not os.environ.get("MLFLOW_TRACKING_URI"):
                import mlflow

                # MLflow 3 keeps its file store only behind this switch (a database store needs
                # the full mlflow package); the run folder is where everything else lives too
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                mlflow.set_tracking_uri((self.run.path / "mlruns").resolve().as_uri())
            init = {"wandb": {"name": self.run.path.name, "dir": str(self.run.path)},
                    "mlflow": {"run_name": self.run.path.name}}
            self.acc.init_trackers(PROJECT, config=hyperparameters(self.run),
                                   init_kwargs={k: v for k, v in init.items() if k in self.report_to})
        return self

    def log(self, row: dict, prefix: str) -> None:
        if self.active:
            values = {f"{prefix}/{k.removeprefix(prefix + '_')}": v for k, v in row.items()
                      if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.acc.log(values, step=int(row["step"]))

    def __exit__(self, *exc):
        if self.active:
            self.acc.end_training()
        return False


# ------------------------------------------------------------------------ progress lines


def progress_line(describe: str, step: int, total: int, row: dict, eta_s: float | None) -> str:
    """One line a batch job's log can hold: step, loss, lr, throughput, ETA."""
    parts = [f"{describe}: step {step}/{total} ({100 * step / max(total, 1):.0f}%)", f"loss {row['loss']:.4f}"]
    if "lr" in row:
        parts.append(f"lr {row['lr']:.3g}")
    if "tokens_per_s" in row:
        parts.append(f"{row['tokens_per_s']:,.0f} tokens/s")
    if eta_s is not None:
        parts.append(f"ETA {timedelta(seconds=round(eta_s))}")
    return " | ".join(parts)


class Lines:
    """Progress as lines on stderr (for logs), when stderr is not a terminal."""

    def __init__(self, describe: str, total: int, start: int):
        self.describe, self.total, self.start, self.t0 = describe, total, start, time.perf_counter()

    def update(self, step: int, row: dict) -> None:
        done = step - self.start
        eta = (time.perf_counter() - self.t0) / done * (self.total - step) if done > 0 else None
        print(progress_line(self.describe, step, self.total, row, eta), file=sys.stderr, flush=True)


def wants_lines() -> bool:
    return not sys.stderr.isatty()
