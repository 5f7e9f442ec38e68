"""`bertctl finetune` end to end on a tiny BERT and World data: run folders, every task
kind, pipelines loading the saved model, compare-init, eval-only, resume, the CLI."""

from __future__ import annotations

import json

import pytest

from bertctl.errors import BertctlError
from bertctl.precision import resolve
from bertctl.runs import Run

from .helpers import recipe

pytestmark = pytest.mark.slow


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory, tiny):
    """One trained sentiment run shared by the tests that only read it."""
    from bertctl.finetune.run import finetune

    path = tmp_path_factory.mktemp("cls") / "run"
    r = recipe(tiny, "sentiment", data={"world": {"train": 96, "dev": 40, "test": 8}}, train={"epochs": 2})
    dev = finetune(r, Run.create(path, "finetune"), quiet=True)
    return path, dev


def test_run_folder_holds_model_metrics_predictions_and_curve(cls_run):
    path, dev = cls_run
    summary = json.loads((path / "metrics.json").read_text())
    assert summary["dev"] == dev and set(dev) == {"accuracy", "f1_binary", "mcc"}
    assert summary["labels"] == ["negative", "positive"] and summary["n_train"] == 96
    assert [e["epoch"] for e in summary["epochs"]] == [1.0, 2.0]
    assert all("train_loss" in e and "accuracy" in e for e in summary["epochs"])
    preds = _lines(path / "predictions_dev.jsonl")
    assert len(preds) == 40 and {"text", "gold", "prediction"} <= set(preds[0])
    accuracy = sum(p["gold"] == p["prediction"] for p in preds) / len(preds)
    assert accuracy == pytest.approx(dev["accuracy"])  # the file is what was scored
    assert len(_lines(path / "predictions_test.jsonl")) == 8 and "test" in summary
    assert (path / "curve.png").stat().st_size > 10_000
    assert (path / "model" / "model.safetensors").exists() and not list((path / "model").glob("*.bin"))
    assert "command: finetune" in (path / "recipe.yaml").read_text()


def test_saved_model_loads_in_a_transformers_pipeline(cls_run):
    from transformers import pipeline

    path, _ = cls_run
    clf = pipeline("text-classification", model=str(path / "model"))
    assert clf.model.config.id2label == {0: "negative", 1: "positive"}
    out = clf(["Ruth liked the lemon .", "the laptop was noisy ."])
    assert {o["label"] for o in out} <= {"negative", "positive"}
    # the pipeline agrees with bertctl's own predictions
    preds = _lines(path / "predictions_dev.jsonl")[:8]
    assert [o["label"] for o in clf([p["text"] for p in preds])] == [p["prediction"] for p in preds]


def test_eval_only_on_the_other_world_language(cls_run):
    from bertctl.finetune.evaluate import evaluate_run

    path, dev = cls_run
    same = evaluate_run(path, [], out=path.parent / "again", quiet=True)
    assert same["accuracy"] == pytest.approx(dev["accuracy"])  # reloaded model, same dev set, same result
    xx = evaluate_run(path, ["data.world.language=xx"], out=path.parent / "xx", quiet=True)
    assert set(xx) == {"accuracy", "f1_binary", "mcc"}
    first = _lines(path.parent / "xx" / "predictions_dev.jsonl")[0]["text"]
    assert first not in {p["text"] for p in _lines(path / "predictions_dev.jsonl")}  # really other text


def test_eval_only_on_a_file_with_an_unknown_label(cls_run, tmp_path):
    from bertctl.finetune.evaluate import evaluate_run

    path, _ = cls_run
    bad = tmp_path / "other.jsonl"
    bad.write_text('{"text": "fine", "label": "positive"}\n{"text": "so so", "label": "mixed"}\n')
    with pytest.raises(BertctlError, match="'mixed'"):
        evaluate_run(path, [f"data.dev={bad}"], out=tmp_path / "e", quiet=True)
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "Ruth liked the lemon .", "label": "positive"}\n')
    assert set(evaluate_run(path, [f"data.dev={good}"], out=tmp_path / "g", quiet=True)) == {"accuracy", "f1_binary", "mcc"}


