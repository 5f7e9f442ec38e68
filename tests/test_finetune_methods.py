"""LoRA and QLoRA fine-tuning: peft adapters, the trainable head, merging, bad target
modules, and the two bitsandbytes CPU traps (unquantised head; eval between epochs)."""

from __future__ import annotations

import json

import pytest

from bertctl.errors import BertctlError
from bertctl.runs import Run

from .helpers import recipe

pytestmark = pytest.mark.slow


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_lora_saves_a_peft_adapter_with_the_head_and_merges(tmp_path, tiny):
    from safetensors.torch import load_file
    from transformers import pipeline

    from bertctl.finetune.run import finetune

    r = recipe(tiny, "nli", method="lora", merge=True, lora={"r": 4, "alpha": 8})
    finetune(r, Run.create(tmp_path / "lora", "finetune"), quiet=True)
    model_dir = tmp_path / "lora" / "model"
    config = json.loads((model_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and sorted(config["target_modules"]) == ["query", "value"]
    assert "classifier" in config["modules_to_save"]
    weights = load_file(str(model_dir / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in weights) and any("classifier" in k for k in weights)
    assert not any("word_embeddings" in k for k in weights)  # the frozen encoder is not in the adapter
    summary = json.loads((tmp_path / "lora" / "metrics.json").read_text())
    assert summary["trainable_params"] < summary["total_params"] / 10
    # merged/: a plain model that a pipeline loads without peft, predicting as the adapter did
    clf = pipeline("text-classification", model=str(tmp_path / "lora" / "merged"))
    assert clf.model.config.id2label == {0: "contradiction", 1: "entailment", 2: "neutral"}
    preds = _lines(tmp_path / "lora" / "predictions_dev.jsonl")[:10]
    got = clf([{"text": p["text"], "text_pair": p["text_pair"]} for p in preds])
    assert [g["label"] for g in got] == [p["prediction"] for p in preds]


def test_lora_run_reloads_for_eval_only(tmp_path, tiny):
    from bertctl.finetune.evaluate import evaluate_run
    from bertctl.finetune.run import finetune

    r = recipe(tiny, "pos", method="lora", train={"lr": 5e-3})
    dev = finetune(r, Run.create(tmp_path / "l", "finetune"), quiet=True)
    again = evaluate_run(tmp_path / "l", [], out=tmp_path / "e", quiet=True)
    assert again["accuracy"] == pytest.approx(dev["accuracy"])


def test_impossible_lora_target_lists_the_available_modules(tmp_path, tiny):
    from bertctl.finetune.run import finetune

    r = recipe(tiny, "cls", method="lora", lora={"target_modules": ["q_proj", "value"]})
    with pytest.raises(BertctlError) as e:
        finetune(r, Run.create(tmp_path / "bad", "finetune"), quiet=True)
    msg = str(e.value)
    assert "q_proj" in msg and "available linear modules" in msg
    for name in ("query", "key", "value", "dense"):
        assert name in msg


def test_random_init_with_lora_is_refused(tmp_path, tiny):
    from bertctl.finetune.run import finetune

    r = recipe(tiny, "cls", method="lora", model={"init": "random"})
    with pytest.raises(BertctlError, match="method=full"):
        finetune(r, Run.create(tmp_path / "x", "finetune"), quiet=True)


def _has_avx512_bf16() -> bool:
    from bitsandbytes.functional import has_avx512bf16

    return bool(has_avx512bf16())


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_trains_through_evaluation_between_epochs(tmp_path, tiny, bits):
    """2 epochs, an evaluation after each: the 4-bit CPU layers must not be repacked by
    the eval forward (which made the next training step fail)."""
    from bertctl.finetune.run import finetune

    r = recipe(tiny, "cls", method="qlora", quant={"bits": bits}, train={"epochs": 2, "precision": "bf16"})
    dev = finetune(r, Run.create(tmp_path / f"q{bits}", "finetune"), quiet=True)
    summary = json.loads((tmp_path / f"q{bits}" / "metrics.json").read_text())
    assert [e["epoch"] for e in summary["epochs"]] == [1.0, 2.0] and "accuracy" in dev
    assert all(e["train_loss"] == e["train_loss"] for e in summary["epochs"])  # finite
    assert (tmp_path / f"q{bits}" / "model" / "adapter_model.safetensors").exists()


def test_qlora_head_stays_unquantised_and_trainable(tiny):
    import bitsandbytes as bnb

    from bertctl.finetune.kinds import get_task
    from bertctl.finetune.methods import build_model
    from bertctl.models import resolve

    r = recipe(tiny, "cls", method="qlora")
    task = get_task("cls")(r, ["a", "b"])
    model, info = build_model(r, task, resolve(str(tiny)))
    quantised = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and not any("classifier" in n for n in quantised)
    head = [n for n, p in model.named_parameters() if "classifier" in n and p.requires_grad]
    assert head, "the new head must train"


def test_without_the_fix_the_cpu_repack_breaks_training(tmp_path, tiny, monkeypatch):
    """Documents the trap the fix is for; skipped on CPUs where bitsandbytes never repacks."""
    if not _has_avx512_bf16():
        pytest.skip("this CPU has no AVX512-BF16: bitsandbytes does not repack here")
    from bertctl.finetune import methods
    from bertctl.finetune.run import finetune

    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    # 64 wide: the packed kernel's block size is 32, and at width 32 the repack breaks the
    # evaluation itself rather than the training step after it
    path = tmp_path / "bert64"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=128, max_position_embeddings=128)).save_pretrained(str(path))
    AutoTokenizer.from_pretrained(str(tiny)).save_pretrained(str(path))
    monkeypatch.setattr(methods, "keep_training_layout", lambda model: None)
    r = recipe(path, "cls", method="qlora", train={"epochs": 2, "precision": "bf16"})
    run = Run.create(tmp_path / "broken", "finetune")
    with pytest.raises(RuntimeError, match="leaf Variable"):
        finetune(r, run, quiet=True)
    history = run.metrics_history()
    assert any("eval_accuracy" in row for row in history)  # epoch 1 and its evaluation went fine
    assert max(row["step"] for row in history) == 6  # the first step after the evaluation failed
    monkeypatch.undo()  # with the fix, the same run goes through
    dev = finetune(r, Run.create(tmp_path / "fixed", "finetune"), quiet=True)
    assert len(json.loads((tmp_path / "fixed" / "metrics.json").read_text())["epochs"]) == 2 and "accuracy" in dev


def test_qlora_without_bitsandbytes_is_one_clear_error(tmp_path, tiny, monkeypatch):
    import builtins

    from bertctl.finetune.run import finetune

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name.startswith("bitsandbytes"):
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    r = recipe(tiny, "cls", method="qlora")
    with pytest.raises(BertctlError, match=r"QLoRA \(4-bit\) cannot run here.*method=lora"):
        finetune(r, Run.create(tmp_path / "x", "finetune"), quiet=True)


def test_merge_flag_on_resume_of_a_finished_run(tmp_path, tiny):
    from bertctl.finetune.run import finetune

    r = recipe(tiny, "cls", method="lora")
    first = finetune(r, Run.create(tmp_path / "m", "finetune"), quiet=True)
    assert not (tmp_path / "m" / "merged").exists()
    again = finetune(r.model_copy(update={"merge": True}), Run.create(tmp_path / "m", "finetune", resume=True),
                     resume=True, quiet=True)
    assert again == pytest.approx(first)
    assert (tmp_path / "m" / "merged" / "model.safetensors").exists()


def test_lora_reports_the_new_head_once(tiny):
    from bertctl.models import resolve
    from bertctl.finetune.kinds import get_task
    from bertctl.finetune.methods import build_model

    r = recipe(tiny, "cls", method="lora")
    _, info = build_model(r, get_task("cls")(r, ["a", "b"]), resolve(str(tiny)))
    assert info["new_modules"] == ["classifier"]  # peft must not grow bertctl's own list
