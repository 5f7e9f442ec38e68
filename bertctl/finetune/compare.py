"""`compare_init: true`: the same recipe fine-tuned from pretrained and from random weights.

The run folder is the pretrained run; `random-init/` is the same recipe from random weights
(full fine-tuning, same architecture). comparison.png shows both curves and metrics.json
holds both dev results under "compare_init". The per-epoch curves of any fine-tuning run
(curve.png) are drawn here too, by `curves_png`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from bertctl.errors import BertctlError
from bertctl.finetune.config import FinetuneRecipe
from bertctl.runs import Run, write_metrics

RANDOM_DIR = "random-init"

TrainOne = Callable[..., dict]  # train_one(recipe, run, resume, say, record=True) -> summary


def compare_init(recipe: FinetuneRecipe, run: Run, resume: bool, say, train_one: TrainOne) -> dict:
    """The recipe trained twice, from pretrained and from random weights (`train_one` is
    bertctl.finetune.run.train_one); returns the pretrained run's dev metrics."""
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
    sub.finish()
    comparison = {"pretrained": a["dev"], "random": b["dev"],
                  "epochs": {"pretrained": a["epochs"], "random": b["epochs"]}}
    write_metrics(run, {**a, "compare_init": comparison})
    if run.main:
        curves_png(run.file("comparison.png"), {"pretrained": a["epochs"], "random init": b["epochs"]},
                   a["main_metric"], f"{recipe.task}: pretrained vs random init ({a['model'].split(' (')[0]})")
    return a["dev"]


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


def comparison_rows(summary: dict) -> list[dict]:
    """metric | pretrained | random init | difference, for compare_init runs."""
    c = summary["compare_init"]
    return [{"metric": k, "pretrained": v, "random init": c["random"].get(k),
             "difference": v - c["random"][k] if isinstance(c["random"].get(k), (int, float)) else None}
            for k, v in c["pretrained"].items()]
