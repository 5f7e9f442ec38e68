"""`bertctl eval-glue`: task table, GLUE-format reading (every file quirk), official
scoring, submission files, missing tasks, no data, seeds and resume.

`make_glue(root)` writes a tiny GLUE folder for all nine tasks in the exact layout of
the GLUE download script, quirks included: CoLA train/dev without a header, MRPC with
a byte-order mark and bare quotes inside its strings, STS-B float scores, QQP with a
malformed line, MNLI with two dev and two test sets, and the diagnostic (AX) set.
The suite tests here swap the fine-tuning step for a fast fake (the real one runs in
tests/test_glue_e2e.py), so they check the GLUE logic in milliseconds.
"""

from __future__ import annotations

import json
import zipfile

import pytest

from bertctl.errors import BertctlError
from bertctl.glue import score, submission
from bertctl.glue.config import GlueRecipe
from bertctl.glue.data import LocalGlue, load_task, locate, subsample
from bertctl.glue.tasks import BERT_BASE, HUMAN, TASKS, task_names

from .helpers import make_glue

# ----------------------------------------------------------------- the fixture


# ------------------------------------------------------------------ task table


def test_task_table_is_complete_and_consistent():
    assert list(TASKS) == ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"]
    files = [t.submission for task in TASKS.values() for t in task.tests]
    assert sorted(files) == sorted(["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv",
                                    "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"])
    for task in TASKS.values():
        assert set(HUMAN[task.name]) == set(BERT_BASE[task.name]) == set(task.metric_keys())
        assert {m.split for m in task.metrics} <= {e.name for e in task.evals}
    assert TASKS["STS-B"].kind == "regression" and TASKS["CoLA"].kind == "cls" and TASKS["RTE"].kind == "nli"
    assert task_names(["sst2", "mnli-mm", "STS-B"]) == ["SST-2", "STS-B", "MNLI"]
    with pytest.raises(BertctlError, match="unknown GLUE task"):
        task_names(["squad"])


def test_recipe_validation():
    r = GlueRecipe.model_validate({"tasks": "cola,RTE", "per_task": {"rte": {"train": {"epochs": 3}}}})
    assert r.tasks == ["cola", "RTE"] and r.per_task == {"RTE": {"train": {"epochs": 3}}}
    assert r.train.epochs == 5 and r.train.batch_size == 16 and r.model.name_or_path == "minilm"
    for bad in ({"tasks": ["nope"]}, {"per_task": {"nope": {}}}, {"per_task": {"RTE": {"data": {}}}}, {"seeds": 0}):
        with pytest.raises(Exception):
            GlueRecipe.model_validate(bad)


# ------------------------------------------------------------------------ scoring


def test_human_baseline_scores_87_1_by_the_official_rules():
    per_task = score.reference_scores(HUMAN)
    assert per_task["MRPC"] == pytest.approx((86.3 + 80.8) / 2)
    assert per_task["MNLI"] == pytest.approx((92.0 + 92.8) / 2)
    total = score.glue_score(per_task)
    assert total == pytest.approx(87.05) and score.round_half_up(total) == 87.1
    assert score.round_half_up(score.glue_score(score.reference_scores(BERT_BASE))) == 78.9  # 78.85 rounds up
    # a subset is scored over the same tasks only
    assert score.glue_score(score.reference_scores(HUMAN, ["CoLA", "RTE"])) == pytest.approx((66.4 + 93.6) / 2)


def test_seeds_give_mean_and_sample_std():
    agg = score.aggregate(TASKS["MRPC"], [{"f1_binary": 80.0, "accuracy": 70.0}, {"f1_binary": 90.0, "accuracy": 80.0}])
    assert agg["score"] == pytest.approx(80.0) and agg["metrics"]["f1_binary"] == pytest.approx(85.0)
    assert agg["score_std"] == pytest.approx(7.0710678) and agg["n_seeds"] == 2
    rows, summary = score.result_rows({"MRPC": agg})
    assert rows[0]["score"] == "80.0 ± 7.1" and rows[0]["model"] == "85.0/75.0 ± 7.1/7.1"
    assert summary["reference_same_tasks"]["Human baseline"] == pytest.approx(83.55)
    assert [r["task"] for r in rows] == ["MRPC", "GLUE score (1 tasks)", "GLUE score (all 9)"]


