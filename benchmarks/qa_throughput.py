"""Extractive-QA fine-tuning throughput: `bertctl finetune --task qa` against a plain
transformers `Trainer` with the standard Hugging Face QA preprocessing.

Same model (all-MiniLM-L6-v2, the embedded "minilm", by default), same questions (the
first --rows training questions of the shared SQuAD v1.1 file split by article, as the
finetune_squad recipe splits it; dev: --dev-rows questions of the held-out articles),
same windows (max_length 384, doc_stride 128), batch size, epochs, learning rate,
warm-up and weight decay, one process, in one run:

- Trainer, as examples/pytorch/question-answering/run_qa.py prepares SQuAD: every
  window padded to max_length (run_qa's default `pad_to_max_length`), start/end
  positions labelled as run_qa labels them, random batches, fp32 (the Trainer's
  default; --baseline-precision bf16 to change it). The baseline of the ratio.
- bertctl (`bertctl.finetune.run.finetune`): windows padded only to the longest of their
  batch, seeded length-grouped batches, `train.precision: auto` (its default).

Throughput is training windows per second of each training loop (both sides cut the
same questions into the same windows); tokenisation and evaluation are excluded.
Quality: SQuAD F1/EM on the dev questions, both sides decoded by the same code
(bertctl.finetune.qa_spans.best_answers, which scores every valid span as run_qa's
postprocessing does with n_best 20 and max_answer_length 30).

    python benchmarks/qa_throughput.py                 # 1,500 questions, 1 epoch: ~20 minutes on 2 cores
    python benchmarks/qa_throughput.py --quick         # smoke run (64 questions)

Without ../shared/data the questions come from the World generator (noted).
Ends with one line: RESULT qa_throughput ratio=<bertctl windows/s / Trainer windows/s> f1_diff=<points> ...
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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SQUAD = ROOT.parent / "shared" / "data" / "squad" / "squad1.1-dev-articles00-39.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="model for both sides (bertctl model source)")
    p.add_argument("--squad", default=str(SQUAD), help="a SQuAD v1.1 file, split by article (90%% train)")
    p.add_argument("--rows", type=int, default=1500, help="training questions")
    p.add_argument("--dev-rows", type=int, default=400, help="dev questions (held-out articles)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument("--max-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="bertctl's precision (default: its default, auto)")
    p.add_argument("--baseline-precision", default="fp32", choices=["bf16", "fp16", "fp32"],
                   help="the Trainer's (default: its default, fp32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="smoke run: 64 questions, 32 dev questions")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.dev_rows = 64, 32
    return args


def load_rows(args) -> tuple[list[dict], list[dict], str]:
    """SQuAD-layout train and dev questions, and where they came from."""
    if Path(args.squad).exists():
        from bertctl.data.readers import read_squad
        from bertctl.finetune.data import split_rows

        train, dev = split_rows(read_squad(args.squad), 0.9, seed=0, by="title")  # as recipes/finetune_squad.yaml
        source = f"SQuAD v1.1 ({args.squad}), split by article"
    else:
        from bertctl.data.world import World

        rows = [r for r in World(0).qa(args.rows + args.dev_rows) if r["answers"]["text"]]
        train, dev = rows[:args.rows], rows[args.rows:]
        source = "World QA, answerable questions (../shared/data absent)"
    keep = ("id", "question", "context", "answers")
    return ([{k: r[k] for k in keep} for r in train[:args.rows]],
            [{k: r[k] for k in keep} for r in dev[:args.dev_rows]], source)


def score(args, dev, features, start_logits, end_logits) -> dict:
    from bertctl import metrics
    from bertctl.finetune import qa_spans as qa

    answers = qa.best_answers(dev, features, start_logits, end_logits, 30, 20, version_2=False)
    return metrics.squad({k: a["text"] for k, a in answers.items()}, dev)


# ---------------------------------------------------------------------------- Trainer


def run_qa_train_features(tok, rows, max_length: int, stride: int):
    """examples/pytorch/question-answering/run_qa.py's prepare_train_features, as written there."""
    pad_right = tok.padding_side == "right"
    enc = tok([r["question"].lstrip() for r in rows], [r["context"] for r in rows], truncation="only_second",
              max_length=max_length, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding="max_length")
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    offset_mapping = enc.pop("offset_mapping")
    enc["start_positions"], enc["end_positions"] = [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = enc["input_ids"][i]
        cls_index = input_ids.index(tok.cls_token_id) if tok.cls_token_id in input_ids else 0
        sequence_ids = enc.sequence_ids(i)
        answers = rows[sample_mapping[i]]["answers"]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        token_start = 0
        while sequence_ids[token_start] != (1 if pad_right else 0):
            token_start += 1
        token_end = len(input_ids) - 1
        while sequence_ids[token_end] != (1 if pad_right else 0):
            token_end -= 1
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            enc["start_positions"].append(cls_index)
            enc["end_positions"].append(cls_index)
        else:
            while token_start < len(offsets) and offsets[token_start][0] <= start_char:
                token_start += 1
            enc["start_positions"].append(token_start - 1)
            while offsets[token_end][1] >= end_char:
                token_end -= 1
            enc["end_positions"].append(token_end + 1)
    return enc


def run_trainer(args, train, dev, model_path: str) -> dict:
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments,
                              default_data_collator)

    from bertctl.finetune import qa_spans as qa

    tok = AutoTokenizer.from_pretrained(model_path)
    train_ds = Dataset.from_dict(dict(run_qa_train_features(tok, train, args.max_length, args.doc_stride)))
    features = qa.prepare_eval_features(tok, dev, args.max_length, args.doc_stride)
    keys = ("input_ids", "attention_mask", "token_type_ids")
    dev_ds = Dataset.from_dict({k: [f[k] + [0] * (args.max_length - len(f[k])) for f in features] for k in keys})
    torch.manual_seed(args.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=128,
            learning_rate=args.lr, num_train_epochs=args.epochs, warmup_steps=args.warmup, weight_decay=0.01,
            lr_scheduler_type="linear", max_grad_norm=1.0, seed=args.seed,
            bf16=args.baseline_precision == "bf16", fp16=args.baseline_precision == "fp16", save_strategy="no", eval_strategy="no", logging_strategy="no",
            report_to=[], disable_tqdm=True, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
        trainer = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=default_data_collator)
        out = trainer.train()
        start, end = trainer.predict(dev_ds).predictions[:2]
    windows = len(train_ds) * args.epochs
    return {"windows": len(train_ds), "windows_per_s": windows / out.metrics["train_runtime"],
            "seconds": out.metrics["train_runtime"], **score(args, dev, features, np.asarray(start), np.asarray(end))}


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
        "task": "qa", "model": {"name_or_path": model_path, "max_length": args.max_length},
        "data": {"train": str(data / "train.jsonl"), "dev": str(data / "dev.jsonl")},
        "qa": {"doc_stride": args.doc_stride, "max_answer_length": 30, "n_best": 20, "version_2": False},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup,
                  "weight_decay": 0.01, "precision": args.precision, "seed": args.seed, "log_every": 50,
                  "keep_checkpoints": 1},
        "eval_batch_size": 128,
    })
    dev_metrics = finetune(recipe, Run.create(folder / "run", "finetune"), quiet=True)
    summary = read_json(folder / "run" / "metrics.json")
    return {"windows": round(summary["train_samples_per_s"] * summary["train_seconds"] / args.epochs),
            "windows_per_s": summary["train_samples_per_s"], "seconds": summary["train_seconds"],
            "precision": summary["precision"]["used"], **dev_metrics}


