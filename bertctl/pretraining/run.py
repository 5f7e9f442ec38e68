"""`pretrain(recipe, run, resume)`: the library function behind `bertctl pretrain`.

    corpus -> tokenizer -> cached packed sequences -> model -> train.fit -> model/ + metrics.json

At the start the run folder gets `tokenizer/` and `model_config/config.json`, so every
checkpoint under `checkpoints/` can be loaded on its own (see model.load_checkpoint_model).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np

from bertctl.console import say
from bertctl.errors import BertctlError
from bertctl.runs import read_json, write_metrics

EVAL_EPOCH = 1_000_000  # the "epoch" the held-out masks are drawn for: fixed, never trained on


class Collator:
    """Turns Examples into a batch of tensors. All randomness comes from
    np.random.default_rng([seed, epoch, example index]): a pure function of those three."""

    def __init__(self, objective, spec, pad_id: int, seed: int):
        self.kind, self.pairs, self.spec, self.pad, self.seed = objective.kind, objective.pairs, spec, pad_id, seed

    def __call__(self, examples: list, epoch: int) -> dict:
        return self.causal(examples) if self.kind == "causal" else self.masked(examples, epoch)

    def masked(self, examples: list, epoch: int) -> dict:
        import torch

        from bertctl.pretraining.masking import mask_sequence

        B, L = len(examples), max(len(ex.ids) for ex in examples)
        input_ids = np.full((B, L), self.pad, dtype=np.int64)
        attention = np.zeros((B, L), dtype=np.int64)
        token_types = np.zeros((B, L), dtype=np.int64)
        positions, targets, shown_mask = [], [], []
        for row, ex in enumerate(examples):
            rng = np.random.default_rng([self.seed, epoch, ex.idx])
            corrupted, picked = mask_sequence(ex.ids, self.spec, rng)
            n = len(corrupted)
            input_ids[row, :n], attention[row, :n], token_types[row, ex.n_a:n] = corrupted, 1, 1
            positions.append(picked + row * L)  # flat index into [B * L]
            targets.append(ex.ids[picked])
            if epoch == EVAL_EPOCH:  # held-out only: training never reads it
                shown_mask.append(corrupted[picked] == self.spec.mask_id)
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention),
                 "token_type_ids": torch.from_numpy(token_types),
                 "mlm_positions": torch.from_numpy(np.concatenate(positions)),
                 "mlm_targets": torch.from_numpy(np.concatenate(targets))}
        if shown_mask:  # which targets the model sees as [MASK] (the rest: a random token, or the token itself,
            # which a model that only copies its input gets right: see HeldOut's mask_only_accuracy)
            batch["mlm_shown_mask"] = torch.from_numpy(np.concatenate(shown_mask))
        if self.pairs != "none":
            batch["pair_labels"] = torch.tensor([ex.label for ex in examples], dtype=torch.long)
        batch["padded"] = bool(attention.size) and not attention.all()  # see Pretrainer: no mask, no sync
        return batch

    def causal(self, examples: list) -> dict:
        """Windows of up to length+1 tokens: inputs w[:-1], labels w[1:] (the next token)."""
        import torch

        B, L = len(examples), max(len(ex.ids) for ex in examples) - 1
        input_ids = np.full((B, L), self.pad, dtype=np.int64)
        labels = np.full((B, L), -100, dtype=np.int64)
        attention = np.zeros((B, L), dtype=np.int64)
        for row, ex in enumerate(examples):
            n = len(ex.ids) - 1
            input_ids[row, :n], labels[row, :n], attention[row, :n] = ex.ids[:-1], ex.ids[1:], 1
        return {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
                "attention_mask": torch.from_numpy(attention), "padded": bool(attention.size) and not attention.all()}


def loss_names(objective) -> list[str]:
    if objective.kind == "causal":
        return ["lm"]
    return ["mlm"] + ([objective.pairs] if objective.pairs != "none" else [])


def units(batch: dict, as_tensor: bool = False) -> dict[str, int]:
    """How many predictions each loss sums over (the loop's denominators). `as_tensor`:
    the causal count as a tensor where the batch is (no host sync on a GPU batch)."""
    if "labels" in batch:
        n = (batch["labels"] != -100).sum()
        return {"lm": n if as_tensor else int(n)}
    out = {"mlm": len(batch["mlm_targets"])}
    if "pair_labels" in batch:
        out["pair"] = len(batch["pair_labels"])
    return out


def batch_plan(n: int, batch_size: int, seed: int):
    """A seeded shuffle per epoch, cut into full global batches (the tail is dropped)."""

    def plan(epoch: int) -> list[list[int]]:
        order = np.random.default_rng([seed, epoch]).permutation(n)
        return [order[i:i + batch_size].tolist() for i in range(0, n - batch_size + 1, batch_size)]

    return plan


class HeldOut:
    """Held-out evaluation with fixed masks (EVAL_EPOCH): comparable across checkpoints."""

    def __init__(self, dataset, collate: Collator, objective, max_sequences: int, batch_size: int, unigram_id: int):
        self.n = min(len(dataset), max_sequences)
        self.dataset, self.collate, self.objective, self.batch_size = dataset, collate, objective, batch_size
        self.unigram_id = unigram_id

    def batches(self):
        for start in range(0, self.n, self.batch_size):
            examples = [self.dataset[i] for i in range(start, min(start + self.batch_size, self.n))]
            yield self.collate(examples, EVAL_EPOCH)

    def baselines(self) -> dict[str, float]:
        """What a model that ignores its input scores: always the most frequent training
        token (MLM / next token), always the majority pair label (NSP/SOP)."""
        hits = total = 0
        pair_labels = []
        for batch in self.batches():
            targets = batch["labels"][batch["labels"] != -100] if "labels" in batch else batch["mlm_targets"]
            hits += int((targets == self.unigram_id).sum())
            total += len(targets)
            if "pair_labels" in batch:
                pair_labels.extend(batch["pair_labels"].tolist())
        out = {"unigram_accuracy": round(hits / max(total, 1), 6)}
        if pair_labels:
            share = float(np.mean(pair_labels))
            out[f"{self.objective.pairs}_majority_accuracy"] = round(max(share, 1 - share), 6)
        return out

    def __call__(self, model) -> dict[str, float]:
        device = next(model.parameters()).device
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for batch in self.batches():
            for name, count in units(batch).items():
                counts[name] = counts.get(name, 0) + count
            if "mlm_shown_mask" in batch:
                counts["mlm_shown_mask"] = counts.get("mlm_shown_mask", 0) + int(batch["mlm_shown_mask"].sum())
            out = model({k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()})
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        metrics: dict[str, float] = {}
        for name in loss_names(self.objective):
            n = counts["pair" if name in ("nsp", "sop") else name]
            metrics[f"{name}_loss"] = sums[name] / n
            metrics[f"{name}_accuracy"] = sums[f"{name}_correct"] / n
        if counts.get("mlm_shown_mask"):  # accuracy where the input said [MASK]: no copying the input
            metrics["mask_only_accuracy"] = sums["mlm_shown_mask_correct"] / counts["mlm_shown_mask"]
        if "lm_loss" in metrics:
            metrics["perplexity"] = math.exp(min(metrics["lm_loss"], 50.0))
        return {k: round(v, 6) for k, v in metrics.items()}


def _losses(objective):
    names = loss_names(objective)

    def losses(model, batch):
        out = model(batch)
        sums = {("pair" if k in ("nsp", "sop") else k): out[k] for k in names}
        n = units(batch, as_tensor=True)
        # per-loss means for the log, left on the device (the loop reads them at logging
        # steps only); float64 as Python's float division was
        extras = {}
        for k in names:
            count = n["pair" if k in ("nsp", "sop") else k]
            count = count.clamp(min=1) if hasattr(count, "clamp") else max(count, 1)
            extras[f"{k}_loss"] = out[k].detach().double() / count
        return sums, extras

    return losses


# ----------------------------------------------------------------------- the run


def _tokenizer(recipe, run, resume: bool, log):
    """The run's tokenizer: its own copy when resuming, else reused from a checkpoint or
    trained on the corpus (cached)."""
    from transformers import AutoTokenizer

    from bertctl.pretraining.corpus import corpus_tokenizer

    saved = run.path / "tokenizer"
    if resume and (saved / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(saved))
    source = recipe.tokenizer_source
    if source is None:
        tokenizer, where = corpus_tokenizer(recipe, log)
        log(f"WordPiece tokenizer: {len(tokenizer)} tokens ({where})")
    else:
        from bertctl.models import load_tokenizer, resolve

        tokenizer = load_tokenizer(resolve(source, allow_pickle=recipe.model.allow_pickle),
                                   trust_remote_code=recipe.model.trust_remote_code)
        log(f"tokenizer of {source}: {len(tokenizer)} tokens")
    missing = [name for name in ("cls_token", "sep_token", "pad_token") if getattr(tokenizer, name, None) is None]
    if recipe.objective.kind == "mlm" and tokenizer.mask_token is None:
        missing.append("mask_token")
    if missing:
        raise BertctlError(f"the tokenizer of {source} has no {', '.join(missing)}",
                           fix="use a BERT-style tokenizer, or tokenizer.source=train")
    if recipe.objective.kind == "causal":  # generation starts at [CLS] and stops at [SEP]
        tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    return tokenizer


def _write_recipe(recipe, run, resume: bool) -> None:
    from bertctl.recipe import dump

    run.keep_recipe(dump(recipe), resume)


def _save_final(model, tokenizer, run, gathered: dict | None = None) -> Path:
    """model/ in Hugging Face format, renamed into place only once complete. `gathered`:
    fit's full state dict of the Pretrainer under FSDP/DeepSpeed ("model." + the Hugging
    Face model's names; the model's own parameters are only this rank's shard there)."""
    from bertctl.pretraining.model import save_pretrained

    final = run.file("model")
    if not run.main:
        return final
    state = None if gathered is None else {k[len("model."):]: v for k, v in gathered.items() if k.startswith("model.")}
    tmp = run.file(f".model.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, tokenizer, tmp, state_dict=state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def pretrain(recipe, run, resume: bool = False) -> dict:
    """Run the recipe into `run` (a runs.Run). Returns the final metrics (also in metrics.json)."""
    from bertctl.distributed import process_state
    from bertctl.pretraining.corpus import prepare_sequences
    from bertctl.pretraining.masking import spec_from_tokenizer
    from bertctl.pretraining.model import Pretrainer, build_model, head_kind
    from bertctl.train import Job, fit

    def log(message: str) -> None:
        run.log(message)
        if run.main:
            say(message, stderr=True)

    state = process_state()
    _write_recipe(recipe, run, resume)
    if resume and run.finished():  # nothing to do, and nothing to rewrite (metrics.json keeps its timings)
        metrics = read_json(run.file("metrics.json"))
        if run.main:  # said, not logged: the finished run's files stay as they are
            say(f"{run.path} already finished (step {metrics.get('step', '?')}): nothing to resume")
        return metrics
    from bertctl.pretraining.corpus import input_files

    run.start(input_files(recipe.data), resume)
    obj, s = recipe.objective, recipe.train
    run.note(task=_describe(obj), model=f"{recipe.model.layers}x{recipe.model.hidden} from scratch"
             if recipe.from_scratch else str(recipe.model.init))
    with state.main_process_first():  # rank 0 trains the tokenizer and fills the cache; the others reuse it
        tokenizer = _tokenizer(recipe, run, resume, log)
        train, heldout, cache = prepare_sequences(recipe, tokenizer, log)
    log(f"{len(train):,} training and {len(heldout):,} held-out sequences of <= {recipe.model.max_length} tokens "
        f"({train.meta['documents']:,} + {heldout.meta['documents']:,} documents; cache {cache})")
    if len(train) < s.batch_size:
        raise BertctlError(f"only {len(train)} training sequences for train.batch_size={s.batch_size}",
                           fix="use a larger corpus or a smaller train.batch_size")

    model = build_model(recipe, tokenizer)
    if run.main:  # everything a checkpoint needs to be loaded on its own, written before the first one
        from bertctl.pretraining.corpus import _save_atomically

        model.config.architectures = [type(model).__name__]
        for name, save in (("tokenizer", tokenizer.save_pretrained), ("model_config", model.config.save_pretrained)):
            if not run.file(name).is_dir():  # once, whole or not at all: a kill here must not break --resume
                _save_atomically(run.file(name), save)
    n_params = sum(p.numel() for p in model.parameters())
    if getattr(model, "new_parameters", None):
        heads = sorted({".".join(k.split(".")[:2]) for k in model.new_parameters})
        log(f"{recipe.model.init} has no weights for {', '.join(heads)}: initialised fresh")
    log(f"{type(model).__name__}: {n_params / 1e6:.2f}M parameters, "
        f"{'from scratch' if recipe.from_scratch else 'continued from ' + recipe.model.init}")

    counts = train.token_counts()
    counts[tokenizer.all_special_ids] = 0  # special tokens are never masked targets
    if obj.kind == "causal":
        counts = train.token_counts()  # next-token targets include [SEP] and [CLS]
    collate = Collator(obj, spec_from_tokenizer(tokenizer, obj) if obj.kind == "mlm" else None,
                       tokenizer.pad_token_id, s.seed)
    evaluate = HeldOut(heldout, collate, obj, recipe.eval.max_sequences, recipe.eval.batch_size, int(np.argmax(counts)))
    job = Job(batches=batch_plan(len(train), s.batch_size, s.seed), dataset=train, collate=collate, units=units,
              losses=_losses(obj), evaluate=evaluate)
    wrapped = Pretrainer(model, obj)
    result = fit(wrapped, job, s, run, resume, describe=f"pretraining ({head_kind(obj)})")

    final = {k.removeprefix("eval_"): v for k, v in result.final.items() if k.startswith("eval_")}
    metrics = {**final, **evaluate.baselines(), "step": result.steps,
               "tokens_per_s": round(result.tokens_per_s, 1), "train_seconds": round(result.seconds, 1),
               "parameters": n_params, "train_sequences": len(train), "heldout_sequences": evaluate.n,
               "vocab_size": len(tokenizer), "objective": _describe(obj), "precision": result.precision.record()}
    model_dir = _save_final(model, tokenizer, run, result.state_dict)
    if obj.kind == "mlm" and recipe.eval.fill_mask and run.main:
        from bertctl.pretraining.fill_mask import examples

        metrics["fill_mask"] = examples(model_dir, heldout, recipe.eval.fill_mask, s.seed)
    write_metrics(run, metrics, scores={"heldout": final}, main_metric="mlm_accuracy" if obj.kind == "mlm" else "perplexity")
    from bertctl.modelcard import pretrain_card

    pretrain_card(run, recipe, metrics)  # model/README.md
    _plot_loss(run)
    run.log(f"finished: {metrics}")
    run.finish()
    return metrics


def _describe(obj) -> str:
    if obj.kind == "causal":
        return "causal LM"
    mlm = {"token": "MLM", "whole_word": "whole-word MLM", "span": "span MLM"}[obj.masking]
    return mlm + (f" + {obj.pairs.upper()}" if obj.pairs != "none" else "")


def _plot_loss(run) -> None:
    if not run.main:
        return
    rows = [r for r in run.metrics_history() if "loss" in r]
    if len(rows) >= 2:
        from bertctl.report import line_plot

        line_plot(run.file("loss.png"), {"training loss": ([r["step"] for r in rows], [r["loss"] for r in rows])},
                  "step", "loss", "Pretraining loss")


def results_rows(metrics: dict) -> list[dict]:
    """The final table: held-out metrics first, then the run's facts."""
    order = ["mlm_accuracy", "mask_only_accuracy", "lm_accuracy", "unigram_accuracy", "mlm_loss", "lm_loss", "perplexity",
             "nsp_accuracy", "nsp_majority_accuracy", "nsp_loss", "sop_accuracy", "sop_majority_accuracy", "sop_loss"]
    names = {"unigram_accuracy": "baseline: most frequent token",
             "mask_only_accuracy": "held-out accuracy where the input shows [MASK]", "nsp_majority_accuracy": "baseline: majority NSP label",
             "sop_majority_accuracy": "baseline: majority SOP label"}
    rows = [{"metric": names.get(k, f"held-out {k.replace('_', ' ')}"), "value": metrics[k]} for k in order if k in metrics]
    for k in ("objective", "step", "tokens_per_s", "train_seconds", "parameters", "vocab_size"):
        if k in metrics:
            rows.append({"metric": k.replace("_", " "), "value": metrics[k]})
    return rows
