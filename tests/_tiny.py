"""A tiny classification job for exercising the training loop (no data files needed)."""

from __future__ import annotations

import torch

N, LEN, VOCAB = 192, 12, 64


def data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(4, VOCAB, (N, LEN), generator=g)
    y = (x[:, 0] > VOCAB // 2).long()
    return [{"input_ids": x[i], "label": y[i]} for i in range(N)]


def model(dropout: float = 0.1):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=LEN,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(cfg)


def job(batch_size: int = 32, nan_at: int | None = None, on_step=None):
    from bertctl.train import Job

    rows = data()
    calls = {"n": 0}

    def batches(epoch):
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(epoch)).tolist()
        return [perm[i:i + batch_size] for i in range(0, N - batch_size + 1, batch_size)]

    def collate(examples, epoch):
        return {"input_ids": torch.stack([e["input_ids"] for e in examples]),
                "labels": torch.stack([e["label"] for e in examples])}

    def losses(m, b):
        calls["n"] += 1
        if on_step:
            on_step(calls["n"])
        logits = m(input_ids=b["input_ids"]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits, b["labels"], reduction="sum")
        if nan_at is not None and calls["n"] >= nan_at:
            loss = loss * float("nan")
        return {"cls": loss}, {}

    def evaluate(m):
        b = collate(rows[:64], 0)
        return {"accuracy": (m(input_ids=b["input_ids"]).logits.argmax(-1) == b["labels"]).float().mean().item(),
                "loss": torch.nn.functional.cross_entropy(m(input_ids=b["input_ids"]).logits.float(), b["labels"]).item()}

    return Job(batches, rows, collate, lambda b: {"cls": len(b["labels"])}, losses, evaluate)
