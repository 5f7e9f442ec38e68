"""Does pretraining help fine-tuning? The lecture's claim, on real data.

One `bertctl pretrain` run (e.g. the `pretrain_english` recipe) is fine-tuned on real tasks
from its pretrained weights and from a random init of the same architecture (the
`compare_init: true` switch of `bertctl finetune`: the same recipe, the same tokenizer,
only the starting weights differ), with 3 seeds each. Then a learning curve: SST-2 dev
accuracy against the number of labelled rows, both inits.

Every run is a plain `bertctl finetune` command, printed before it runs; the study writes
one table (mean ± std per side, and whether the gap exceeds the seed spread), a plot of
the training curves, a plot of the learning curve, and results.json, to --out.

    python benchmarks/pretrain_helps.py --model runs/pretrain-english          # ~13 min on 2 cores (2 x 128 model)
    python benchmarks/pretrain_helps.py --model runs/pretrain-english --tasks sst2 --seeds 1   # one task, one seed
    python benchmarks/pretrain_helps.py --model runs/pretrain-english --curve 250,1000,4000 --curve-seeds 3

Needs ../shared/data (GLUE SST-2, UD EWT, CoNLL-2003, movie reviews).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

# The tasks, as rows: (shipped recipe, overrides for a small model pretrained here).
# A 4-layer model from scratch wants a higher learning rate than minilm's recipes use.
TASKS = {
    "sst2": ("finetune_sst2", ["data.max_train_samples=2000", "train.epochs=3", "train.lr=2e-4",
                               "train.eval_every=0"]),
    "ewt_pos": ("finetune_ewt_pos", ["train.lr=3e-4"]),
    "conll2003": ("finetune_conll2003", ["data.max_train_samples=4000", "data.max_eval_samples=1000",
                                         "train.epochs=2", "train.lr=3e-4", "model.max_length=128"]),
    "movie_reviews": ("finetune_movie_reviews", ["data.max_train_samples=400", "train.lr=2e-4"]),
}


def bertctl(command: str, recipe: str, overrides: list[str], out: Path) -> dict:
    """One `bertctl COMMAND RECIPE overrides --out OUT` (reused when its metrics.json is
    there); its metrics.json."""
    if not (out / "metrics.json").exists():
        cmd = [sys.executable, "-m", "bertctl", command, recipe, *overrides, "--out", str(out)]
        print("$ bertctl " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
        if out.exists():  # an interrupted earlier attempt: start again
            import shutil

            shutil.rmtree(out)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def finetune(recipe: str, overrides: list[str], out: Path) -> dict:
    return bertctl("finetune", recipe, overrides, out)


def study_folder(path: str) -> Path | None:
    """The study's output folder (made), or None when the real data is absent (said)."""
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (the study needs real data)")
        return None
    out = Path(path).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# the figure a task is judged by, where it is not the run's main metric (NER: entity F1, not token accuracy)
METRIC = {"conll2003": "f1"}


