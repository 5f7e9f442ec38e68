"""`bertctl eval-glue` end to end through the real `bertctl finetune`, on the tiny GLUE
fixture of tests/test_glue.py and a tiny BERT built from a config (2 layers, hidden 32,
a vocabulary of the fixture's ~60 words): all nine tasks, the table, the files, the
submission, resume, and LoRA. The numbers themselves are meaningless (30 rows); what is
checked is that every figure in the results is the one the fine-tuning runs produced.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from .helpers import BAD, GOOD, NAMES, NOUNS, VERBS, make_glue

pytestmark = pytest.mark.slow

FAST = ["train.epochs=2", "train.batch_size=8", "train.lr=1e-3", "train.precision=fp32", "train.log_every=100"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w.lower() for w in GOOD + BAD + NOUNS + VERBS + NAMES} | {"the", ".", "!", '"', "he", "said", "today"})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _accuracy(path: Path) -> float:
    rows = _jsonl(path)
    return sum(r["gold"] == r["prediction"] for r in rows) / len(rows)


def test_whole_suite_on_the_fixture(cli, tmp_path, tiny_model):
    glue = make_glue(tmp_path / "glue", n=24)
    out = tmp_path / "suite"
    code, stdout, err = cli("eval-glue", "--model", tiny_model, "--glue-dir", glue, "--out", out, *FAST)
    assert code == 0, err
    assert "GLUE score (all 9)" in stdout and "87.1" in stdout and "78.9" in stdout
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"]
    assert results["complete"] and results["skipped"] == {}

    # every reported figure is the one the fine-tuning run measured
    sst2 = results["results"]["SST-2"]["metrics"]["accuracy"]
    assert sst2 == pytest.approx(100 * _accuracy(out / "SST-2" / "seed0" / "predictions_dev.jsonl"))
    mnli = results["results"]["MNLI"]["metrics"]
    assert mnli["m_accuracy"] == pytest.approx(100 * _accuracy(out / "MNLI" / "seed0" / "predictions_dev.jsonl"))
    assert mnli["mm_accuracy"] == pytest.approx(100 * _accuracy(out / "MNLI" / "seed0" / "evals" / "mm" / "predictions_dev.jsonl"))
    stsb = json.loads((out / "STS-B" / "seed0" / "metrics.json").read_text())["dev"]
    assert results["results"]["STS-B"]["metrics"]["pearson"] == pytest.approx(100 * stsb["pearson"])
    scores = [r["score"] for r in results["results"].values()]
    assert results["glue_score"] == pytest.approx(sum(scores) / 9)

    # the submission holds the fine-tuned model's test predictions, in leaderboard form
    with zipfile.ZipFile(out / "submission.zip") as z:
        assert len(z.namelist()) == 11
        rte = [line.split("\t") for line in z.read("RTE.tsv").decode().splitlines()]
    preds = _jsonl(out / "RTE" / "seed0" / "predictions_test.jsonl")
    assert rte[0] == ["index", "prediction"] and [p for _, p in rte[1:]] == [r["prediction"] for r in preds]
    assert {p for _, p in rte[1:]} <= {"entailment", "not_entailment"}
    ax = (out / "submission" / "AX.tsv").read_text().splitlines()
    assert len(ax) == 1 + 6 and all(line.split("\t")[1] in {"entailment", "neutral", "contradiction"} for line in ax[1:])
    for name in ("results.csv", "results.md", "glue.png"):
        assert (out / name).stat().st_size > 0


def test_resume_after_an_interruption(cli, tmp_path, tiny_model):
    glue = make_glue(tmp_path / "glue", n=16, tasks=["CoLA", "RTE", "MNLI"])
    out = tmp_path / "suite"
    args = ("eval-glue", "--model", tiny_model, "--glue-dir", glue, "--out", out, "keep_checkpoints=true", *FAST)
    code, _, err = cli(*args)
    assert code == 0, err
    before = json.loads((out / "results.json").read_text())["results"]
    cola_done = (out / "CoLA" / "seed0" / "glue.json").stat().st_mtime_ns
    # RTE "killed" mid-training: only its checkpoints survive
    rte = out / "RTE" / "seed0"
    for name in ("glue.json", "metrics.json", "predictions_dev.jsonl"):
        (rte / name).unlink()
    # MNLI killed after training, during the mismatched evaluation
    (out / "MNLI" / "seed0" / "glue.json").unlink()
    mnli_trained = (out / "MNLI" / "seed0" / "metrics.json").stat().st_mtime_ns

    code, stdout, err = cli("eval-glue", "--out", out, "--resume")  # the saved recipe is reused
    assert code == 0, err
    assert (out / "CoLA" / "seed0" / "glue.json").stat().st_mtime_ns == cola_done  # skipped
    assert "resumed from step-" in (rte / "log.txt").read_text()
    assert (out / "MNLI" / "seed0" / "metrics.json").stat().st_mtime_ns == mnli_trained  # not trained again
    after = json.loads((out / "results.json").read_text())["results"]
    for name in ("CoLA", "RTE", "MNLI"):
        assert after[name]["metrics"] == pytest.approx(before[name]["metrics"]), name

    code, _, err = cli(*args)  # the same folder without --resume is refused, nothing lost
    assert code == 2 and "--resume" in err


def test_lora_and_seeds_on_a_bertctl_run_folder(cli, tmp_path, tiny_model):
    import shutil

    pretrain_run = tmp_path / "runs" / "pretrain-x"  # what `bertctl pretrain` leaves: the model in model/
    shutil.copytree(tiny_model, pretrain_run / "model")
    glue = make_glue(tmp_path / "glue", n=16, tasks=["MNLI", "STS-B"])
    out = tmp_path / "suite"
    code, stdout, err = cli("eval-glue", "--model", pretrain_run, "--glue-dir", glue, "--out", out, "--seeds", "2",
                            "method=lora", "lora.target_modules=[query,value]", *FAST)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "lora" and results["results"]["MNLI"]["n_seeds"] == 2
    assert (out / "MNLI" / "seed1" / "model" / "adapter_config.json").exists()
    assert not (out / "MNLI" / "seed1" / "checkpoints").exists()  # a finished task keeps model/, not checkpoints
    assert "±" in stdout and "GLUE score (2 tasks)" in stdout


def test_qlora_suite_on_the_fixture(cli, tmp_path, tiny_model):
    """eval-glue with a 4-bit base + LoRA (bitsandbytes on CPU), evaluating after training."""
    glue = make_glue(tmp_path / "glue", n=16, tasks=["SST-2"])
    out = tmp_path / "suite"
    code, stdout, err = cli("eval-glue", "--model", tiny_model, "--glue-dir", glue, "--out", out,
                            "method=qlora", "lora.target_modules=[query,value]", *FAST)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "qlora" and "SST-2" in results["results"]
    assert (out / "SST-2" / "seed0" / "model" / "adapter_config.json").exists()
