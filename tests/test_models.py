"""Model sources: embedded models, run folders, pickle refusal, offline hub ids, bad paths."""

from __future__ import annotations

import json

import pytest

from bertctl.errors import BertctlError
from bertctl.models import load_model, load_tokenizer, resolve


def test_embedded_minilm_loads_offline():
    from transformers import AutoModel

    src = resolve("minilm")
    assert src.kind == "local"
    model = load_model(AutoModel, src)
    tok = load_tokenizer(src)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert tok("Apple shares rose")["input_ids"][0] == tok.cls_token_id


def test_embedded_smollm2_is_a_gguf_file():
    src = resolve("smollm2")
    assert src.kind == "gguf" and src.gguf_file.endswith(".gguf")


def test_pickle_only_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(BertctlError, match="pickle.*allow_pickle"):
        resolve(str(tmp_path))
    assert resolve(str(tmp_path), allow_pickle=True).kind == "local"


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(BertctlError, match="is not a model"):
        resolve(str(tmp_path))


def test_missing_path_and_offline_hub_id(monkeypatch):
    with pytest.raises(BertctlError, match="does not exist"):
        resolve("./no/such/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BertctlError, match="HF_HUB_OFFLINE"):
        resolve("bert-base-uncased")


def test_truncated_weights_are_a_clear_error(tmp_path):
    from transformers import AutoModel, BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BertctlError, match="cannot load the model"):
        load_model(AutoModel, resolve(str(tmp_path)))


def test_remote_code_is_off_by_default(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "custom-x", "auto_map": {"AutoModel": "m.Model"}}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "m.py").write_text("raise SystemExit('remote code ran')\n")
    from transformers import AutoModel

    with pytest.raises(BertctlError):
        load_model(AutoModel, resolve(str(tmp_path)))