def side(metrics: dict, name: str, task: str = "") -> float:
    return float(metrics["compare_init"][name][METRIC.get(task, metrics["main_metric"])])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the pretraining run (its folder) to fine-tune")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--curve", default="250,1000,4000", help="SST-2 training rows for the learning curve ('' = none)")
    p.add_argument("--curve-seeds", type=int, default=3)
    p.add_argument("--out", default="runs/pretrain-helps")
    args = p.parse_args(argv)
    out, model = study_folder(args.out), str(Path(args.model).resolve())
    if out is None:
        return 0
    os.chdir(ROOT)  # the shipped recipes read ../shared/data relative to the project root
    t0 = time.time()
    results: dict = {"model": model, "tasks": {}, "curve": {}}
    for task in args.tasks.split(","):
        recipe, overrides = TASKS[task]
        runs = [finetune(recipe, [f"model.name_or_path={model}", "compare_init=true", f"train.seed={s}", *overrides],
                         out / f"{task}-seed{s}") for s in range(args.seeds)]
        pre, rnd = [side(m, "pretrained", task) for m in runs], [side(m, "random", task) for m in runs]
        (pm, ps), (rm, rs) = mean_std(pre), mean_std(rnd)
        results["tasks"][task] = {"metric": METRIC.get(task, runs[0]["main_metric"]), "pretrained": pre, "random": rnd,
                                  "pretrained_mean": pm, "pretrained_std": ps, "random_mean": rm, "random_std": rs,
                                  "gap": pm - rm, "beyond_spread": pm - rm > ps + rs,
                                  "curves": [m["compare_init"]["epochs"] for m in runs]}
    if "sst2" in results["tasks"]:  # the tasks' SST-2 rows are one more point of the learning curve
        n = next(int(o.split("=")[1]) for o in TASKS["sst2"][1] if o.startswith("data.max_train_samples="))
        results["curve"][n] = {k: results["tasks"]["sst2"][k] for k in ("pretrained", "random")}
    for n in [int(x) for x in args.curve.split(",") if x]:
        recipe, overrides = TASKS["sst2"]
        overrides = [o for o in overrides if not o.startswith("data.max_train_samples")]
        runs = [finetune(recipe, [f"model.name_or_path={model}", "compare_init=true", f"train.seed={s}",
                                  f"data.max_train_samples={n}", *overrides], out / f"sst2-rows{n}-seed{s}")
                for s in range(args.curve_seeds)]
        results["curve"][n] = {"pretrained": [side(m, "pretrained") for m in runs],
                               "random": [side(m, "random") for m in runs]}
    results["seconds"] = round(time.time() - t0)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, out)
    print(f"{'task':<14} {'metric':<10} {'pretrained':>16} {'random init':>16} {'gap':>7}  beyond seed spread")
    for task, r in results["tasks"].items():
        print(f"{task:<14} {r['metric']:<10} {r['pretrained_mean']:>9.4f} ± {r['pretrained_std']:.4f} "
              f"{r['random_mean']:>9.4f} ± {r['random_std']:.4f} {r['gap']:>+7.4f}  {'yes' if r['beyond_spread'] else 'NO'}")
    for n, r in sorted(results["curve"].items()):
        print(f"SST-2 {n:>6} rows: pretrained {statistics.fmean(r['pretrained']):.4f}, "
              f"random {statistics.fmean(r['random']):.4f}")
    wins = sum(r["beyond_spread"] for r in results["tasks"].values())
    print(f"RESULT pretrain_helps wins_beyond_spread={wins}/{len(results['tasks'])} seconds={results['seconds']} "
          f"out={out}")
    return 0


def plot(results: dict, out: Path) -> None:
    """training_curves.png: dev metric per epoch, a panel per task, every seed; learning_curve.png."""
    from bertctl.report import _plt

    plt = _plt()
    tasks = results["tasks"]
    if tasks:
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
        for ax, (task, r) in zip(axes[0], tasks.items()):
            for seed, curves in enumerate(r["curves"]):
                for name, colour in (("pretrained", "tab:blue"), ("random", "tab:orange")):
                    pts = [(e["epoch"], e[r["metric"]]) for e in curves[name] if r["metric"] in e]
                    if pts:
                        ax.plot(*zip(*pts), marker="o", color=colour, alpha=0.7,
                                label=(name if name == "pretrained" else "random init") if seed == 0 else None)
            ax.set(title=task, xlabel="epoch", ylabel=f"dev {r['metric']}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "training_curves.png", dpi=110)
        plt.close(fig)
    if results["curve"]:
        fig, ax = plt.subplots(figsize=(5.6, 3.8))
        sizes = sorted(results["curve"], key=int)
        for name, colour in (("pretrained", "tab:blue"), ("random", "tab:orange")):
            means = [statistics.fmean(results["curve"][n][name]) for n in sizes]
            ax.plot([int(n) for n in sizes], means, marker="o", color=colour,
                    label="pretrained" if name == "pretrained" else "random init")
        ax.set(xscale="log", xlabel="labelled SST-2 rows", ylabel="dev accuracy",
               title="SST-2: accuracy against labelled data")
        ax.set_xticks([int(n) for n in sizes], [str(n) for n in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "learning_curve.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
