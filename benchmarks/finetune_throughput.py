"""Fine-tuning throughput: `bertctl finetune` against a plain transformers `Trainer`.

Same model (all-MiniLM-L6-v2, the embedded "minilm", by default), same rows (the first
--rows of GLUE SST-2 train, evaluated on SST-2 dev), same batch size, epochs, learning
rate, warm-up, weight decay and AdamW epsilon, one process, in one run:

- Trainer + DataCollatorWithPadding: random batches padded to their longest example,
  fp32 (the Trainer's default). This is the baseline of the ratio.
- Trainer + padding to 128 (run_glue.py's default, `pad_to_max_length`): reported too.
- bertctl (`bertctl.finetune.run.finetune`): seeded length-grouped batches (sort inside
  random chunks of 50 batches, then shuffle the batches), padding only to the longest
  of each batch, `train.precision: auto` (its default: bf16 where the hardware computes it
  natively, else fp32).

Throughput is training samples per second of each training loop: tokenisation and the
final dev evaluation are excluded on both sides (bertctl's figure still includes its
end-of-training checkpoint write). Quality: dev accuracy of each final model.

    python benchmarks/finetune_throughput.py               # 2,000 rows, 1 epoch, 3 seeds: ~5 minutes on 2 cores
    python benchmarks/finetune_throughput.py --quick       # smoke run (256 rows, no pad-128 baseline)
    python benchmarks/finetune_throughput.py --rows 4000 --epochs 2 --batch-size 32
    python benchmarks/finetune_throughput.py --seeds 1      # one seed per side (accuracy moves ~1 point)

Without ../shared/data the rows come from the World generator's sentiment set (noted).
Ends with one line: RESULT finetune_throughput ratio=<bertctl samples/s / Trainer samples/s> ...
"""

from __future__ import annotations

