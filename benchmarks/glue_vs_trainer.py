"""`bertctl eval-glue` against a plain transformers `Trainer` with the same settings.

For each task, both fine-tune the same model on the same training rows (the same seeded
train-size cap), with the same epochs, learning rate, schedule (10% warm-up, cosine),
AdamW (eps 1e-6, weight decay 0.01 off biases/LayerNorm), batch size, gradient clipping,
max length, length-grouped batches and seed, and are scored on the same dev rows with
the official GLUE metrics. The two differ only in implementation (data pipeline,
training loop, RNG streams), so their scores should agree within noise.

Noise: the two runs differ like two seeds of one recipe do. The yardstick here is the
paired bootstrap over dev examples (1,000 resamples) of the score difference: a task
agrees when |bertctl - Trainer| <= 2 standard errors of that difference. With
--seeds N > 1 each side runs N seeds and the seed-to-seed spread joins the noise.

    python benchmarks/glue_vs_trainer.py                 # SST-2, MRPC, STS-B at 400 train rows, 3 epochs
    python benchmarks/glue_vs_trainer.py --quick         # SST-2 and MRPC, 200 rows, 1 epoch (about a minute)
    python benchmarks/glue_vs_trainer.py --tasks RTE,CoLA --max-train 2000 --epochs 3 --seeds 3

Ends with one line: RESULT glue_vs_trainer max_abs_diff=<points> within_noise=<yes|no> ...

Measured on the shared 2-core dev machine (OMP_NUM_THREADS=1, other jobs running, so the
times are provisional), all-MiniLM-L6-v2, lr 4e-5, batch 16, seed 0:
  default (SST-2/MRPC/STS-B, 400 rows, 3 epochs, 500 dev rows): bertctl 73.8/74.8/25.9,
    Trainer 75.2/74.8/25.1, max |diff| 1.4 points, within noise; 592 s wall.
  CoLA and STS-B at 2,000 rows (1,000 dev rows): STS-B 79.7 vs 79.4; CoLA 0.0 vs 6.7 with
    one seed (both sit on the all-"acceptable" plateau; they differ in 3 of 1,000
    predictions), and with --seeds 3: 2.0 ± 3.4 vs 2.2 ± 3.8, |diff| 0.2, within noise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bertctl.glue import score  # noqa: E402
from bertctl.glue.tasks import TASKS, GlueTask, task_names  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue-dir", default=str(ROOT.parent / "shared" / "data" / "glue"))
    p.add_argument("--model", default="minilm")
    p.add_argument("--tasks", default="SST-2,MRPC,STS-B")
    p.add_argument("--max-train", type=int, default=400, help="train rows per task (seeded random subset)")
    p.add_argument("--max-eval", type=int, default=500, help="dev rows per task (seeded random subset)")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--lr", type=float, default=4e-5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="seeds per side (noise then includes the seed spread)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="SST-2 and MRPC, 200 rows, 1 epoch (a smoke test)")
    p.add_argument("--out", default=None, help="keep the bertctl suite folder here (default: a temp folder)")
    args = p.parse_args(argv)
    if args.quick:
        args.tasks, args.max_train, args.max_eval, args.epochs = "SST-2,MRPC", 200, 200, 1
    return args


# ------------------------------------------------------------------ the two sides


def run_trainer(args, task: GlueTask, train: list[dict], dev: list[dict], seed: int) -> tuple[list, float]:
    """A plain `Trainer` run; returns dev predictions (label strings or floats) and seconds."""
    import numpy as np
    import torch
    import transformers
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from bertctl.data.readers import build_label_list
    from bertctl.models import resolve

    transformers.logging.set_verbosity_error()
    path = resolve(args.model).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    labels = None if task.regression else build_label_list([r["label"] for r in train], None, "dev")
    pair = len(task.inputs) == 2

    def encode(rows):
        enc = tokenizer([r["sentence1"] for r in rows], [r["sentence2"] for r in rows] if pair else None,
                        truncation=True, max_length=args.max_length)
        target = [float(r["label"]) for r in rows] if task.regression else [labels.index(r["label"]) for r in rows]
        return Dataset.from_dict({**enc, "labels": target})

    transformers.set_seed(seed)  # the new head's initialisation, as bertctl seeds it
    kwargs = ({"num_labels": 1, "problem_type": "regression"} if task.regression else
              {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}})
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=64, learning_rate=args.lr, weight_decay=0.01, warmup_steps=0.1,
            lr_scheduler_type="cosine", adam_epsilon=1e-6, max_grad_norm=1.0, seed=seed, data_seed=seed,
            train_sampling_strategy="group_by_length", eval_strategy="no", save_strategy="no", logging_strategy="no",
            report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=targs, train_dataset=encode(train),
                          data_collator=DataCollatorWithPadding(tokenizer))
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        # transformers 5 applies the length-grouped (shuffled) sampler to predict() too, which
        # returns predictions out of order; predict in dataset order.
        trainer.args.train_sampling_strategy = "sequential"
        out = trainer.predict(encode(dev)).predictions
    out = np.asarray(out)
    if task.regression:
        return [float(v) for v in out.reshape(-1)], seconds
    return [labels[int(i)] for i in out.argmax(-1)], seconds


# ----------------------------------------------------------------------- scoring


def task_points(task: GlueTask, gold: list, pred: list) -> float:
    """The official task score (points) of one task, from dev golds and predictions."""
    from bertctl import metrics

    if task.regression:
        m = metrics.regression(gold, pred)
    else:
        ids = {l: i for i, l in enumerate(task.labels)}
        m = metrics.classification([ids[g] for g in gold], [ids[p] for p in pred], n_classes=len(task.labels))
    values = {x.key: 100 * m[x.measure] for x in task.metrics}  # every GLUE dev metric here is on "dev"
    return score.task_score(values, task)


def paired_bootstrap_se(task: GlueTask, gold: list, a: list, b: list, n: int = 1000, seed: int = 0) -> float:
    """Standard error of score(a) - score(b) over resampled dev sets (the same resample for both)."""
    import random

    rng = random.Random(seed)
    diffs = []
    size = len(gold)
    for _ in range(n):
        idx = [rng.randrange(size) for _ in range(size)]
        g = [gold[i] for i in idx]
        diffs.append(task_points(task, g, [a[i] for i in idx]) - task_points(task, g, [b[i] for i in idx]))
    return statistics.stdev(diffs)


# -------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from bertctl.glue.data import load_task, locate

    names = task_names(args.tasks.split(","))
    source = locate(args.glue_dir)
    names = [n for n in names if not source.missing(TASKS[n])]
    if not names:
        print(f"no selected task found in {args.glue_dir}", file=sys.stderr)
        return 2
    seeds = [args.seed + k for k in range(args.seeds)]
    print(f"glue_vs_trainer: {args.model} on {', '.join(names)}; {args.max_train} train rows, {args.max_eval} dev rows, "
          f"{args.epochs:g} epochs, lr {args.lr:g}, batch {args.batch_size}, seeds {seeds}, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    keep = Path(args.out) if args.out else None
    with tempfile.TemporaryDirectory() as tmp:
        out = keep or Path(tmp) / "suite"
        print("bertctl eval-glue ...", flush=True)
        t0 = time.perf_counter()
        ours = _bertctl_side(args, names, out)
        ours_seconds = time.perf_counter() - t0

    rows, diffs, verdicts = [], [], []
    trainer_seconds = 0.0
    for name in names:
        task = TASKS[name]
        data = load_task(source, task, args.max_train, args.max_eval, tests=False)
        dev = data.evals[task.evals[0].name]
        gold = [r["label"] for r in dev]
        theirs = []
        for seed in seeds:
            print(f"Trainer {name} seed {seed} ...", flush=True)
            preds, seconds = run_trainer(args, task, data.train, dev, seed)
            theirs.append(preds)
            trainer_seconds += seconds
        assert ours[name]["gold"] == gold, f"{name}: the two sides scored different dev rows"
        a = [task_points(task, gold, p) for p in ours[name]["predictions"]]
        b = [task_points(task, gold, p) for p in theirs]
        diff = statistics.fmean(a) - statistics.fmean(b)
        se = paired_bootstrap_se(task, gold, ours[name]["predictions"][0], theirs[0])
        if len(seeds) > 1:  # the seed-to-seed spread of each side, as a standard error of the mean difference
            se = max(se, math.sqrt((statistics.variance(a) + statistics.variance(b)) / len(seeds)))
        noise = 2 * se
        ok = abs(diff) <= noise
        diffs.append(abs(diff))
        verdicts.append(ok)
        agree = statistics.fmean(float(x == y) if not task.regression else float(abs(x - y) < 0.5)
                                 for x, y in zip(ours[name]["predictions"][0], theirs[0]))
        rows.append({"task": name, "metric": "/".join(m.label for m in task.metrics),
                     "bertctl": _pm(a), "Trainer": _pm(b), "diff": f"{diff:+.1f}", "noise (2 se)": f"{noise:.1f}",
                     "same prediction": f"{100 * agree:.1f}%", "verdict": "ok" if ok else "DIFFERENT"})

    from bertctl.report import print_table

    print_table(f"bertctl eval-glue vs transformers Trainer ({args.model}, {args.max_train} rows, {args.epochs:g} epochs)",
                rows, caption=f"task scores in GLUE points on {args.max_eval} dev rows; "
                              f"time bertctl {ours_seconds:.0f} s (suite), Trainer {trainer_seconds:.0f} s (training only)")
    print(f"RESULT glue_vs_trainer max_abs_diff={max(diffs):.2f} within_noise={'yes' if all(verdicts) else 'no'} "
          f"tasks={','.join(names)} max_train={args.max_train} epochs={args.epochs:g} seeds={len(seeds)} "
          f"bertctl_s={ours_seconds:.0f} trainer_train_s={trainer_seconds:.0f}")
    return 0


def _pm(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def _bertctl_side(args, names, out: Path) -> dict:
    """Run the suite, then read each seed's dev predictions back from its finetune folder."""
    from bertctl.glue.config import GlueRecipe
    from bertctl.glue.suite import run_suite
    from bertctl.runs import Run

    recipe = GlueRecipe.model_validate({
        "model": {"name_or_path": args.model, "max_length": args.max_length},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "warmup": 0.1,
                  "schedule": "cosine", "weight_decay": 0.01, "max_grad_norm": 1.0, "precision": "fp32",
                  "seed": args.seed, "log_every": 1000, "eval_every": 10**9},
        "glue_dir": args.glue_dir, "tasks": names, "seeds": args.seeds, "max_train_rows": args.max_train,
        "max_eval_rows": args.max_eval, "submission": False,
    })
    result = run_suite(recipe, Run.create(out, "eval-glue"), say=lambda m: print(f"  {m}", flush=True))
    sides = {}
    for name, r in result.results.items():
        preds = []
        for seed in r["seeds"]:
            lines = (out / name / f"seed{seed}" / "predictions_dev.jsonl").read_text().splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
            preds.append([rec["prediction"] for rec in records])
        sides[name] = {"predictions": preds, "gold": [rec["gold"] for rec in records], "seconds": r["seconds"]}
    return sides


if __name__ == "__main__":
    sys.exit(main())
