"""Shared fixtures. Tests never touch the network: hubs are off for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (real public data sets); tests using it skip on a fresh machine."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real-data tests run only where it exists)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op torch thread for the whole session: the tests' models are tiny and gain
    nothing from two, and on a busy 2-core machine OpenMP threads spin-waiting for each
    other made steps many times slower. Subprocesses set their own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with the real MiniLM WordPiece tokenizer (so words split
    into sub-tokens as they do in practice), saved like any local HF checkpoint."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from bertctl.embedded import embedded_path

    tok = AutoTokenizer.from_pretrained(str(embedded_path("minilm")))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=256)
    torch.manual_seed(1234)  # not a run's default seed: a random-init run must not recreate these weights
    path = tmp_path_factory.mktemp("models") / "tiny-bert"
    BertModel(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def cli():
    """Invoke the real Typer app in-process: returns (exit_code, stdout, stderr). A
    CliRunner keeps no state between calls, so one serves the session (module fixtures too)."""
    from typer.testing import CliRunner

    from bertctl.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr

    return invoke
