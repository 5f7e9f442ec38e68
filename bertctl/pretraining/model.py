"""Models for pretraining: build one from the recipe's size or continue a checkpoint, and
compute the objective's losses fast.

  MLM + NSP/SOP   BertForPreTraining  (AutoModelForPreTraining)
  MLM only        BertForMaskedLM     (AutoModelForMaskedLM)
  causal          GPT2LMHeadModel     (AutoModelForCausalLM), with the same WordPiece tokenizer

The fast MLM head: the stock `BertForMaskedLM.forward` projects every position onto the
vocabulary (a [batch, length, vocab] matrix, ~90 % of a tiny model's step) although only
15 % of positions have a label. `Pretrainer` runs the encoder, gathers the hidden states
at the masked positions and applies the same prediction head to those only. The weights
and their names are the stock model's, so `save_pretrained` writes a normal checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bertctl.errors import BertctlError

AUTO_CLASS = {"pretraining": "AutoModelForPreTraining", "mlm": "AutoModelForMaskedLM", "causal": "AutoModelForCausalLM"}


def head_kind(objective) -> str:
    if objective.kind == "causal":
        return "causal"
    return "mlm" if objective.pairs == "none" else "pretraining"


def auto_class(objective):
    import transformers

    return getattr(transformers, AUTO_CLASS[head_kind(objective)])


def scratch_config(recipe, tokenizer):
    """A Hugging Face config of the recipe's size for the tokenizer's vocabulary."""
    from transformers import BertConfig, GPT2Config

    m = recipe.model
    if recipe.objective.kind == "causal":
        return GPT2Config(vocab_size=len(tokenizer), n_positions=m.max_length, n_embd=m.hidden, n_layer=m.layers,
                          n_head=m.heads, n_inner=m.intermediate, resid_pdrop=m.dropout, embd_pdrop=m.dropout,
                          attn_pdrop=m.dropout, bos_token_id=tokenizer.cls_token_id,
                          eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    return BertConfig(vocab_size=len(tokenizer), hidden_size=m.hidden, num_hidden_layers=m.layers,
                      num_attention_heads=m.heads, intermediate_size=m.intermediate,
                      max_position_embeddings=m.max_length, hidden_dropout_prob=m.dropout,
                      attention_probs_dropout_prob=m.dropout, type_vocab_size=2,
                      pad_token_id=tokenizer.pad_token_id)


def build_model(recipe, tokenizer):
    """From scratch (seeded by train.seed) or continued from model.init."""
    cls = auto_class(recipe.objective)
    if recipe.from_scratch:
        torch.manual_seed(recipe.train.seed)  # the initial weights depend on the seed only
        return cls.from_config(scratch_config(recipe, tokenizer))
    from bertctl.models import load_model, resolve

    source = resolve(recipe.model.init, allow_pickle=recipe.model.allow_pickle)
    if source.kind == "gguf":
        raise BertctlError(f"{recipe.model.init} is a GGUF (inference-only) model", fix="continue from a safetensors checkpoint")
    extra = {}
    if recipe.objective.kind == "causal":
        extra["is_decoder"] = True  # BERT-family checkpoints become left-to-right decoders
    torch.manual_seed(recipe.train.seed)  # heads the checkpoint lacks are initialised reproducibly
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # we report missing heads in one line instead of a load report table
    try:
        model, info = load_model(cls, source, trust_remote_code=recipe.model.trust_remote_code,
                                 allow_pickle=recipe.model.allow_pickle, output_loading_info=True, **extra)
    finally:
        logging.set_verbosity(verbosity)
    check_compatible(model, recipe, tokenizer)
    model.new_parameters = sorted(info.get("missing_keys", []))  # e.g. an MLM head an encoder-only checkpoint lacks
    return model


def check_compatible(model, recipe, tokenizer) -> None:
    config = model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if positions and recipe.model.max_length > positions:
        raise BertctlError(f"model.max_length={recipe.model.max_length} is longer than {recipe.model.init} allows ({positions})",
                           fix=f"set model.max_length={positions} or less")
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise BertctlError(f"the tokenizer has {len(tokenizer)} tokens but {recipe.model.init} only {model.get_input_embeddings().num_embeddings}",
                           fix="continue with the checkpoint's own tokenizer (tokenizer.source=auto)")
    if head_kind(recipe.objective) == "pretraining" and not _has(model, "cls.seq_relationship"):
        raise BertctlError(f"{type(model).__name__} has no sentence-pair head for {recipe.objective.pairs.upper()}",
                           fix="use objective.pairs=none with this checkpoint")


def _has(module: nn.Module, dotted: str) -> bool:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return False
    return True


def mlm_head(model: nn.Module) -> nn.Module | None:
    """The module mapping hidden states to vocabulary logits, when we know where it is."""
    if _has(model, "cls.predictions"):  # BERT family
        return model.cls.predictions
    if _has(model, "lm_head"):  # RoBERTa / XLM-R / CamemBERT
        return model.lm_head
    return None


# ------------------------------------------------------------------- the objective


class FusedLinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(h_i @ W^T + b, y_i), with its gradient computed in the same pass.

    The unfused head materialises [M, V] logits, casts them to fp32, runs log-softmax,
    then in backward a [M, V] gradient, a cast back and a zero-filled NLL gradient: many
    trips over a 75 MB matrix for 600 masked tokens and a 30k vocabulary. Here each chunk
    of rows goes matmul (+bias) -> fp32 log-softmax -> exp in place = softmax -> minus
    one-hot, which is the loss's gradient w.r.t. the logits and all that backward needs;
    the two gradient matmuls then run once over all rows. ~2.5x faster for the head on
    CPU, same numbers (fp32 softmax). Matmuls run in the autocast dtype (bf16) when
    autocast is on, as nn.Linear would.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk: int = 64):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        with torch.autocast(device, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)  # [M, H], [V, H]
            b = bias.to(dtype) if bias is not None else None
            M, V = h.shape[0], w.shape[0]
            grad_logits = torch.empty(M, V, dtype=dtype, device=hidden.device)  # softmax - onehot
            grad_bias = torch.zeros(V, dtype=torch.float32, device=hidden.device)
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for i in range(0, M, chunk):
                j = min(i + chunk, M)
                rows, t = torch.arange(j - i, device=hidden.device), targets[i:j]
                z = torch.addmm(b, h[i:j], w.t()) if b is not None else torch.mm(h[i:j], w.t())  # [c, V]
                p = torch.log_softmax(z, dim=1, dtype=torch.float32)
                loss -= p[rows, t].sum()
                p.exp_()  # softmax, in place
                p[rows, t] -= 1.0
                grad_bias += p.sum(0)
                grad_logits[i:j] = p
            grad_hidden = torch.mm(grad_logits, w)  # [M, H]
            grad_weight = torch.mm(grad_logits.t(), h)  # [V, H]
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.has_bias = bias is not None
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        dh, dw, db = ctx.dtypes
        return ((grad_hidden * grad_loss).to(dh), (grad_weight * grad_loss).to(dw),
                (grad_bias * grad_loss).to(db) if ctx.has_bias else None, None, None)


def fused_linear_cross_entropy(hidden, weight, bias, targets, chunk: int | None = None) -> torch.Tensor:
    """Summed cross-entropy of the linear layer (weight [V, H], bias [V]) on hidden [M, H].

    `chunk` rows at a time: 64 on CPU (a [64, V] block stays in cache); on a GPU 1024,
    because 64-row matmuls are too small to fill it and each chunk costs kernel launches."""
    if chunk is None:
        chunk = 1024 if hidden.is_cuda else 64
    return FusedLinearCrossEntropy.apply(hidden, weight, bias, targets, chunk)


class Pretrainer(nn.Module):
    """Wraps the Hugging Face model; `forward(batch)` returns summed losses and counts.

    Returned keys: "mlm" / "nsp" / "sop" / "lm" (summed cross-entropies, the loop divides
    by the global number of predictions) and "<name>_correct" (for accuracies).
    """

    def __init__(self, model: nn.Module, objective):
        super().__init__()
        self.model = model
        self.kind, self.pairs = objective.kind, objective.pairs
        self.head = mlm_head(model) if self.kind == "mlm" else None

    def compile_targets(self) -> list[nn.Module]:
        """What `train.compile` compiles: the encoder only when the masked-only head is
        used (it gathers a different number of positions every batch), else the model."""
        if self.head is not None:
            return [getattr(self.model, self.model.base_model_prefix)]
        return [self.model]

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.kind == "causal":
            return self._causal(batch)
        return self._masked(batch)

    @staticmethod
    def _mask(batch: dict):
        """The attention mask, or None when the collator found no padding in the batch
        (packed sequences: all but the corpus's last one are full). Without a mask SDPA
        may use its flash kernel, and transformers does not have to look into the mask
        (`mask.all()` in Python, a host sync per forward) to find out it is all ones."""
        return batch.get("attention_mask") if batch.get("padded", True) else None

    def _masked(self, batch: dict) -> dict[str, torch.Tensor]:
        inputs = {k: batch[k] for k in ("input_ids", "token_type_ids") if k in batch}
        inputs["attention_mask"] = self._mask(batch)
        positions, targets = batch["mlm_positions"], batch["mlm_targets"]  # [M] flat indices into B*L, [M]
        out: dict[str, torch.Tensor] = {}
        logits = None
        if self.head is not None:
            base = getattr(self.model, self.model.base_model_prefix)
            encoded = base(**inputs)
            hidden = encoded.last_hidden_state  # [B, L, H]
            picked = hidden.flatten(0, 1).index_select(0, positions)  # [M, H]: masked positions only
            if self.training and _has(self.head, "transform") and _has(self.head, "decoder"):
                # BERT's head: transform (dense, gelu, LayerNorm), then the tied vocabulary projection, fused with the loss
                decoder = self.head.decoder
                out["mlm"] = fused_linear_cross_entropy(self.head.transform(picked), decoder.weight, decoder.bias, targets)
            else:
                logits = self.head(picked)  # [M, V]
            pooled = encoded.pooler_output if self.pairs != "none" else None  # [B, H]
            pair_logits = self.model.cls.seq_relationship(pooled) if pooled is not None else None  # [B, 2]
        else:  # unknown architecture: the stock forward, then pick the masked positions
            result = self.model(**inputs)
            full = result.logits if hasattr(result, "logits") else result.prediction_logits
            logits = full.flatten(0, 1).index_select(0, positions)
            pair_logits = getattr(result, "seq_relationship_logits", None)
        if logits is not None:
            logits = logits.float()
            out["mlm"] = F.cross_entropy(logits, targets, reduction="sum")
            if not self.training:  # accuracies only when evaluating: an argmax over [M, V] is not free
                hit = logits.argmax(-1) == targets
                out["mlm_correct"] = hit.sum()
                if "mlm_shown_mask" in batch:
                    out["mlm_shown_mask_correct"] = (hit & batch["mlm_shown_mask"]).sum()
        if self.pairs != "none":
            labels = batch["pair_labels"]  # [B]
            out[self.pairs] = F.cross_entropy(pair_logits.float(), labels, reduction="sum")
            if not self.training:
                out[f"{self.pairs}_correct"] = (pair_logits.argmax(-1) == labels).sum()
        return out

    def _causal(self, batch: dict) -> dict[str, torch.Tensor]:
        logits = self.model(input_ids=batch["input_ids"], attention_mask=self._mask(batch)).logits  # [B, L, V]
        labels = batch["labels"]  # [B, L]: the next token, or -100
        flat_logits, flat_labels = logits.flatten(0, 1).float(), labels.flatten()
        keep = flat_labels != -100
        out = {"lm": F.cross_entropy(flat_logits, flat_labels, ignore_index=-100, reduction="sum")}
        if not self.training:
            out["lm_correct"] = ((flat_logits.argmax(-1) == flat_labels) & keep).sum()
        return out


# ------------------------------------------------------- saving and loading checkpoints


def save_pretrained(model: nn.Module, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
    """The Hugging Face folder: config.json, model.safetensors, tokenizer files.
    `state_dict`: the full weights when the model itself holds only a shard (FSDP, DeepSpeed)."""
    from transformers.utils import logging

    folder.mkdir(parents=True, exist_ok=True)
    logging.disable_progress_bar()  # a one-file "Writing model shards" bar is noise under our own
    extra = {"state_dict": dict(state_dict)} if state_dict is not None else {}  # a copy: save_pretrained empties it
    model.save_pretrained(str(folder), safe_serialization=True, **extra)
    tokenizer.save_pretrained(str(folder))


def load_checkpoint_tokenizer(run_dir):
    """The tokenizer a pretraining run used (saved in <run>/tokenizer at its start)."""
    from transformers import AutoTokenizer

    folder = Path(run_dir) / "tokenizer"
    if not (folder / "tokenizer_config.json").exists():
        raise BertctlError(f"{run_dir} has no tokenizer/ folder", fix="pass the folder of a `bertctl pretrain` run")
    return AutoTokenizer.from_pretrained(str(folder))


def load_checkpoint_model(run_dir, checkpoint_dir, auto_cls=None):
    """A model from one checkpoint of a pretraining run, built from the run's
    `model_config/config.json` and the checkpoint's `model.safetensors` (trainable
    parameters by name, as the training loop writes them). `auto_cls` is e.g.
    AutoModelForMaskedLM, AutoModel (encoder only) or AutoModelForCausalLM; default
    the class the run trained. Returns the model in eval mode."""
    import transformers
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run_dir, checkpoint_dir = Path(run_dir), Path(checkpoint_dir)
    config_dir = run_dir / "model_config"
    if not (config_dir / "config.json").exists():
        raise BertctlError(f"{run_dir} has no model_config/config.json", fix="pass the folder of a `bertctl pretrain` run")
    weights_file = checkpoint_dir / "model.safetensors"
    if not weights_file.exists():
        raise BertctlError(f"{checkpoint_dir} holds no model.safetensors", fix="pass a folder under <run>/checkpoints/")
    config = transformers.AutoConfig.from_pretrained(str(config_dir))
    if auto_cls is None:
        auto_cls = getattr(transformers, config.architectures[0]) if config.architectures else transformers.AutoModel
    model = auto_cls.from_config(config) if hasattr(auto_cls, "from_config") else auto_cls(config)
    try:
        weights = load_file(str(weights_file))
    except (OSError, SafetensorError) as e:
        raise BertctlError(f"{weights_file} is damaged ({str(e)[:120]})", fix="use another checkpoint") from None
    weights = _rename_for(model, {k.removeprefix("model."): v for k, v in weights.items()})
    own = dict(model.named_parameters())
    missing = [k for k in own if k not in weights]
    if len(missing) > len(own) // 2:
        raise BertctlError(f"{checkpoint_dir} does not fit {type(model).__name__} ({len(missing)} of {len(own)} parameters missing)",
                           fix="pass the run folder the checkpoint belongs to, or another model class")
    model.load_state_dict({k: v for k, v in weights.items() if k in model.state_dict()}, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()


def _rename_for(model: nn.Module, weights: dict) -> dict:
    """Checkpoint names are the training class's ("bert.encoder..."); an encoder-only class
    has no "bert." prefix, a class with heads needs it. Add or strip it to fit `model`."""
    own = set(model.state_dict())
    if any(k in own for k in weights):
        return weights
    prefix = f"{model.base_model_prefix}."
    stripped = {k.removeprefix(prefix): v for k, v in weights.items()}
    if any(k in own for k in stripped):
        return stripped
    return {prefix + k: v for k, v in weights.items()}