import argparse
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
    p.add_argument("--model", default="minilm", help="model for both sides (bertctl model source)")
    p.add_argument("--sst2", default=str(SST2), help="GLUE SST-2 folder (train.tsv, dev.tsv)")
    p.add_argument("--rows", type=int, default=2000, help="training rows (the first N of SST-2 train)")
    p.add_argument("--dev-rows", type=int, default=0, help="dev rows (0 = all 872)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=float, default=0.06)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="bertctl's precision (default: its default, auto)")
    p.add_argument("--baseline-precision", default="fp32", choices=["bf16", "fp16", "fp32"],
                   help="the Trainer's (default: its default, fp32)")
    p.add_argument("--no-pad128", action="store_true", help="skip the padding-to-128 baseline")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=3,
                   help="repeat both sides with seeds seed..seed+N-1 and compare mean dev accuracy (one seed of "
                        "2,000 rows moves dev accuracy by about a point)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="smoke run: 256 rows, 128 dev rows, no pad-128 baseline")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.dev_rows, args.no_pad128, args.seeds = 256, 128, True, 1
    return args


def load_rows(args) -> tuple[list[dict], list[dict], str]:
    """[{"text", "label"}] train and dev rows, and where they came from."""
    sst2 = Path(args.sst2)
    if (sst2 / "train.tsv").exists():
        from bertctl.data.readers import read_glue_tsv

        train = [{"text": r["sentence"], "label": int(r["label"])} for r in read_glue_tsv(sst2 / "train.tsv")]
        dev = [{"text": r["sentence"], "label": int(r["label"])} for r in read_glue_tsv(sst2 / "dev.tsv")]
        source = f"SST-2 ({sst2})"
    else:
        from bertctl.data.world import World

        rows = [{"text": r["text"], "label": int(r["label"] == "positive")} for r in World(0).sentiment(args.rows + 872)]
        train, dev = rows[:args.rows], rows[args.rows:]
        source = "World sentiment (../shared/data absent)"
    return train[:args.rows], dev[:args.dev_rows or None], source


# ---------------------------------------------------------------------------- Trainer


def run_trainer(args, train, dev, model_path: str, pad_to: int | None) -> dict:
    """Plain transformers: Trainer + DataCollatorWithPadding (or fixed padding)."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, default_data_collator)

    tok = AutoTokenizer.from_pretrained(model_path)

    def encode(rows):
        enc = tok([r["text"] for r in rows], truncation=True, max_length=args.max_length,
                  padding="max_length" if pad_to else False)
        return Dataset.from_dict({**enc, "labels": [r["label"] for r in rows]})

    train_ds, dev_ds = encode(train), encode(dev)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=128,
            learning_rate=args.lr, num_train_epochs=args.epochs, warmup_steps=args.warmup, weight_decay=0.01,
            adam_epsilon=1e-6, lr_scheduler_type="linear", max_grad_norm=1.0, seed=args.seed,
            bf16=args.baseline_precision == "bf16", fp16=args.baseline_precision == "fp16", save_strategy="no", eval_strategy="no", logging_strategy="no",
            report_to=[], disable_tqdm=True, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
        collator = default_data_collator if pad_to else DataCollatorWithPadding(tok)
        trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=collator)
        out = trainer.train()
        predictions = trainer.predict(dev_ds).predictions
    accuracy = float((np.argmax(predictions, -1) == np.array([r["label"] for r in dev])).mean())
    samples = len(train) * args.epochs
    return {"samples_per_s": samples / out.metrics["train_runtime"], "seconds": out.metrics["train_runtime"],
            "dev_accuracy": accuracy}


# ---------------------------------------------------------------------------- bertctl


def run_bertctl(args, train, dev, model_path: str, folder: Path) -> dict:
    from bertctl.runs import Run, read_json
    from bertctl.finetune.config import FinetuneRecipe
    from bertctl.finetune.run import finetune

    data = folder / "data"
    data.mkdir(parents=True)
    for name, rows in (("train", train), ("dev", dev)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = FinetuneRecipe.model_validate({
        "task": "cls", "model": {"name_or_path": model_path, "max_length": args.max_length},
        "data": {"train": str(data / "train.jsonl"), "dev": str(data / "dev.jsonl")},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup,
                  "weight_decay": 0.01, "precision": args.precision, "seed": args.seed, "log_every": 50,
                  "keep_checkpoints": 1},
        "eval_batch_size": 128,
    })
    dev_metrics = finetune(recipe, Run.create(folder / "run", "finetune"), quiet=True)
    summary = read_json(folder / "run" / "metrics.json")
    return {"samples_per_s": summary["train_samples_per_s"], "seconds": summary["train_seconds"],
            "dev_accuracy": dev_metrics["accuracy"], "precision": summary["precision"]["used"]}


def padding_report(args, train, model_path: str) -> dict:
    """Mean padded length per example: random batches vs bertctl's length-grouped ones."""
    import random

    from transformers import AutoTokenizer

    from bertctl.finetune.base import length_grouped_batches

    tok = AutoTokenizer.from_pretrained(model_path)
    lengths = [len(ids) for ids in tok([r["text"] for r in train], truncation=True, max_length=args.max_length)["input_ids"]]
    order = list(range(len(lengths)))
    random.Random(args.seed).shuffle(order)
    plain = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    grouped = length_grouped_batches(lengths, args.batch_size, args.seed, 0)

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches) / len(lengths)

    return {"real": sum(lengths) / len(lengths), "random_batches": padded(plain), "grouped": padded(grouped)}


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    from benchmarks.machine import tag

    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    from bertctl.models import resolve

    transformers.logging.set_verbosity_error()
    model_path = resolve(args.model).path
    train, dev, source = load_rows(args)
    print(f"data: {len(train)} train / {len(dev)} dev rows of {source}; model {args.model}; batch {args.batch_size}, "
          f"{args.epochs} epoch(s), lr {args.lr}; torch threads {torch.get_num_threads()}", flush=True)
    pad = padding_report(args, train, model_path)
    print(f"tokens per example: {pad['real']:.1f} real; padded to {pad['random_batches']:.1f} in random batches, "
          f"{pad['grouped']:.1f} in bertctl's length-grouped batches, {args.max_length} with padding to max_length",
          flush=True)

    results = {"trainer": [], "bertctl": []}
    for seed in range(args.seed, args.seed + args.seeds):
        run_args = argparse.Namespace(**{**vars(args), "seed": seed})
        t = time.perf_counter()
        results["trainer"].append(run_trainer(run_args, train, dev, model_path, pad_to=None))
        print(f"seed {seed}: Trainer + DataCollatorWithPadding ({args.baseline_precision}): "
              f"{results['trainer'][-1]['samples_per_s']:.1f} samples/s, dev accuracy "
              f"{results['trainer'][-1]['dev_accuracy']:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            results["bertctl"].append(run_bertctl(run_args, train, dev, model_path, Path(tmp)))
        print(f"seed {seed}: bertctl finetune ({args.precision} -> {results['bertctl'][-1]['precision']}, "
              f"length-grouped): "
              f"{results['bertctl'][-1]['samples_per_s']:.1f} samples/s, dev accuracy "
              f"{results['bertctl'][-1]['dev_accuracy']:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)
    if not args.no_pad128:
        t = time.perf_counter()
        results["trainer_pad128"] = [run_trainer(args, train, dev, model_path, pad_to=args.max_length)]
        print(f"seed {args.seed}: Trainer + padding to {args.max_length} ({args.baseline_precision}): "
              f"{results['trainer_pad128'][0]['samples_per_s']:.1f} samples/s, dev accuracy "
              f"{results['trainer_pad128'][0]['dev_accuracy']:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)

    def mean(side: str, key: str) -> float:
        return sum(r[key] for r in results[side]) / len(results[side])

    ratio = mean("bertctl", "samples_per_s") / mean("trainer", "samples_per_s")
    diff = 100 * (mean("bertctl", "dev_accuracy") - mean("trainer", "dev_accuracy"))
    extra = ""
    if "trainer_pad128" in results:
        extra = (f" ratio_vs_pad128={mean('bertctl', 'samples_per_s') / mean('trainer_pad128', 'samples_per_s'):.2f}"
                 f" pad128_samples_per_s={mean('trainer_pad128', 'samples_per_s'):.1f}"
                 f" pad128_dev_acc={mean('trainer_pad128', 'dev_accuracy'):.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "padding": pad, **results}, indent=2) + "\n")
    print(f"RESULT finetune_throughput ratio={ratio:.2f} bertctl_samples_per_s={mean('bertctl', 'samples_per_s'):.1f} "
          f"trainer_samples_per_s={mean('trainer', 'samples_per_s'):.1f} "
          f"bertctl_dev_acc={mean('bertctl', 'dev_accuracy'):.4f} trainer_dev_acc={mean('trainer', 'dev_accuracy'):.4f} "
          f"acc_diff_points={diff:+.2f}{extra} seeds={args.seeds} rows={len(train)} epochs={args.epochs} "
          f"batch={args.batch_size} precision={results['bertctl'][0]['precision']}/{args.baseline_precision} {tag()}")


if __name__ == "__main__":
    main()