def test_full_table_shows_human_row_score_87_1():
    results = {n: score.aggregate(TASKS[n], [HUMAN[n]]) for n in TASKS}
    rows, summary = score.result_rows(results)
    assert summary["complete"] and score.round_half_up(summary["glue_score"]) == 87.1
    last = rows[-1]
    assert last["score"] == "87.1" and last["human"] == "87.1" and last["bert_base"] == "78.9"
    md = score.markdown(rows, "t")
    assert "| MNLI | m/mm | 92.0/92.8 | 92.4 |" in md
    assert "QQP,f1_binary,59.5000" in score.csv_text(results)


# ------------------------------------------------------------------------ reading


def test_every_file_quirk_is_read(tmp_path):
    root = make_glue(tmp_path / "glue", n=30)
    src = locate(str(root))
    assert isinstance(src, LocalGlue)
    cola = load_task(src, TASKS["CoLA"])
    assert len(cola.train) == 30 and len(cola.evals["dev"]) == 15  # no header: first row is data
    assert {r["label"] for r in cola.train} == {"0", "1"} and "sentence2" not in cola.train[0]
    mrpc = load_task(src, TASKS["MRPC"])
    assert mrpc.train[0]["sentence1"].startswith('He said " ') and mrpc.train[0]["sentence2"].startswith('" ')
    assert mrpc.train[0]["label"] == "1"  # the byte-order mark did not hide the Quality column
    stsb = load_task(src, TASKS["STS-B"])
    assert all(isinstance(r["label"], float) and 0 <= r["label"] <= 5 for r in stsb.train)
    assert any(r["label"] == 5.0 for r in stsb.train)
    mnli = load_task(src, TASKS["MNLI"])
    assert set(mnli.evals) == {"m", "mm"} and set(mnli.tests) == {"MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"}
    assert {r["label"] for r in mnli.train} == {"entailment", "neutral", "contradiction"}
    qqp = load_task(src, TASKS["QQP"])
    assert len(qqp.train) == 30 and any("dropped 1" in n for n in qqp.notes)
    assert qqp.tests["QQP.tsv"][3]["idx"] == "3"  # QQP's test ids are in its `id` column
    capped = load_task(src, TASKS["SST-2"], max_train=10)
    assert len(capped.train) == 10 and any("capped" in n for n in capped.notes)


def test_subsample_is_seeded_and_keeps_file_order():
    rows = list(range(100))
    a, b = subsample(rows, 10), subsample(rows, 10)
    assert a == b == sorted(a) and len(set(a)) == 10 and a != rows[:10]


def test_bad_label_names_the_file(tmp_path):
    root = make_glue(tmp_path / "glue", tasks=["RTE"])
    path = root / "RTE" / "dev.tsv"
    path.write_text(path.read_text().replace("not_entailment", "maybe", 1))
    with pytest.raises(BertctlError, match=r"RTE/dev.tsv: row \d+: label 'maybe'"):
        load_task(locate(str(root)), TASKS["RTE"])


def test_real_glue_files_read(shared_data):
    src = locate(str(shared_data / "glue"))
    sizes = {}
    for name in ("CoLA", "SST-2", "MRPC", "STS-B", "RTE", "WNLI"):
        d = load_task(src, TASKS[name])
        sizes[name] = (len(d.train), len(d.evals["dev"]), len(next(iter(d.tests.values()))))
    assert sizes["CoLA"] == (8551, 1043, 1063)
    assert sizes["MRPC"] == (3667, 408, 1725)  # the file holds 3,667 pairs plus its header
    assert sizes["RTE"] == (2490, 277, 3000)
    assert sizes["STS-B"][1] == 1500 and sizes["WNLI"] == (635, 71, 146)
    assert [t for t in TASKS if src.missing(TASKS[t])] == ["QQP", "MNLI", "QNLI"]


# ---------------------------------------------------------------- the suite (fake)


