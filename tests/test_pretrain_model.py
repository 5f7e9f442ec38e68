"""The fast MLM head gives the stock model's loss and gradients; the fused linear
cross-entropy matches PyTorch's; NSP/SOP and causal losses match the stock heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bertctl.pretraining.config import ObjectiveSection
from bertctl.pretraining.corpus import Example
from bertctl.pretraining.masking import MaskSpec
from bertctl.pretraining.model import Pretrainer, fused_linear_cross_entropy
from bertctl.pretraining.run import Collator

VOCAB = 300


@pytest.mark.parametrize("bias", [True, False])
def test_fused_linear_cross_entropy_matches_pytorch(bias):
    torch.manual_seed(0)
    h = torch.randn(70, 16, requires_grad=True)
    w = (torch.randn(VOCAB, 16) * 0.3).requires_grad_()
    b = torch.randn(VOCAB, requires_grad=True) if bias else None
    t = torch.randint(0, VOCAB, (70,))
    ref = F.cross_entropy(F.linear(h, w, b), t, reduction="sum")
    grads = torch.autograd.grad(ref * 0.5, [h, w] + ([b] if bias else []))
    out = fused_linear_cross_entropy(h, w, b, t, chunk=32)  # 32 does not divide 70: a ragged last chunk
    mine = torch.autograd.grad(out * 0.5, [h, w] + ([b] if bias else []))
    assert out.item() == pytest.approx(ref.item(), rel=1e-5)
    for g_ref, g in zip(grads, mine):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)


def test_fused_head_in_bf16_is_close_to_fp32():
    torch.manual_seed(1)
    h, w, b = torch.randn(50, 32), torch.randn(VOCAB, 32) * 0.2, torch.zeros(VOCAB)
    t = torch.randint(0, VOCAB, (50,))
    ref = F.cross_entropy(F.linear(h, w, b), t, reduction="sum")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused_linear_cross_entropy(h, w, b, t)
    assert out.dtype == torch.float32 and out.item() == pytest.approx(ref.item(), rel=2e-2)


def _batch(pairs: str, n=6, length=24, seed=0):
    rng = np.random.default_rng(seed)
    special = np.zeros(VOCAB, dtype=bool)
    special[:5] = True
    spec = MaskSpec(mask_id=4, special=special, continuation=np.zeros(VOCAB, dtype=bool))
    examples = [Example(i, np.concatenate([[2], rng.integers(5, VOCAB, length - 2 - i), [3]]), 10, i % 2)
                for i in range(n)]  # ragged lengths: padding and attention masks are exercised
    return Collator(ObjectiveSection(pairs=pairs), spec, 0, seed=0)(examples, 0)


def _tiny_bert(cls):
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return cls(config)


def _stock_labels(batch):
    labels = torch.full(batch["input_ids"].shape, -100).flatten()
    labels[batch["mlm_positions"]] = batch["mlm_targets"]
    return labels.view(batch["input_ids"].shape)


@pytest.mark.parametrize("pairs", ["none", "nsp"])
def test_fast_head_gives_the_stock_loss_and_gradients(pairs):
    from transformers import BertForMaskedLM, BertForPreTraining

    model = _tiny_bert(BertForMaskedLM if pairs == "none" else BertForPreTraining)
    batch = _batch(pairs)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    labels = _stock_labels(batch)
    if pairs == "none":
        stock = model(**inputs, labels=labels).loss  # mean over masked tokens
    else:
        out = model(**inputs)
        stock = (F.cross_entropy(out.prediction_logits.flatten(0, 1), labels.flatten())
                 + F.cross_entropy(out.seq_relationship_logits, batch["pair_labels"]))
    stock_grads = torch.autograd.grad(stock, list(model.parameters()), allow_unused=True)

    fast = Pretrainer(model, ObjectiveSection(pairs=pairs)).train()
    sums = fast(batch)
    mine = sums["mlm"] / len(batch["mlm_targets"]) + (sums["nsp"] / len(batch["pair_labels"]) if pairs == "nsp" else 0)
    assert mine.item() == pytest.approx(stock.item(), rel=1e-5)
    for (name, p), g_ref, g in zip(model.named_parameters(), stock_grads,
                                   torch.autograd.grad(mine, list(model.parameters()), allow_unused=True)):
        if g_ref is None:
            assert g is None or not g.abs().any(), name
        else:
            torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6, msg=name)


def test_eval_mode_counts_correct_predictions():
    from transformers import BertForPreTraining

    model = _tiny_bert(BertForPreTraining).eval()
    batch = _batch("sop")
    with torch.no_grad():
        out = Pretrainer(model, ObjectiveSection(pairs="sop")).eval()(batch)
        stock = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    predicted = stock.prediction_logits.flatten(0, 1)[batch["mlm_positions"]].argmax(-1)
    assert out["mlm_correct"].item() == int((predicted == batch["mlm_targets"]).sum())
    assert out["sop_correct"].item() == int((stock.seq_relationship_logits.argmax(-1) == batch["pair_labels"]).sum())


def test_causal_loss_is_the_stock_shifted_loss():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=2, eos_token_id=3)).eval()  # eval: no dropout
    windows = [np.arange(5, 5 + 17), np.arange(40, 40 + 12)]
    batch = Collator(ObjectiveSection(kind="causal", pairs="none"), None, 0, 0)(
        [Example(i, w, len(w), -1) for i, w in enumerate(windows)], 0)
    with torch.no_grad():
        out = Pretrainer(model, ObjectiveSection(kind="causal", pairs="none")).eval()(batch)
    total = 0.0
    with torch.no_grad():
        for w in windows:  # the stock loss: labels = inputs, shifted inside the model, on the whole window
            ids = torch.tensor(w)[None]
            total += model(input_ids=ids, labels=ids).loss.item() * (len(w) - 1)
    assert out["lm"].item() == pytest.approx(total, rel=1e-5)
    assert 0 <= out["lm_correct"].item() <= len(windows[0]) + len(windows[1]) - 2
