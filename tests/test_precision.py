"""precision: auto: the one decision (bertctl/precision.py), on mocked hardware, and where
the resolved choice is recorded (run.json, metrics.json, the model card)."""

from __future__ import annotations

import json

import pytest

from bertctl import precision as P
from bertctl.errors import BertctlError

AMX_CPU = P.Hardware("cpu", "Intel Xeon Sapphire Rapids", True, False, "AMX")
ZEN4_CPU = P.Hardware("cpu", "AMD EPYC Genoa", True, False, "AVX512-BF16")
PLAIN_CPU = P.Hardware("cpu", "Intel Xeon Cascade Lake", False, False, "")
A100 = P.Hardware("cuda", "NVIDIA A100", True, True, "compute capability 8.0")
T4 = P.Hardware("cuda", "Tesla T4", False, True, "")
MPS = P.Hardware("mps", "mps", False, False, "")


@pytest.mark.parametrize("hw, used", [(AMX_CPU, "bf16"), (ZEN4_CPU, "bf16"), (PLAIN_CPU, "fp32"),
                                      (A100, "bf16"), (T4, "fp16"), (MPS, "fp32")])
def test_auto_resolves_to_the_fastest_correct_format(hw, used):
    p = P.choose("auto", hw)
    assert (p.name, p.requested, p.warning) == (used, "auto", None)
    assert hw.name in p.reason and p.line().startswith(f"precision: {used} (auto: ")


@pytest.mark.parametrize("hw, asked, faster", [(PLAIN_CPU, "bf16", "fp32"), (PLAIN_CPU, "fp16", "fp32"),
                                               (T4, "bf16", "fp16"), (AMX_CPU, "fp16", "bf16")])
def test_an_explicit_emulated_choice_keeps_its_meaning_with_one_warning(hw, asked, faster):
    p = P.choose(asked, hw)
    assert p.name == asked and p.requested == asked
    assert p.warning and f"precision {asked} is emulated" in p.warning and f"(or {faster})" in p.warning


@pytest.mark.parametrize("hw, asked", [(AMX_CPU, "bf16"), (PLAIN_CPU, "fp32"), (AMX_CPU, "fp32"), (A100, "fp16"),
                                       (T4, "fp16"), (T4, "fp32")])
def test_an_explicit_native_choice_is_silent(hw, asked):
    p = P.choose(asked, hw)
    assert (p.name, p.warning) == (asked, None)


def test_an_unknown_precision_is_one_error():
    with pytest.raises(BertctlError, match="precision 'half' is not one of auto, bf16, fp32, fp16"):
        P.choose("half", PLAIN_CPU)


def test_none_means_auto():
    assert P.resolve(None, "cpu").requested == "auto"


@pytest.mark.parametrize("amx, avx, used, why", [(True, False, "bf16", "AMX"), (False, True, "bf16", "AVX512-BF16"),
                                                 (False, False, "fp32", "no AMX or AVX512-BF16")])
def test_detect_reads_what_the_cpu_reports(monkeypatch, amx, avx, used, why):
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx, raising=False)
    p = P.resolve("auto", "cpu")
    assert p.name == used and why in p.reason


@pytest.mark.parametrize("flags, used", [({"avx512f", "amx_bf16", "amx_tile"}, "bf16"),
                                         ({"avx512f", "avx512_bf16"}, "bf16"), ({"avx512f", "avx2"}, "fp32")])
def test_without_torchs_helpers_the_cpu_flags_decide(monkeypatch, flags, used):
    import torch

    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.setattr(P, "_cpu_flags", lambda: set(flags))
    assert P.resolve("auto", "cpu").name == used


@pytest.mark.parametrize("capability, used", [((9, 0), "bf16"), ((8, 6), "bf16"), ((7, 5), "fp16"), ((7, 0), "fp16")])
def test_detect_reads_the_gpus_compute_capability(monkeypatch, capability, used):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Some GPU")
    p = P.resolve("auto", "cuda:0")
    assert p.name == used and "Some GPU" in p.reason


def test_announce_says_each_choice_once(monkeypatch):
    monkeypatch.setattr(P, "_ANNOUNCED", set())
    said = []
    for _ in range(3):
        P.announce(P.choose("bf16", PLAIN_CPU), said.append)
    assert len(said) == 2 and said[1].startswith("warning: precision bf16 is emulated")


def _finetune(cli, tiny, out, *extra):
    code, stdout, stderr = cli("finetune", "--task", "cls", f"model.name_or_path={tiny}", "model.max_length=32",
                               "data.world.train=32", "data.world.dev=16", "train.epochs=1", "train.batch_size=8",
                               *extra, "--out", out)
    assert code == 0, stdout + stderr
    return stdout, stderr


def test_auto_is_recorded_in_run_json_metrics_and_the_model_card(cli, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "detect", lambda device=None: PLAIN_CPU)
    monkeypatch.setattr(P, "_ANNOUNCED", set())
    _, stderr = _finetune(cli, tiny, tmp_path / "run")
    run = tmp_path / "run"
    record = json.loads((run / "run.json").read_text())["precision"]
    assert record == {"used": "fp32", "requested": "auto", "reason": P.choose("auto", PLAIN_CPU).reason}
    assert json.loads((run / "metrics.json").read_text())["precision"] == record
    assert "precision: fp32 (asked: auto;" in (run / "model" / "README.md").read_text()
    assert stderr.count("precision: fp32 (auto: CPU Intel Xeon Cascade Lake has no native bf16") == 1
    assert "precision: fp32" in (run / "log.txt").read_text()


def test_an_explicit_bf16_on_an_emulating_cpu_warns_and_trains_in_bf16(cli, tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "detect", lambda device=None: PLAIN_CPU)
    monkeypatch.setattr(P, "_ANNOUNCED", set())
    _, stderr = _finetune(cli, tiny, tmp_path / "run", "train.precision=bf16")
    assert "warning: precision bf16 is emulated on CPU Intel Xeon Cascade Lake and slower than fp32" in stderr
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "mixed precision bf16" in log and "warning: precision bf16 is emulated" in log
    assert json.loads((tmp_path / "run" / "run.json").read_text())["precision"]["used"] == "bf16"


def test_predict_and_eval_only_resolve_on_the_hardware_they_run_on(cli, tiny, tmp_path, monkeypatch):
    """A run trained where bf16 is native, predicted where it is not: auto becomes fp32 there."""
    from bertctl.predict import Predictor

    monkeypatch.setattr(P, "detect", lambda device=None: AMX_CPU)
    _finetune(cli, tiny, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["precision"]["used"] == "bf16"
    monkeypatch.setattr(P, "detect", lambda device=None: PLAIN_CPU)
    assert Predictor.load(tmp_path / "run").precision.name == "fp32"
    assert Predictor.load(tmp_path / "run", precision="bf16").precision.warning
    code, stdout, stderr = cli("finetune", "--eval-only", tmp_path / "run", "--out", tmp_path / "eval")
    assert code == 0, stdout + stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["precision"]["used"] == "fp32"


def test_a_device_index_is_read_as_such(monkeypatch):
    import torch

    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: asked.append(index) or (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: f"GPU {index}")
    assert P.resolve("auto", "cuda:1").reason.startswith("cuda GPU 1") and asked == [1]


def test_weights_cast_in_the_format_never_get_fp16_from_auto():
    assert P.choose("auto", T4, cast_weights=True).name == "fp32"
    assert P.choose("auto", A100, cast_weights=True).name == "bf16"
    assert P.choose("fp16", T4, cast_weights=True).name == "fp16"  # asked for: kept
