"""Issue 20, part A: the run record (run.json read once, status from the lock), one
metrics.json layout, one JSON-lines reader, and `bertctl runs` on hostile folders. Fast:
folders are written by hand, nothing is trained."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from bertctl.errors import BertctlError
from bertctl.jsonl import append_jsonl, parse, read_jsonl, write_jsonl
from bertctl.runs import LOCK, Run, read_metrics, read_record, write_metrics


def _folder(path: Path, record: dict | None = None, metrics=None, checkpoint: bool = False, model: bool = False,
            recipe: str | None = "command: finetune\ntask: sentiment\nmodel:\n  name_or_path: minilm\n") -> Path:
    path.mkdir(parents=True)
    if recipe is not None:
        (path / "recipe.yaml").write_text(recipe, encoding="utf-8")
    if record is not None:
        (path / "run.json").write_text(json.dumps(record))
    if metrics is not None:
        (path / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if checkpoint:
        (path / "checkpoints" / "step-0000002").mkdir(parents=True)
        (path / "checkpoints" / "step-0000002" / "state.json").write_text('{"step": 2}')
    if model:
        (path / "model").mkdir()
        (path / "model" / "config.json").write_text("{}")
    return path


def _record(status: str, **more) -> dict:
    return {"schema": 1, "command": "finetune", "status": status, "started": "2026-01-01T00:00:00", **more}


def _one_line_or_ok(code: int, out: str, err: str) -> None:
    assert code in (0, 2), (code, out, err)  # 1: an exception escaped (CliRunner keeps the traceback)
    if code == 2:
        assert err.count("error:") == 1 and len(err.strip().splitlines()) <= 2, err


# ------------------------------------------------------------------------ JSON lines


def test_a_torn_last_line_is_skipped_with_a_note_and_a_bad_middle_line_names_file_and_line(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    notes = []
    assert read_jsonl(f, on_torn=notes.append) == [{"step": 1}, {"step": 2}]
    assert "skipped its last line" in notes[0]
    with pytest.raises(BertctlError, match=r"m\.jsonl: line 3 is not valid JSON"):
        read_jsonl(f, torn_last_line="error")
    f.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(BertctlError, match=r"m\.jsonl: line 2 is not valid JSON"):
        read_jsonl(f)
    f.write_text('{"step": 1}\nnull\n')
    with pytest.raises(BertctlError, match="line 2 is a JSON null, not an object"):
        read_jsonl(f)
    assert read_jsonl(f, objects=False) == [{"step": 1}, None]
    assert read_jsonl(tmp_path / "missing.jsonl") == []
    assert [n for n, _ in parse(["{}\n", "\n", "{}\n"], "x")] == [1, 3]


def test_write_jsonl_is_atomic_and_append_adds_a_line(tmp_path):
    f = tmp_path / "rows.jsonl"
    write_jsonl(f, [{"text": "é"}, {"n": 1}])
    append_jsonl(f, {"n": 2})
    assert f.read_text(encoding="utf-8") == '{"text": "é"}\n{"n": 1}\n{"n": 2}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]  # no temporary left


def test_resume_after_a_kill_tore_the_last_metrics_line(tmp_path):
    """--resume truncates metrics.jsonl to the checkpoint: it parsed every line strictly and
    crashed on the line a kill -9 tore."""
    run = Run.create(tmp_path / "run", "pretrain")
    for step in (1, 2, 3):
        run.log_metrics({"step": step, "loss": 1.0 / step})
    with open(run.file("metrics.jsonl"), "a") as f:
        f.write('{"step": 4, "lo')
    assert [r["step"] for r in run.metrics_history()] == [1, 2, 3]
    run.truncate_metrics(2)
    assert run.file("metrics.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n'
    run.finish()


# ------------------------------------------------------------------------ the record


def test_status_comes_from_run_json_and_the_lock_not_from_clocks(tmp_path):
    failed = _folder(tmp_path / "failed", _record("failed", error="x is not a model."))  # just written: old code said running
    stopped = _folder(tmp_path / "stopped", _record("interrupted"), checkpoint=True)
    died = _folder(tmp_path / "died", _record("running"), checkpoint=True)
    died_early = _folder(tmp_path / "died-early", _record("running"))
    done = _folder(tmp_path / "done", _record("finished"), metrics={"dev": {"accuracy": 0.9}}, model=True)
    assert read_record(failed).status == "failed" and read_record(failed).error == "x is not a model."
    assert read_record(stopped).status == "interrupted"
    assert read_record(died).status == "interrupted" and read_record(died).recorded == "running"
    assert read_record(died_early).status == "failed"
    assert read_record(done).status == "finished" and Run(done, "finetune").finished()
    assert not Run(failed, "finetune").finished()


def test_a_killed_suite_whose_seed_runs_hold_progress_reads_interrupted(tmp_path):
    """eval-glue keeps its checkpoints in its seed runs (TASK/seedN): killed (kill -9, the
    OOM killer) after a seed finished or checkpointed, `--resume` continues it, so it is
    interrupted, not failed (the parent folder itself never holds a checkpoint)."""
    suite = {"schema": 1, "command": "eval-glue", "status": "running", "started": "2026-01-01T00:00:00"}
    recipe = "command: eval-glue\n"
    done = _folder(tmp_path / "done", suite, recipe=recipe)
    _folder(done / "RTE" / "seed0", _record("finished"), metrics={"dev": {"accuracy": 0.6}}, model=True)
    halfway = _folder(tmp_path / "halfway", suite, recipe=recipe)
    _folder(halfway / "RTE" / "seed0", _record("running"), checkpoint=True)
    nothing = _folder(tmp_path / "nothing", suite, recipe=recipe)
    _folder(nothing / "RTE" / "seed0", _record("running"))
    assert read_record(done).status == "interrupted" and read_record(halfway).status == "interrupted"
    assert read_record(nothing).status == "failed"


@pytest.mark.parametrize("before", ["interrupted", "failed", "running"])
def test_a_resumed_run_that_completes_reads_finished(tmp_path, before):
    """eval-glue calls no Run.finish: the command's end (close_all(None), as cli.py does)
    marks it finished. A suite stopped by SIGTERM (recorded interrupted) or by a failed
    seed, resumed to the end, stayed *interrupted*/*failed*, with the old error line."""
    from bertctl.runs import close_all

    error = {"error": "interrupted at step 3/9 (SIGTERM)"} if before != "running" else {}
    suite = _folder(tmp_path / "suite", {"schema": 1, "command": "eval-glue", "status": before, **error},
                    recipe="command: eval-glue\n", metrics={"glue_score": 80.0})  # the resumed suite's, at its end
    run = Run.create(suite, "eval-glue", resume=True)
    run.resumed()
    close_all(None)
    record = read_record(suite)
    assert (record.status, record.recorded, record.error) == ("finished", "finished", "")
    assert record.finished


def test_a_live_run_is_one_whose_lock_is_held(tmp_path):
    """A finetune in its final evaluation writes nothing for minutes: old code called it
    failed (or interrupted) once its files were a minute old."""
    live = _folder(tmp_path / "live", _record("running"), checkpoint=True)
    old = os.path.getmtime(live) - 3600
    for p in [live, *live.rglob("*")]:
        os.utime(p, (old, old))
    (live / LOCK).write_text('{"pid": 1}')
    fd = os.open(live / LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file: as another process holds it
    try:
        assert read_record(live).status == "running"
        from bertctl.runinfo import summary

        assert summary(live)["status"] == "running"
    finally:
        os.close(fd)
    assert read_record(live).status == "interrupted"  # the holder is gone: the kernel dropped its flock


def test_the_record_holds_schema_command_and_what_note_adds(tmp_path):
    run = Run.create(tmp_path / "run", "finetune")
    run.note(task="sentiment", kind="cls", model="minilm")
    record = read_record(run.path)
    assert (record.schema, record.command, record.task, record.kind, record.model) == (1, "finetune", "sentiment",
                                                                                        "cls", "minilm")
    assert record.status == "running"  # this process holds it
    run.finish()
    assert read_record(run.path).status == "failed"  # "finished" without its metrics.json: not finished
    write_metrics(run, {"accuracy": 1.0}, scores={"dev": {"accuracy": 1.0}}, main_metric="accuracy")
    assert read_record(run.path).status == "finished"


def test_an_old_folder_without_run_json_is_inferred_once_with_a_note(tmp_path, cli):
    old = _folder(tmp_path / "runs" / "old", metrics={"dev": {"accuracy": 0.8}, "main_metric": "accuracy", "steps": 7})
    record = read_record(old)
    assert record.inferred and record.command == "finetune" and record.status == "finished"
    assert record.task == "sentiment" and record.model == "minilm"
    code, out, err = cli("runs", "show", old)
    assert code == 0, err
    assert "no run.json" in " ".join(out.split())


def test_a_folder_holding_only_a_log_is_not_a_run(tmp_path, cli):
    (tmp_path / "runs" / "notes").mkdir(parents=True)
    (tmp_path / "runs" / "notes" / "log.txt").write_text("my own notes\n")
    (tmp_path / "runs" / "plain").mkdir()
    (tmp_path / "runs" / "plain" / "recipe.yaml").write_text("lr: 1\n")  # no command: line
    assert read_record(tmp_path / "runs" / "notes") is None and read_record(tmp_path / "runs" / "plain") is None
    code, out, err = cli("runs", "list", tmp_path / "runs")
    assert code == 0 and "no run folders" in out
    code, out, err = cli("runs", "show", tmp_path / "runs" / "notes")
    assert code == 2 and "not a run folder" in err


def test_an_eval_only_folder_is_listed_with_its_real_command(tmp_path):
    from bertctl.runinfo import summary

    ev = _folder(tmp_path / "eval-20260101-000000", {**_record("finished"), "command": "finetune-eval"},
                 metrics={"split": "xquad.zh", "xquad.zh": {"f1": 50.0}, "main_metric": "f1"})
    row = summary(ev)
    assert row["command"] == "finetune-eval" and row["metric"] == "xquad.zh f1 50"


# ------------------------------------------------------------------------ metrics.json


def test_metrics_json_has_one_outer_layout_whatever_the_command(tmp_path):
    run = Run.create(tmp_path / "ft", "finetune")
    data = write_metrics(run, {"task": "cls", "main_metric": "accuracy", "dev": {"accuracy": 0.75}, "steps": 9,
                               "train_seconds": 2.5})
    assert data == read_metrics(run.path)
    assert (data["schema"], data["command"], data["main_metric"], data["main_value"], data["steps"]) == \
        (1, "finetune", "accuracy", 0.75, 9)
    assert data["scores"] == {"dev": {"accuracy": 0.75}} and data["timings"] == {"train_seconds": 2.5}
    assert data["dev"] == {"accuracy": 0.75} and data["train_seconds"] == 2.5  # the command's own keys stay
    run.finish()
    pt = Run.create(tmp_path / "pt", "pretrain")
    data = write_metrics(pt, {"mlm_accuracy": 0.3, "step": 6}, scores={"heldout": {"mlm_accuracy": 0.3}},
                         main_metric="mlm_accuracy")
    assert (data["command"], data["main_value"], data["steps"], data["step"]) == ("pretrain", 0.3, 6, 6)
    pt.finish()


@pytest.mark.parametrize("old, main, value, steps, scores", [
    ({"mlm_accuracy": 0.3, "perplexity": 9.0, "step": 6}, "mlm_accuracy", 0.3, 6, set()),  # pretrain
    ({"main_metric": "f1", "dev": {"f1": 0.5}, "test": {"f1": 0.4}, "steps": 3}, "f1", 0.5, 3, {"dev", "test"}),
    ({"main_metric": "f1", "split": "xquad.zh", "xquad.zh": {"f1": 0.6}}, "f1", 0.6, None, {"xquad.zh"}),  # eval-only
    ({"main_metric": "f1", "results": {"a": {"f1": 0.1}, "b": {"f1": 0.2}}, "rows": []}, "f1", 0.1, None, {"a", "b"}),
    ({"glue_score": 71.0, "tasks": {"CoLA": 30.0}}, "glue_score", 71.0, None, set()),
])
def test_older_metrics_layouts_read_in_the_one_layout(tmp_path, old, main, value, steps, scores):
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    m = read_metrics(tmp_path)
    assert (m["main_metric"], m["main_value"], m["steps"], set(m["scores"])) == (main, value, steps, scores)
    assert all(m[k] == v for k, v in old.items() if k != "steps")  # every old key still there


@pytest.mark.parametrize("text", ['{"dev": {"accura', "[1, 2]", "\xff\xfe"])
def test_unreadable_metrics_json_is_one_error(tmp_path, text):
    (tmp_path / "metrics.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(BertctlError, match="metrics.json is unreadable"):
        read_metrics(tmp_path)


# ------------------------------------------------------------------------ hostile folders for `runs`


@pytest.fixture
def hostile(tmp_path):
    root = tmp_path / "runs"
    _folder(root / "torn-metrics", _record("running"), metrics='{"dev": {"accur')
    _folder(root / "list-metrics", _record("finished"), metrics="[1, 2, 3]")
    _folder(root / "text-metric", _record("finished"),
            metrics={"main_metric": "accuracy", "dev": {"accuracy": "high", "f1": None}})
    _folder(root / "null-line", _record("finished"), metrics={"dev": {"accuracy": 0.5}, "main_metric": "accuracy"})
    (root / "null-line" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\nnull\n[1]\n{"step": 2, "loss": "x"}\n')
    _folder(root / "latin1", _record("failed"), recipe=None)
    (root / "latin1" / "recipe.yaml").write_bytes("command: finetune\n# caf\xe9\ntask: s\xe9ntiment\n".encode("latin-1"))
    _folder(root / "links", _record("finished"), metrics={"dev": {"accuracy": 1.0}})
    (root / "links" / "gone.txt").symlink_to(tmp_path / "nowhere")
    (root / "links" / "model").symlink_to(tmp_path / "nowhere-dir")
    (root / "dangling-run").symlink_to(tmp_path / "no-such-folder")
    (root / "bad-record").mkdir()
    (root / "bad-record" / "run.json").write_text('{"command": "finetune", "status": "runn')
    (root / "bad-record" / "recipe.yaml").write_text("command: finetune\n")
    return root


def test_runs_list_show_and_compare_survive_hostile_folders(hostile, cli, tmp_path):
    from bertctl.runinfo import find_runs, summary

    rows = {p.name: summary(p) for p in find_runs(hostile)}
    assert "dangling-run" not in rows
    assert rows["torn-metrics"]["status"] == "failed" and rows["torn-metrics"]["metric"] == "metrics.json unreadable"
    assert rows["list-metrics"]["metric"] == "metrics.json unreadable"
    assert rows["text-metric"]["metric"] == "dev accuracy high"
    assert rows["latin1"]["status"] == "failed"
    assert rows["bad-record"]["status"] == "failed"  # run.json unreadable: inferred from what is there
    code, out, err = cli("runs", "list", hostile)
    _one_line_or_ok(code, out, err)
    assert code == 0
    for name in rows:
        code, out, err = cli("runs", "show", hostile / name)
        _one_line_or_ok(code, out, err)
        assert code == 0, (name, err)
    code, out, err = cli("runs", "show", hostile / "dangling-run")
    assert code == 2 and "not a run folder" in err
    names = [hostile / n for n in rows]
    code, out, err = cli("runs", "compare", *names, "--png", tmp_path / "c.png")
    _one_line_or_ok(code, out, err)
    assert code == 0 and (tmp_path / "c.png").exists()  # the null-line run still draws its one good point


def test_compare_png_into_a_missing_folder_is_one_error_line(hostile, cli, tmp_path):
    a, b = hostile / "null-line", hostile / "text-metric"
    code, out, err = cli("runs", "compare", a, b, "--png", tmp_path / "no" / "such" / "c.png")
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "no").exists()


def test_predict_refuses_a_failed_run_with_one_line(tmp_path, cli):
    run = _folder(tmp_path / "ft", _record("failed", error="disk full."), metrics={"dev": {"accuracy": 0.5}}, model=True)
    (tmp_path / "in.txt").write_text("hello\n")
    code, out, err = cli("predict", run, tmp_path / "in.txt")
    assert code == 2 and "failed" in err
    _one_line_or_ok(code, out, err)
    code, out, err = cli("predict", run / "model", tmp_path / "in.txt")
    assert code == 2 and "failed" in err
    died = _folder(tmp_path / "died", _record("running"), metrics={"dev": {"accuracy": 0.5}}, model=True)
    code, out, err = cli("predict", died, tmp_path / "in.txt")  # its process is gone without a word
    assert code == 2 and "failed" in err
