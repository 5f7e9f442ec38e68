"""MLM pretraining throughput: `bertctl pretrain` against the Hugging Face recipe.

The baseline is what examples/pytorch/language-modeling/run_mlm.py does: tokenise each
document, concatenate and cut into blocks of --length ("group_texts"), then
BertForMaskedLM + DataCollatorForLanguageModeling (15 %, 80/10/10) + Trainer. bertctl
runs `bertctl.pretraining.run.pretrain` (MLM only, contiguous packing, the masked-only
prediction head, `train.precision: auto`, its default). Both get the same model config and initial weights (same
seed), the same tokenizer (MiniLM's uncased 30,522-token WordPiece vocabulary by default),
the same training documents of the generated World corpus, the same batch size, number of
steps, hence number of tokens, and the same AdamW/linear-schedule settings.

Throughput is training tokens per second of the training loop (tokenisation excluded on
both sides). Quality: both final models are scored as stock BertForMaskedLM on the same
held-out documents with the same fixed masks (masked-token accuracy). MFU is the model
FLOPs each side actually needs per second (bertctl: prediction head on masked positions
only; baseline: head on every position) over the peak of the precision that side computed
in (benchmarks/machine.py): on a GPU the datasheet's dense figure for its name (H100/H200
SXM bf16 989 TFLOP/s; --peak-tflops to give another), on a CPU the best matmul in that
precision measured here. Each side runs its defaults: bertctl `auto`, the Trainer fp32.

    python benchmarks/pretrain_throughput.py             # ~2-4 minutes on 2 idle CPU cores
    python benchmarks/pretrain_throughput.py --quick     # smoke run (well under a minute)
    python benchmarks/pretrain_throughput.py --steps 300 --hidden 256 --layers 4
    # BERT-base on one GPU, the Trainer asked for bf16 (what benchmarks/gpu.sh runs)
    python benchmarks/pretrain_throughput.py --hidden 768 --layers 12 --heads 12 --intermediate 3072 \
        --batch-size 128 --steps 400 --baseline-precision bf16

Ends with one line: RESULT pretrain_throughput ratio=<bertctl tokens/s / baseline tokens/s> ...
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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `bertctl pretrain` does; applies to both sides alike
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=120,
                   help="optimizer steps for each side (from scratch with a 30k vocabulary, masked accuracy leaves "
                        "the unigram plateau after ~250 steps: use --steps 300+ to compare accuracies)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--length", type=int, default=128, help="tokens per sequence")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--tokenizer", default="minilm", help="'minilm' (30,522 tokens) or 'train' (WordPiece on the corpus)")
    p.add_argument("--docs", type=int, default=8000, help="World documents (5 %% held out)")
    p.add_argument("--lr", type=float, default=1e-3, help="both sides; at 2e-3 the 30k-vocabulary model tends to stay "
                                                              "longer on the unigram plateau")
    p.add_argument("--warmup", type=float, default=0.06)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="bertctl's precision (default: its default, auto)")
    p.add_argument("--baseline-precision", default="fp32", choices=["bf16", "fp16", "fp32"],
                   help="the Trainer's precision (default: its default and run_mlm.py's, fp32)")
    p.add_argument("--eval-sequences", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--compile", action="store_true", help="bertctl with train.compile=true (compile time is counted)")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="the peak for MFU in TFLOP/s, both sides (default: per side, the datasheet figure of "
                        "a known GPU for its precision, else a measured matmul in that precision)")
    p.add_argument("--quick", action="store_true", help="smoke run: 12 steps, 1,000 documents")
    p.add_argument("--out", default=None, help="keep the bertctl run folder here (default: a temp folder)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.docs, args.eval_sequences = 12, 1000, 64
    return args


def train_flops_per_token(a, vocab: int, head_fraction: float) -> float:
    """Forward + backward (3x forward) FLOPs per token: the layers' matmuls, attention
    scores and mixing, and the prediction head (transform + vocabulary projection) on
    `head_fraction` of the positions."""
    h, layer_params = a.hidden, 4 * a.hidden * a.hidden + 2 * a.hidden * a.intermediate
    forward = 2 * a.layers * layer_params + 4 * a.layers * a.length * h + head_fraction * 2 * (h * h + h * vocab)
    return 3 * forward


# --------------------------------------------------------------------------- sides


def bertctl_recipe(a, cache: Path):
    from bertctl.pretraining.config import PretrainRecipe
    from bertctl.recipe import load

    overrides = [
        "data.source=null", f"data.world.n_docs={a.docs}", f"data.world.seed={a.seed}", f"data.cache_dir={cache}",
        f"tokenizer.source={a.tokenizer}", "model.init=scratch", f"model.layers={a.layers}", f"model.hidden={a.hidden}",
        f"model.heads={a.heads}", f"model.intermediate={a.intermediate}", f"model.max_length={a.length}",
        "objective.kind=mlm", "objective.pairs=none", "objective.masking=token",
        f"train.max_steps={a.steps}", f"train.batch_size={a.batch_size}", f"train.lr={a.lr}", f"train.warmup={a.warmup}",
        f"train.precision={a.precision}", f"train.seed={a.seed}", f"train.log_every={max(1, a.steps // 10)}",
        f"train.eval_every={a.steps}", f"train.save_every={a.steps}", f"eval.max_sequences={a.eval_sequences}",
        f"train.compile={str(a.compile).lower()}",
    ]
    return load(PretrainRecipe, None, overrides, default="pretrain")[0]


def run_bertctl(recipe, out: Path) -> dict:
    from bertctl.pretraining.run import pretrain
    from bertctl.runs import Run

    run = Run.create(out, "pretrain")
    metrics = pretrain(recipe, run)
    last = [r for r in run.metrics_history() if "tokens_per_s" in r][-1]  # logged before the final eval/save
    return {"tokens_per_s": last["tokens_per_s"], "model_dir": out / "model", "metrics": metrics}


def run_baseline(a, recipe, tokenizer, out: Path) -> dict:
    """run_mlm.py's pipeline on the same training documents."""
    import datasets
    import torch
    from transformers import (BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    from bertctl.pretraining.corpus import documents, is_heldout

    texts = [" ".join(doc) for i, doc in enumerate(documents(recipe.data)) if not is_heldout(i, recipe.data.heldout)]
    raw = datasets.Dataset.from_dict({"text": texts})
    block = a.length

    def tokenize_function(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):  # verbatim logic of run_mlm.py
        concatenated = {k: [t for row in examples[k] for t in row] for k in examples}
        total = (len(concatenated[next(iter(examples))]) // block) * block
        return {k: [t[i:i + block] for i in range(0, total, block)] for k, t in concatenated.items()}

    tokenized = raw.map(tokenize_function, batched=True, remove_columns=["text"])
    grouped = tokenized.map(group_texts, batched=True, batch_size=1000)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=a.hidden, num_hidden_layers=a.layers,
                        num_attention_heads=a.heads, intermediate_size=a.intermediate, max_position_embeddings=a.length,
                        type_vocab_size=2, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(a.seed)  # the same initial weights as bertctl's (same class, config and seed)
    model = BertForMaskedLM(config)
    collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15)
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=a.batch_size, max_steps=a.steps, learning_rate=a.lr,
        warmup_steps=a.warmup, lr_scheduler_type="linear", weight_decay=0.01, adam_epsilon=1e-6, max_grad_norm=1.0,
        bf16=a.baseline_precision == "bf16", fp16=a.baseline_precision == "fp16", use_cpu=not torch.cuda.is_available(), seed=a.seed, save_strategy="no",
        report_to="none", logging_steps=max(1, a.steps // 10), dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(), disable_tqdm=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=grouped, data_collator=collator)
    result = trainer.train()
    seconds = result.metrics["train_runtime"]
    return {"tokens_per_s": a.steps * a.batch_size * block / seconds, "model": trainer.model,
            "sequences": len(grouped)}


def masked_scores(model, recipe, tokenizer) -> tuple[float, float]:
    """(masked-token accuracy, mean masked-token cross-entropy) of a stock BertForMaskedLM
    forward on bertctl's held-out sequences with the fixed eval masks. The loss still
    separates two models while both accuracies sit at the unigram plateau (early steps)."""
    import torch

    from bertctl.pretraining.corpus import prepare_sequences
    from bertctl.pretraining.masking import spec_from_tokenizer
    from bertctl.pretraining.run import EVAL_EPOCH, Collator

    _, heldout, _ = prepare_sequences(recipe, tokenizer, log=lambda m: None)
    collate = Collator(recipe.objective, spec_from_tokenizer(tokenizer, recipe.objective), tokenizer.pad_token_id,
                       recipe.train.seed)
    model = model.float().eval()
    device = next(model.parameters()).device
    hits = total = 0
    loss = 0.0
    n = min(len(heldout), recipe.eval.max_sequences)
    with torch.no_grad():
        for start in range(0, n, 32):
            batch = collate([heldout[i] for i in range(start, min(start + 32, n))], EVAL_EPOCH)
            batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"]).logits  # [B, L, V]
            picked = logits.flatten(0, 1)[batch["mlm_positions"]].float()
            hits += int((picked.argmax(-1) == batch["mlm_targets"]).sum())
            loss += float(torch.nn.functional.cross_entropy(picked, batch["mlm_targets"], reduction="sum"))
            total += len(batch["mlm_targets"])
    return hits / total, loss / total


# ---------------------------------------------------------------------------- main


def main(argv=None) -> None:
    a = parse_args(argv)
    import torch
    from transformers import AutoModelForMaskedLM

    from benchmarks.machine import peak_flops, tag
    from bertctl.pretraining.corpus import prepare_sequences
    from bertctl.pretraining.run import _tokenizer
    from bertctl.report import print_table
    from bertctl.runs import Run

    if a.threads:
        torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bertctl-bench-"))
    out = Path(a.out) if a.out else tmp / "bertctl"
    recipe = bertctl_recipe(a, tmp / "cache")
    print(f"config: hidden {a.hidden}, {a.layers} layers, {a.heads} heads, length {a.length}, batch {a.batch_size}, "
          f"{a.steps} steps ({a.steps * a.batch_size * a.length:,} tokens), {a.docs} World docs, "
          f"tokenizer {a.tokenizer}, torch threads {torch.get_num_threads()}")

    # tokenizer and token cache first, so neither side's timing includes them
    scratch_run = Run.create(tmp / "prep", "pretrain")
    tokenizer = _tokenizer(recipe, scratch_run, False, log=print)
    train, heldout, _ = prepare_sequences(recipe, tokenizer, log=print)

    t = time.perf_counter()
    mine = run_bertctl(recipe, out)
    mine_wall = time.perf_counter() - t
    t = time.perf_counter()
    base = run_baseline(a, recipe, tokenizer, tmp / "baseline")
    base_wall = time.perf_counter() - t

    mine_acc, mine_loss = masked_scores(AutoModelForMaskedLM.from_pretrained(mine["model_dir"]), recipe, tokenizer)
    base_acc, base_loss = masked_scores(base["model"], recipe, tokenizer)
    unigram = mine["metrics"]["unigram_accuracy"]
    vocab = len(tokenizer)
    mine_flops = train_flops_per_token(a, vocab, head_fraction=recipe.objective.mask_rate)
    base_flops = train_flops_per_token(a, vocab, head_fraction=1.0)
    used = mine["metrics"]["precision"]["used"]
    mine_peak, mine_source = peak_flops(used, a.peak_tflops)
    base_peak, base_source = (mine_peak, mine_source) if a.baseline_precision == used else \
        peak_flops(a.baseline_precision, a.peak_tflops)
    print(f"peaks: bertctl {used} {mine_peak / 1e9:.1f} GFLOP/s ({mine_source}); baseline {a.baseline_precision} "
          f"{base_peak / 1e9:.1f} GFLOP/s ({base_source})")
    mine_mfu = mine["tokens_per_s"] * mine_flops / mine_peak
    base_mfu = base["tokens_per_s"] * base_flops / base_peak
    ratio = mine["tokens_per_s"] / base["tokens_per_s"]

    rows = [
        {"name": f"bertctl ({a.precision} -> {used}, masked-only head)", "tokens/s": mine["tokens_per_s"],
         "held-out masked acc": mine_acc, "held-out MLM loss": mine_loss, "MFU": mine_mfu, "wall s": mine_wall},
        {"name": f"HF Trainer run_mlm ({a.baseline_precision})", "tokens/s": base["tokens_per_s"],
         "held-out masked acc": base_acc, "held-out MLM loss": base_loss, "MFU": base_mfu, "wall s": base_wall},
    ]
    print_table("MLM pretraining throughput (same config, corpus, tokens)", rows,
                ["name", "tokens/s", "held-out masked acc", "held-out MLM loss", "MFU", "wall s"],
                caption=f"unigram baseline accuracy {unigram:.4f}; MFU against each side's precision's peak; "
                        f"{len(train):,} bertctl / {base['sequences']:,} baseline training sequences")
    (tmp / "result.json").write_text(json.dumps({"ratio": ratio, "rows": rows, "args": vars(a)}, default=str, indent=2))
    informative = max(mine_acc, base_acc) > unigram + 0.01
    if not informative:
        print("note: both models still predict the unigram distribution (the plateau of a 30k-vocabulary model from "
              "scratch); the accuracy comparison needs more steps, e.g. --steps 300")
    print(f"RESULT pretrain_throughput ratio={ratio:.2f} bertctl_tokens_per_s={mine['tokens_per_s']:.0f} "
          f"baseline_tokens_per_s={base['tokens_per_s']:.0f} bertctl_acc={mine_acc:.4f} baseline_acc={base_acc:.4f} "
          f"unigram_acc={unigram:.4f} acc_no_worse={'yes' if mine_acc >= base_acc else 'no'} "
          f"acc_informative={'yes' if informative else 'no'} "
          f"bertctl_mlm_loss={mine_loss:.4f} baseline_mlm_loss={base_loss:.4f} "
          f"bertctl_mfu={mine_mfu:.3f} baseline_mfu={base_mfu:.3f} "
          f"peak_gflops={mine_peak / 1e9:.1f}/{base_peak / 1e9:.1f} precision={used}/{a.baseline_precision} "
          f"steps={a.steps} tokens={a.steps * a.batch_size * a.length} {tag()}")


if __name__ == "__main__":
    main()