def padding_report(args, train, model_path: str) -> dict:
    """Mean window length: real tokens vs what each side computes on."""
    from transformers import AutoTokenizer

    from bertctl.finetune import qa_spans as qa
    from bertctl.finetune.base import length_grouped_batches

    tok = AutoTokenizer.from_pretrained(model_path)
    features = qa.prepare_train_features(tok, train, args.max_length, args.doc_stride)
    lengths = [len(f["input_ids"]) for f in features]
    grouped = length_grouped_batches(lengths, args.batch_size, args.seed, 0)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in grouped) / len(lengths)
    return {"windows": len(lengths), "real": sum(lengths) / len(lengths), "grouped": padded, "run_qa": args.max_length}


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
    print(f"data: {len(train)} train / {len(dev)} dev questions of {source}; model {args.model}; batch "
          f"{args.batch_size}, {args.epochs} epoch(s), lr {args.lr}; max_length {args.max_length}, stride "
          f"{args.doc_stride}; torch threads {torch.get_num_threads()}", flush=True)
    pad = padding_report(args, train, model_path)
    print(f"{pad['windows']} training windows: {pad['real']:.1f} real tokens per window; bertctl computes on "
          f"{pad['grouped']:.1f} (length-grouped batches), run_qa on {pad['run_qa']} (padded to max_length)", flush=True)

    t = time.perf_counter()
    trainer = run_trainer(args, train, dev, model_path)
    print(f"Trainer + run_qa preprocessing ({args.baseline_precision}): {trainer['windows_per_s']:.2f} windows/s, "
          f"F1 {trainer['f1']:.2f} EM {trainer['exact_match']:.2f} ({time.perf_counter() - t:.0f} s)", flush=True)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_bertctl(args, train, dev, model_path, Path(tmp))
    print(f"bertctl finetune --task qa ({args.precision} -> {ours['precision']}, length-grouped): {ours['windows_per_s']:.2f} windows/s, "
          f"F1 {ours['f1']:.2f} EM {ours['exact_match']:.2f} ({time.perf_counter() - t:.0f} s)", flush=True)

    ratio = ours["windows_per_s"] / trainer["windows_per_s"]
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "padding": pad, "trainer": trainer,
                                               "bertctl": ours}, indent=2) + "\n")
    print(f"RESULT qa_throughput ratio={ratio:.2f} f1_diff={ours['f1'] - trainer['f1']:+.2f} "
          f"bertctl_windows_per_s={ours['windows_per_s']:.2f} trainer_windows_per_s={trainer['windows_per_s']:.2f} "
          f"bertctl_f1={ours['f1']:.2f} trainer_f1={trainer['f1']:.2f} bertctl_em={ours['exact_match']:.2f} "
          f"trainer_em={trainer['exact_match']:.2f} rows={len(train)} dev_rows={len(dev)} windows={pad['windows']} "
          f"epochs={args.epochs} batch={args.batch_size} precision={ours['precision']}/{args.baseline_precision} "
          f"{tag()}")


if __name__ == "__main__":
    main()
