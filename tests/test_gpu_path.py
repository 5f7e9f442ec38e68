"""The GPU fast path, checked on CPU: no host syncs inside a training step, the deferred
non-finite check, unpadded pretraining batches without a mask, SDPA attention,
`train.compile`, the fused AdamW, pinned copies and the dry run of benchmarks/gpu.sh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertctl.config import TrainSettings
from bertctl.errors import BertctlError
from bertctl.runs import Run
from bertctl.train import fit

from . import _tiny


def settings(**kw) -> TrainSettings:
    base = dict(epochs=3, batch_size=32, lr=2e-3, save_every=4, log_every=1, precision="fp32")
    return TrainSettings(**{**base, **kw})


# ------------------------------------------------------------------ host syncs


class Spy(torch.Tensor):
    """A tensor that counts its conversions to Python numbers. Results of operations on
    it are Spies too (torch's default __torch_function__), so everything computed from a
    "device" batch is watched; on a GPU each of these conversions waits for the GPU."""

    conversions = 0

    def _count(self):
        type(self).conversions += 1

    def item(self):
        self._count()
        return super().item()

    def tolist(self):
        self._count()
        return super().tolist()

    def __bool__(self):
        self._count()
        return super().__bool__()

    def __float__(self):
        self._count()
        return super().__float__()

    def __int__(self):
        self._count()
        return super().__int__()


def _spy_on_device(monkeypatch):
    """Batches reach the model as Spies: what a GPU step would hold on the device."""
    import bertctl.train as train_mod

    real = train_mod._to

    def to(batch, device):
        return {k: v.as_subclass(Spy) if torch.is_tensor(v) else v for k, v in real(batch, device).items()}

    monkeypatch.setattr(train_mod, "_to", to)
    Spy.conversions = 0


def _conversions(monkeypatch, tmp_path, steps: int, model, job, **kw) -> int:
    _spy_on_device(monkeypatch)
    # a log line, an evaluation and a checkpoint at the last step only
    fit(model, job, settings(max_steps=steps, log_every=1000, save_every=1000, eval_every=1000, **kw),
        Run.create(tmp_path / f"r{steps}", "test"))
    return Spy.conversions


def test_the_training_step_does_not_wait_for_the_device(monkeypatch, tmp_path):
    """As many host syncs for 10 steps as for 3: none inside a step, only at the
    logging/evaluation/checkpoint boundary."""
    few = _conversions(monkeypatch, tmp_path, 3, _tiny.model(), _tiny.job())
    many = _conversions(monkeypatch, tmp_path, 10, _tiny.model(), _tiny.job())
    assert many == few


def _pretrain_job(objective, n=64, length=16):
    from bertctl.pretraining.corpus import Example
    from bertctl.pretraining.masking import MaskSpec
    from bertctl.pretraining.run import Collator, _losses, batch_plan, units
    from bertctl.train import Job

    rng = np.random.default_rng(0)
    special = np.zeros(_tiny.VOCAB, dtype=bool)
    special[:5] = True
    spec = MaskSpec(mask_id=4, special=special, continuation=np.zeros(_tiny.VOCAB, dtype=bool))
    # full-length rows, as the contiguous packer makes them: no padding
    data = [Example(i, np.concatenate([[2], rng.integers(5, _tiny.VOCAB, length - 2), [3]]), length, -1)
            for i in range(n)]
    collate = Collator(objective, spec if objective.kind == "mlm" else None, 0, seed=0)
    return Job(batch_plan(n, 16, 0), data, collate, units, _losses(objective))


@pytest.mark.parametrize("kind", ["mlm", "causal"])
def test_a_pretraining_step_does_not_wait_for_the_device(monkeypatch, tmp_path, kind):
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    from bertctl.pretraining.config import ObjectiveSection
    from bertctl.pretraining.model import Pretrainer

    objective = ObjectiveSection(kind=kind, pairs="none")

    def model():
        torch.manual_seed(0)
        if kind == "causal":
            hf = GPT2LMHeadModel(GPT2Config(vocab_size=_tiny.VOCAB, n_positions=16, n_embd=32, n_layer=1, n_head=2))
        else:
            hf = BertForMaskedLM(BertConfig(vocab_size=_tiny.VOCAB, hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=16))
        return Pretrainer(hf, objective)

    s = dict(batch_size=16)
    few = _conversions(monkeypatch, tmp_path, 2, model(), _pretrain_job(objective), **s)
    many = _conversions(monkeypatch, tmp_path, 7, model(), _pretrain_job(objective), **s)
    assert many == few


def test_unpadded_pretraining_batches_run_without_a_mask():
    """Packed full-length rows: the collator says so and the encoder gets no mask (SDPA's
    flash kernel; transformers need not look into the mask). Same loss as with the mask."""
    from transformers import BertConfig, BertForMaskedLM

    from bertctl.pretraining.config import ObjectiveSection
    from bertctl.pretraining.model import Pretrainer

    objective = ObjectiveSection(kind="mlm", pairs="none")
    job = _pretrain_job(objective)
    batch = job.collate([job.dataset[i] for i in range(8)], 0)
    assert batch["padded"] is False
    ragged = job.collate([job.dataset[0], type(job.dataset[1])(1, job.dataset[1].ids[:9], 9, -1)], 0)
    assert ragged["padded"] is True

    torch.manual_seed(0)
    hf = BertForMaskedLM(BertConfig(vocab_size=_tiny.VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=16)).eval()
    assert hf.config._attn_implementation == "sdpa"  # transformers' default for BERT: PyTorch SDPA
    seen = {}
    base = hf.bert
    original = base.forward

    def forward(*a, **k):
        seen["mask"] = k.get("attention_mask")
        return original(*a, **k)

    base.forward = forward
    wrapper = Pretrainer(hf, objective).eval()
    with torch.no_grad():
        without = wrapper(batch)["mlm"]
        assert seen["mask"] is None
        with_mask = wrapper({**batch, "padded": True})["mlm"]
        assert seen["mask"] is not None
    torch.testing.assert_close(without, with_mask)


def test_models_use_sdpa_attention():
    """Fine-tuning and pretraining models load with PyTorch SDPA attention (the Hugging Face
    default where supported), so CUDA gets the flash / memory-efficient kernels."""
    from transformers import AutoModelForSequenceClassification

    from bertctl.models import load_model, resolve

    model = load_model(AutoModelForSequenceClassification, resolve("minilm"), num_labels=2)
    assert model.config._attn_implementation == "sdpa"


# ---------------------------------------------------------------- non-finite loss


def test_non_finite_loss_is_found_at_the_next_boundary_and_never_saved(tmp_path):
    """The check waits for the next log/eval/checkpoint (no sync per step) but still names
    the first bad step, and the bad weights are never written."""
    run = Run.create(tmp_path / "r", "test")
    with pytest.raises(BertctlError, match=r"loss became nan at step 6.*step-0000004"):
        fit(_tiny.model(), _tiny.job(nan_at=6), settings(log_every=100), run)
    assert [p.name for p in run.checkpoints()] == ["step-0000004"]
    assert all(r["step"] < 6 for r in run.metrics_history())


# ---------------------------------------------------------------- compile, optimizer, copies


def test_compile_flag_reaches_torch_compile_and_training_still_works(monkeypatch, tmp_path):
    """train.compile: true compiles in place (names and checkpoints unchanged). Inductor's
    C++ build is minutes on 2 shared cores, so here the real torch.compile runs with the
    "eager" backend: dynamo still traces every step of the real loop."""
    calls = []
    real = torch.compile

    def compile_(fn, *a, **k):
        calls.append(fn)
        return real(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_)
    torch._dynamo.reset()
    run = Run.create(tmp_path / "r", "test")
    res = fit(_tiny.model(), _tiny.job(), settings(epochs=1, compile=True), run)
    assert len(calls) == 1 and res.steps == 6
    from safetensors.torch import load_file

    names = set(load_file(str(run.latest_checkpoint() / "model.safetensors")))
    assert names and not any("_orig_mod" in n for n in names)


def test_pretrainer_compiles_the_encoder_only():
    from transformers import BertConfig, BertForMaskedLM

    from bertctl.pretraining.config import ObjectiveSection
    from bertctl.pretraining.model import Pretrainer

    hf = BertForMaskedLM(BertConfig(vocab_size=_tiny.VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64))
    assert Pretrainer(hf, ObjectiveSection(kind="mlm", pairs="none")).compile_targets() == [hf.bert]


def test_compile_is_a_recipe_key():
    from bertctl.pretraining.config import PretrainRecipe
    from bertctl.recipe import load

    recipe = load(PretrainRecipe, None, ["train.compile=true"], default="pretrain")[0]
    assert recipe.train.compile is True
    assert TrainSettings(max_steps=1).compile is False


def test_adamw_is_fused():
    from bertctl.train import make_optimizer

    opt = make_optimizer(_tiny.model(), settings())
    assert opt.defaults["fused"] is True  # the model is still on the CPU here; prepare moves it, fused works on CUDA


def test_batches_go_to_a_gpu_through_pinned_memory(monkeypatch):
    import bertctl.train as train_mod

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(1) or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)  # no CUDA here: the copy is a no-op
    batch = {"input_ids": torch.ones(2, 3), "padded": False}
    out = train_mod._to(batch, "cuda")
    assert len(pinned) == 1 and out["padded"] is False
    pinned.clear()
    train_mod._to(batch, "cpu")
    assert not pinned


# ---------------------------------------------------------------- benchmarks/gpu.sh


STEPS = ["pretrain_throughput", "finetune_throughput", "lora", "qlora", "accelerate_fsdp2", "accelerate_zero2"]


@pytest.mark.slow
def test_gpu_script_dry_run_on_cpu(tmp_path):
    """Without CUDA benchmarks/gpu.sh says so in one line, runs every step tiny on the CPU
    and exits 0: each step prints a RESULT line (ok, or skipped for an absent package,
    e.g. deepspeed here) and the summary table closes the run. ~1 minute on 2 cores."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh"), "--no-install", "--out", str(tmp_path / "out")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-2000:]
    assert out.count("no CUDA GPU here") == 1
    results = {}
    for line in (tmp_path / "out" / "results.txt").read_text().splitlines():
        name, *pairs = line.split()[1:]
        results[name] = dict(p.split("=", 1) for p in pairs)
    assert list(results) == STEPS
    for name, fields in results.items():
        status = fields.get("status", "ok")  # the benchmarks' own RESULT lines have figures only
        assert status == "ok" or (status == "skipped" and fields["missing"]), (name, fields)
    if results["accelerate_fsdp2"].get("status") == "ok":
        assert results["accelerate_fsdp2"]["resumed_equals_uninterrupted"] == "yes"
    assert "step" in out and "targets" in out and "dry run on CPU" in out


def test_a_missing_optional_package_is_one_line(cli, monkeypatch):
    """Clusters install bertctl with --no-deps: an absent package is one error line naming
    what to pip install, and only the command needing it fails."""
    from bertctl.cli import _missing_package

    error = _missing_package(ModuleNotFoundError("No module named 'sklearn'", name="sklearn"))
    assert "pip install scikit-learn" in error.line() and "--find-links" in error.line()
    assert _missing_package(ModuleNotFoundError("x", name="bertctl.nope")) is None
    assert _missing_package(ValueError("x")) is None

    import bertctl.recipe

    def absent(*a, **k):
        raise ModuleNotFoundError("No module named 'deepspeed'", name="deepspeed")

    monkeypatch.setattr(bertctl.recipe, "builtin_recipes", absent)
    code, out, err = cli("recipes", "list")
    assert code == 2 and "needs the Python package 'deepspeed'" in err and len(err.strip().splitlines()) == 1