class FakeFinetune:
    """Stands in for `bertctl finetune`: writes a run folder, 'predicts' the gold label on
    dev (shifted by the seed) and a fixed label on test, and can fail on a chosen task."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[tuple[str, int, bool]] = []
        self.fail_on = fail_on

    def __call__(self, task, data, files, recipe, seed, folder, resume):
        self.calls.append((task.name, seed, resume))
        folder.mkdir(parents=True, exist_ok=True)
        ckpt = folder / "checkpoints" / "step-0000001"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "state.json").write_text("{}")
        if task.name == self.fail_on:
            raise BertctlError("interrupted", fix="resume")
        metrics = {m.key: 0.5 + 0.1 * (seed % 3) for m in task.metrics}
        preds = {}
        for name, rows in data.tests.items():
            preds[name] = [7.5 - 2 * i for i in range(len(rows))] if task.regression else [task.labels[-1]] * len(rows)
        return {"metrics": metrics, "predictions": preds}


def _suite(tmp_path, glue, fake, resume=False, **kw):
    from bertctl.glue.suite import run_suite
    from bertctl.runs import Run

    recipe = GlueRecipe.model_validate({"glue_dir": str(glue), **kw})
    run = Run.create(tmp_path / "out", "eval-glue", resume=resume)
    return run_suite(recipe, run, resume=resume, say=lambda m: None, finetune_fn=fake)


def test_suite_writes_table_files_and_submission(tmp_path):
    glue = make_glue(tmp_path / "glue", n=12)
    fake = FakeFinetune()
    result = _suite(tmp_path, glue, fake)
    out = tmp_path / "out"
    assert [c[0] for c in fake.calls] == list(TASKS)
    assert result.summary["complete"] and result.summary["glue_score"] == pytest.approx(50.0)
    for name in ("results.json", "results.csv", "results.md", "glue.png", "metrics.json", "submission.zip"):
        assert (out / name).exists(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["reference_all_tasks"]["Human baseline"] == pytest.approx(87.05) and saved["sane"] is True
    with zipfile.ZipFile(out / "submission.zip") as z:
        names = sorted(z.namelist())
        assert names == sorted(["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv",
                                "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"])
        assert z.read("RTE.tsv").decode().splitlines()[:2] == ["index\tprediction", "0\tnot_entailment"]
        assert z.read("MNLI-mm.tsv").decode().splitlines()[1] == "0\tcontradiction"
        assert z.read("CoLA.tsv").decode().splitlines()[1] == "0\t1"
        stsb = [line.split("\t") for line in z.read("STS-B.tsv").decode().splitlines()[1:]]
        assert stsb == [["0", "5.000"], ["1", "5.000"], ["2", "3.500"], ["3", "1.500"], ["4", "0.000"], ["5", "0.000"]]
    ids = [line.split("\t")[0] for line in (out / "submission" / "QQP.tsv").read_text().splitlines()[1:]]
    assert ids == [str(i) for i in range(len(ids))] and len(ids) == 6


def test_leaderboard_labels():
    assert submission.leaderboard_label(TASKS["STS-B"], 5.7) == "5.000"
    assert submission.leaderboard_label(TASKS["STS-B"], -0.2) == "0.000"
    assert submission.leaderboard_label(TASKS["QNLI"], "not_entailment") == "not_entailment"
    with pytest.raises(BertctlError):
        submission.leaderboard_label(TASKS["SST-2"], "positive")


def test_missing_tasks_are_listed_and_skipped(tmp_path):
    glue = make_glue(tmp_path / "glue", n=12, tasks=["CoLA", "RTE"], tests=False)
    fake = FakeFinetune()
    result = _suite(tmp_path, glue, fake)
    assert [c[0] for c in fake.calls] == ["CoLA", "RTE"]
    assert set(result.skipped) == {"SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "WNLI"}
    assert "no QQP/ folder" in result.skipped["QQP"]
    assert not result.summary["complete"] and result.rows[2]["task"] == "GLUE score (2 tasks)"
    assert result.rows[2]["human"] == "80.0"  # (66.4 + 93.6) / 2: the references over the same tasks
    assert not (tmp_path / "out" / "submission.zip").exists()


def test_selected_task_that_is_absent_is_an_error(tmp_path):
    glue = make_glue(tmp_path / "glue", n=12, tasks=["CoLA"])
    with pytest.raises(BertctlError, match="none of the selected GLUE tasks"):
        _suite(tmp_path, glue, FakeFinetune(), tasks=["RTE"])


def test_resume_skips_finished_tasks_and_resumes_the_interrupted_one(tmp_path):
    glue = make_glue(tmp_path / "glue", n=12, tasks=["CoLA", "SST-2", "RTE"])
    first = FakeFinetune(fail_on="SST-2")
    with pytest.raises(BertctlError, match="interrupted"):
        _suite(tmp_path, glue, first)
    assert first.calls == [("CoLA", 0, False), ("SST-2", 0, False)]
    again = FakeFinetune()
    result = _suite(tmp_path, glue, again, resume=True)
    # CoLA finished (glue.json): skipped; SST-2 has a checkpoint: resumed; RTE: fresh
    assert again.calls == [("SST-2", 0, True), ("RTE", 0, False)]
    assert set(result.results) == {"CoLA", "SST-2", "RTE"}


def test_seeds_run_each_task_n_times(tmp_path):
    glue = make_glue(tmp_path / "glue", n=12, tasks=["MRPC"])
    fake = FakeFinetune()
    result = _suite(tmp_path, glue, fake, seeds=3)
    assert fake.calls == [("MRPC", 0, False), ("MRPC", 1, False), ("MRPC", 2, False)]
    r = result.results["MRPC"]
    assert r["score"] == pytest.approx(60.0) and r["score_std"] == pytest.approx(10.0)
    assert result.rows[0]["score"] == "60.0 ± 10.0"
    assert (tmp_path / "out" / "MRPC" / "seed2" / "glue.json").exists()


def test_per_task_overrides_are_validated_before_training(tmp_path):
    from bertctl.glue.suite import finetune_recipe, task_settings

    recipe = GlueRecipe.model_validate({"per_task": {"RTE": {"train": {"epochs": 2}, "max_train_rows": 5}}})
    assert task_settings(recipe, "RTE")["train"]["epochs"] == 2 and task_settings(recipe, "CoLA")["train"]["epochs"] == 5
    files = {"train": tmp_path / "t.jsonl", "dev": tmp_path / "d.jsonl", "test": None}
    ft = finetune_recipe(recipe, TASKS["RTE"], files, seed=3)
    assert ft.kind == "nli" and ft.train.seed == 3 and ft.data.columns.text_pair == "sentence2"
    bad = GlueRecipe.model_validate({"per_task": {"RTE": {"train": {"epochz": 2}}}})
    with pytest.raises(BertctlError, match="per_task.RTE"):
        finetune_recipe(bad, TASKS["RTE"], files, seed=0)


# ---------------------------------------------------------------------------- CLI


def test_no_glue_data_at_all_is_one_clear_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("eval-glue", "--out", str(tmp_path / "o"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "no GLUE data" in lines[0] and "--glue-dir" in lines[0] and "nyu-mll/glue" in lines[0]
    assert not (tmp_path / "o").exists()  # nothing written when there is nothing to run
    code, _, err = cli("eval-glue", "--glue-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2"))
    assert code == 2 and "does not exist" in err


def test_resume_refuses_a_changed_setting(cli, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "recipe.yaml").write_text("command: eval-glue\ntrain: {epochs: 3, lr: 1.0e-4}\n")
    code, _, err = cli("eval-glue", "glue", "--out", str(out), "--resume")
    assert code == 2 and "different train" in err


def test_hub_rows_become_the_same_rows_as_files():
    """nyu-mll/glue stores class ids; they map to the strings the files and leaderboard use."""
    from bertctl.glue.data import HubGlue

    pair = lambda label, i: {"sentence1": f"a {i}", "sentence2": f"b {i}", "label": label, "idx": i}  # noqa: E731
    hub = HubGlue(_cache={
        "rte/train": [pair(0, 0), pair(1, 1)], "rte/validation": [pair(1, 0)], "rte/test": [pair(-1, 7)],
        "wnli/train": [pair(1, 0), pair(0, 1)], "wnli/validation": [pair(1, 0)], "wnli/test": [pair(-1, 0)],
        "stsb/train": [pair(3.8, 0), pair(1.0, 1)], "stsb/validation": [pair(5.0, 0)], "stsb/test": [pair(-1.0, 3)],
        "mnli/train": [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 0}],
        "mnli/validation_matched": [{"premise": "p", "hypothesis": "h", "label": 1, "idx": 0}],
        "mnli/validation_mismatched": [{"premise": "p", "hypothesis": "h", "label": 0, "idx": 0}],
    })
    rte = load_task(hub, TASKS["RTE"])
    assert [r["label"] for r in rte.train] == ["entailment", "not_entailment"]
    assert rte.tests["RTE.tsv"] == [{"idx": "7", "sentence1": "a 7", "sentence2": "b 7"}]
    assert [r["label"] for r in load_task(hub, TASKS["WNLI"]).train] == ["1", "0"]
    assert load_task(hub, TASKS["STS-B"]).train[0]["label"] == 3.8
    mnli = load_task(hub, TASKS["MNLI"], tests=False)
    assert mnli.train[0] == {"sentence1": "p", "sentence2": "h", "label": "contradiction"}
    assert mnli.evals["m"][0]["label"] == "neutral" and mnli.evals["mm"][0]["label"] == "entailment"


def test_glue_sane_rule():
    from bertctl.glue.suite import is_sane

    assert is_sane(GlueRecipe())
    assert is_sane(GlueRecipe.model_validate({"per_task": {"QQP": {"max_train_rows": 1000}}}))
    assert not is_sane(GlueRecipe.model_validate({"per_task": {"RTE": {"train": {"epochs": 5}}}}))
    assert not is_sane(GlueRecipe.model_validate({"train": {"epochs": 10}}))