def test_eval_only_on_files_named_like_the_keys_of_its_metrics(cls_run, tmp_path, cli):
    """Results are filed under the evaluated file's name: a file called data, model, split,
    rows or test (beside a data.test) must not overwrite the summary's own keys (data.tsv
    lost its scores and printed file names as metrics; model.tsv and split.tsv ended in a
    traceback, rows.tsv read as a multi-file evaluation)."""
    from bertctl.runs import read_metrics

    path, _ = cls_run
    rows = '{"text": "Ruth liked the lemon .", "label": "positive"}\n{"text": "the laptop was noisy .", "label": "negative"}\n'
    (tmp_path / "other.jsonl").write_text(rows)
    code, out, err = cli("finetune", "--eval-only", str(path), f"data.dev={tmp_path / 'other.jsonl'}", "--out", str(tmp_path / "ref"))
    assert code == 0, err
    want = read_metrics(tmp_path / "ref")
    assert want["main_metric"] == "accuracy" and set(want["scores"]["other"]) == {"accuracy", "f1_binary", "mcc"}
    for name in ("data", "model", "split", "rows", "test"):
        (tmp_path / f"{name}.jsonl").write_text(rows)
        extra = [f"data.test={tmp_path / 'other.jsonl'}"] if name == "test" else []
        code, out, err = cli("finetune", "--eval-only", str(path), f"data.dev={tmp_path / f'{name}.jsonl'}", *extra,
                             "--out", str(tmp_path / f"e-{name}"))
        assert code == 0 and "Traceback" not in err, (name, err[-2000:])
        got = read_metrics(tmp_path / f"e-{name}")
        assert list(got["scores"].values())[0] == want["scores"]["other"], (name, got["scores"])
        assert got["main_value"] == want["main_value"], name
        assert "accuracy" in out and str(path) in out  # the results table and the model line
        summary = json.loads((tmp_path / f"e-{name}" / "metrics.json").read_text())
        assert summary[summary["split"]] == want["scores"]["other"]  # old readers: metrics[split]
    assert "test.jsonl" in read_metrics(tmp_path / "e-test")["scores"]  # beside data.test's "test"
    code, out, err = cli("finetune", "--eval-only", str(path), f"data.dev={tmp_path / 'test.jsonl'}", "--out", str(tmp_path / "t"))
    assert code == 0 and list(read_metrics(tmp_path / "t")["scores"]) == ["test"], err  # alone: named as ever


def test_tagging_learns_and_loads_in_a_token_classification_pipeline(tmp_path, tiny):
    from transformers import pipeline

    from bertctl.finetune.run import finetune

    r = recipe(tiny, "pos", data={"world": {"train": 256, "dev": 64}}, train={"epochs": 3, "lr": 2e-3})
    dev = finetune(r, Run.create(tmp_path / "pos", "finetune"), quiet=True)
    assert dev["accuracy"] > 0.8  # chance (most frequent tag) is ~0.25
    tagger = pipeline("token-classification", model=str(tmp_path / "pos" / "model"))
    words = tagger("Sara went to the river .")
    assert {w["entity"] for w in words} <= set(json.loads((tmp_path / "pos" / "labels.json").read_text()))


@pytest.mark.parametrize("task,metric", [("nli", "accuracy"), ("regression", "pearson"), ("qa", "f1"),
                                         ("dna", "accuracy"), ("ner", "f1")])
def test_each_task_kind_runs_end_to_end(tmp_path, tiny, task, metric):
    from bertctl.finetune.run import finetune

    extra = {"qa": {"doc_stride": 16}} if task == "qa" else {}
    r = recipe(tiny, task, **extra)
    dev = finetune(r, Run.create(tmp_path / task, "finetune"), quiet=True)
    assert metric in dev
    summary = json.loads((tmp_path / task / "metrics.json").read_text())
    assert summary["main_metric"] in dev and summary["n_dev"] == 32
    assert len(_lines(tmp_path / task / "predictions_dev.jsonl")) == 32


def test_regression_model_gives_raw_scores_in_a_pipeline(tmp_path, tiny):
    from transformers import pipeline

    from bertctl.finetune.run import finetune

    finetune(recipe(tiny, "regression"), Run.create(tmp_path / "r", "finetune"), quiet=True)
    pipe = pipeline("text-classification", model=str(tmp_path / "r" / "model"), function_to_apply="none")
    first = _lines(tmp_path / "r" / "predictions_dev.jsonl")[0]
    score = pipe({"text": first["text"], "text_pair": first["text_pair"]})
    score = score[0] if isinstance(score, list) else score
    assert score["score"] == pytest.approx(first["prediction"], abs=0.05)


