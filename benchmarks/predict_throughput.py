"""Prediction throughput: `bertctl predict` against `transformers.pipeline`, same model, same inputs.

One process, one run: a sentiment run of all-MiniLM-L6-v2 (the embedded "minilm") is
fine-tuned briefly first (or --run names an existing cls run), then both sides label the
same --n texts (SST-2 dev sentences, cycled, from ../shared/data; else World sentences):

- pipeline("text-classification", batch_size=B): batches in input order, each padded to
  its longest text, fp32 (the pipeline's default). The baseline of the ratio.
- bertctl (`bertctl.predict`, what `bertctl predict` runs): chunks of 4,096 rows sorted by
  length so each batch pads only to similar lengths, batch B, the run's precision
  resolved on this machine (`auto` by default: bf16 where native, else fp32), JSON lines written.

Both exclude model loading; both get a short warm-up. Identical predictions: the label of
every row agrees (probabilities are reported as the largest absolute difference).

    python benchmarks/predict_throughput.py                  # 4,000 texts (a few minutes on 2 cores)
    python benchmarks/predict_throughput.py --n 64 --train-steps 2     # smoke run
    python benchmarks/predict_throughput.py --run runs/finetune-... --n 20000 --batch-size 128

Ends with one line: RESULT predict_throughput ratio=<bertctl rows/s ÷ pipeline rows/s> identical=yes|no ...
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4000, help="texts to label (cycled from the source)")
    p.add_argument("--run", help="an existing finetune run of a cls task (default: fine-tune minilm briefly first)")
    p.add_argument("--model", default="minilm", help="model to fine-tune when --run is not given")
    p.add_argument("--train-steps", type=int, default=30, help="fine-tuning steps when --run is not given")
    p.add_argument("--batch-size", type=int, default=64, help="batch size of both sides")
    p.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"],
                   help="bertctl's precision (default: the run's, auto for a new run)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    return p.parse_args(argv)


def texts(n: int) -> tuple[list[str], str]:
    dev = SST2 / "dev.tsv"
    if dev.exists():
        from bertctl.data.readers import read_glue_tsv

        pool, source = [r["sentence"] for r in read_glue_tsv(dev)], "SST-2 dev"
    else:
        from bertctl.data.world import World

        pool, source = [r["text"] for r in World(0).sentiment(2000)], "World sentiment (../shared/data absent)"
    return [pool[i % len(pool)] for i in range(n)], source


def train_run(args, folder: Path) -> Path:
    from bertctl.runs import Run
    from bertctl.finetune.config import FinetuneRecipe
    from bertctl.finetune.run import finetune

    data = {"train": str(SST2 / "train.tsv"), "dev": str(SST2 / "dev.tsv"), "max_train_samples": 2000,
            "max_eval_samples": 128} if SST2.exists() else {"world": {"train": 1000, "dev": 128}}
    recipe = FinetuneRecipe.model_validate({
        "task": "sentiment", "model": {"name_or_path": args.model}, "data": data,
        "train": {"max_steps": args.train_steps, "batch_size": 32, "lr": 5e-5, "log_every": 10}})
    path = folder / "run"
    finetune(recipe, Run.create(path, "finetune"), quiet=True)
    return path


def run_bertctl(run: Path, rows: list[str], args) -> tuple[list[dict], float, str]:
    from bertctl.predict import Predictor, predict_stream

    predictor = Predictor.load(run, args.batch_size, args.precision)
    predict_stream(predictor, ({"text": t} for t in rows[:args.batch_size]), lambda s: None)  # warm-up
    out = io.StringIO()
    t0 = time.perf_counter()
    predict_stream(predictor, ({"text": t} for t in rows), out.write)
    seconds = time.perf_counter() - t0
    return [json.loads(line) for line in out.getvalue().splitlines()], seconds, predictor.precision.name


def run_pipeline(run: Path, rows: list[str], args) -> tuple[list[dict], float]:
    from transformers import pipeline

    from bertctl.finetune.methods import quiet_transformers

    quiet_transformers()
    pipe = pipeline("text-classification", model=str(run / "model"), batch_size=args.batch_size, top_k=None)
    pipe(rows[:args.batch_size])  # warm-up
    t0 = time.perf_counter()
    out = pipe(rows)
    seconds = time.perf_counter() - t0
    return [{s["label"]: s["score"] for s in scores} for scores in out], seconds


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    from benchmarks.machine import tag

    if args.threads:
        torch.set_num_threads(args.threads)
    rows, source = texts(args.n)
    with tempfile.TemporaryDirectory(prefix="bertctl-predict-bench-") as tmp:
        run = Path(args.run) if args.run else train_run(args, Path(tmp))
        ours, our_s, precision = run_bertctl(run, rows, args)
        theirs, their_s = run_pipeline(run, rows, args)
    labels_ours = [r["label"] for r in ours]
    labels_theirs = [max(p, key=p.get) for p in theirs]
    agree = sum(a == b for a, b in zip(labels_ours, labels_theirs)) / len(rows)
    diff = max(abs(r["probabilities"][k] - p[k]) for r, p in zip(ours, theirs) for k in p)
    ours_rate, theirs_rate = len(rows) / our_s, len(rows) / their_s
    print(f"inputs: {len(rows)} texts from {source}; batch {args.batch_size}; run {args.run or 'fine-tuned here'}")
    print(f"bertctl predict ({precision}, length-grouped): {ours_rate:,.1f} rows/s ({our_s:.2f} s)")
    print(f"transformers.pipeline (fp32, input order):   {theirs_rate:,.1f} rows/s ({their_s:.2f} s)")
    print(f"labels agree on {agree:.2%} of rows; largest probability difference {diff:.2g}")
    print(f"RESULT predict_throughput ratio={ours_rate / theirs_rate:.2f} identical={'yes' if agree == 1 else 'no'} "
          f"agree={agree:.4f} bertctl_rows_per_s={ours_rate:.1f} pipeline_rows_per_s={theirs_rate:.1f} "
          f"precision={precision}/fp32 n={len(rows)} batch={args.batch_size} max_prob_diff={diff:.2g} {tag()}")


if __name__ == "__main__":
    main()