def test_qa_model_reloads_with_auto_class_and_gives_the_same_answers(tmp_path, tiny):
    """transformers 5 has no question-answering pipeline (removed upstream), so the saved
    folder is checked with AutoModelForQuestionAnswering and bertctl's own decoding."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from bertctl.finetune.data import load_splits
    from bertctl.finetune.qa_task import QaTask
    from bertctl.finetune.run import finetune, inference

    r = recipe(tiny, "qa", qa={"doc_stride": 16})
    finetune(r, Run.create(tmp_path / "qa", "finetune"), quiet=True)
    model = AutoModelForQuestionAnswering.from_pretrained(str(tmp_path / "qa" / "model"))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "qa" / "model"))
    task = QaTask(r, None)
    task.setup(tok)
    dev = load_splits(r.data, "qa").dev
    task.observe(dev)
    with inference(model, resolve(r.train.precision)):
        answers = task.predict(model, dev, task.encode(tok, dev, train=False))
    assert [a["text"] for a in answers] == [p["prediction"] for p in _lines(tmp_path / "qa" / "predictions_dev.jsonl")]


def test_compare_init_writes_both_runs_the_plot_and_the_table(tmp_path, tiny):
    from bertctl.finetune.compare import comparison_rows
    from bertctl.finetune.run import finetune

    r = recipe(tiny, "dna", compare_init=True, train={"epochs": 2})
    dev = finetune(r, Run.create(tmp_path / "cmp", "finetune"), quiet=True)
    summary = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    assert summary["compare_init"]["pretrained"] == dev
    assert json.loads((tmp_path / "cmp" / "random-init" / "metrics.json").read_text())["init"] == "random"
    assert len(summary["compare_init"]["epochs"]["random"]) == 2
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 10_000
    rows = comparison_rows(summary)
    assert [row["metric"] for row in rows] == ["accuracy", "f1_binary", "mcc"]
    assert rows[0]["difference"] == pytest.approx(rows[0]["pretrained"] - rows[0]["random init"])


def test_random_init_really_discards_the_pretrained_weights(tmp_path, tiny):
    import torch
    from safetensors.torch import load_file

    from bertctl.finetune.run import finetune

    r = recipe(tiny, "cls", model={"init": "random"}, train={"lr": 1e-9, "max_steps": 1, "epochs": None})
    finetune(r, Run.create(tmp_path / "rnd", "finetune"), quiet=True)
    before = load_file(str(tiny / "model.safetensors"))
    after = load_file(str(tmp_path / "rnd" / "model" / "model.safetensors"))
    key = next(k for k in before if k.endswith("word_embeddings.weight"))
    assert not torch.allclose(before[key], after["bert." + key if "bert." + key in after else key])


def test_resume_continues_an_interrupted_run(tmp_path, tiny, monkeypatch):
    from bertctl.finetune import cls as cls_module
    from bertctl.finetune.run import finetune

    r = recipe(tiny, "cls", train={"epochs": 2})
    ref = finetune(r, Run.create(tmp_path / "ref", "finetune"), quiet=True)

    calls = {"n": 0}
    real = cls_module.ClsTask.losses

    def crash(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 9:  # second epoch, after the epoch-1 checkpoint
            raise KeyboardInterrupt
        return real(self, model, batch)

    monkeypatch.setattr(cls_module.ClsTask, "losses", crash)
    with pytest.raises(KeyboardInterrupt):
        finetune(r, Run.create(tmp_path / "b", "finetune"), quiet=True)
    monkeypatch.setattr(cls_module.ClsTask, "losses", real)
    resumed = finetune(r, Run.create(tmp_path / "b", "finetune", resume=True), resume=True, quiet=True)
    assert resumed == pytest.approx(ref)


def test_cli_bare_task_runs_offline_and_says_which_model(cli, tmp_path, tiny, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("finetune", "--task", "nli", "--out", tmp_path / "cli", f"model.name_or_path={tiny}",
                         "data.world.train=48", "data.world.dev=16", "train.epochs=1", "train.precision=fp32")
    assert code == 0, err
    assert f"model: {tiny}" in err and "nli: dev" in out and "accuracy" in out  # progress on stderr
    assert (tmp_path / "cli" / "model" / "config.json").exists()
    code, out, err = cli("finetune", "--eval-only", tmp_path / "cli", "data.world.language=xx",
                         "--out", tmp_path / "xx")
    assert code == 0, err
    assert "eval-only" in err and (tmp_path / "xx" / "metrics.json").exists()


def test_cli_errors_are_one_line(cli, tmp_path):
    code, _, err = cli("finetune", "--task", "summarize")
    assert code == 2 and "unknown task 'summarize'" in err and "Traceback" not in err
    code, _, err = cli("finetune", "--eval-only", tmp_path, "finetune_cls")
    assert code == 2 and "--eval-only takes data.* overrides" in err
    code, _, err = cli("finetune", "--eval-only", tmp_path)
    assert code == 2 and "has no model/" in err
    code, _, err = cli("finetune", "--task", "cls", "data.train=" + str(tmp_path / "missing.tsv"),
                       "data.dev=" + str(tmp_path / "missing.tsv"), "--out", tmp_path / "x")
    assert code == 2 and "no such file" in err
