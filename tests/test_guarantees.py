"""Issue 12's guarantees that are not errors (those are rows of test_bad_inputs.py): a
stale lock is taken over, a finished run resumed changes nothing, a damaged token cache
is rebuilt, a failed start leaves no half-made folder, input fingerprints ignore a mere
touch, the newest pretrain run is found by what folders record, YAML 1.2 scalars, the
DNA symbol count, free generation said out loud, and pickled adapters refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bertctl.errors import BertctlError

from .helpers import TINY_PRETRAIN, sentiment_rows, tsv, write


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished 4-step pretrain run and its token cache."""
    from typer.testing import CliRunner

    from bertctl.cli import app

    root = tmp_path_factory.mktemp("guarantees")
    run, cache = root / "run", root / "cache"
    result = CliRunner().invoke(app, ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={cache}", "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run, cache


def _cli(*argv):
    from typer.testing import CliRunner

    from bertctl.cli import app

    return CliRunner().invoke(app, [str(a) for a in argv])


def _metrics(run: Path) -> dict:
    timing = {"tokens_per_s", "train_seconds", "timings"}
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in timing}


def test_a_finished_run_resumed_changes_nothing_and_says_so(pretrained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pretrained[0], run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = _cli("pretrain", *TINY_PRETRAIN, f"data.cache_dir={pretrained[1]}", "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())  # rich wraps long lines
    assert "already finished (step 4): nothing to resume" in said
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # metrics.json keeps its timings, and no file is added (the lock is gone again)


def test_a_finished_finetune_run_resumed_changes_nothing(tiny, tmp_path):
    data = tmp_path / "data"
    argv = ["finetune", "--task", "cls", f"model.name_or_path={tiny}",
            f"data.train={tsv(data / 'train.tsv', ['sentence', 'label'], sentiment_rows(16))}",
            f"data.dev={tsv(data / 'dev.tsv', ['sentence', 'label'], sentiment_rows(8))}", "model.max_length=32",
            "train.epochs=1", "train.batch_size=8", "train.precision=fp32", "--out", tmp_path / "run"]
    assert _cli(*argv).exit_code == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["command"] == "finetune" and record["status"] == "finished"
    assert set(record["inputs"]) == {"data.train", "data.dev"} and len(record["inputs"]["data.train"]["sha256"]) == 64
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    result = _cli(*argv, "--resume")
    assert result.exit_code == 0 and "already finished" in result.stderr
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before


def test_a_stale_lock_is_taken_over_with_a_note(pretrained, tmp_path):
    run = tmp_path / "run"
    write(run / ".bertctl.lock", json.dumps({"pid": 999999, "host": "gone-host", "command": "pretrain", "since": "then"}))
    result = _cli("pretrain", *TINY_PRETRAIN, f"data.cache_dir={pretrained[1]}", "--out", run)
    assert result.exit_code == 0, result.output
    assert "took over the lock of `bertctl pretrain`, pid 999999 on gone-host" in result.stderr
    assert "took over the lock" in (run / "log.txt").read_text()
    assert not (run / ".bertctl.lock").exists()  # released at the end


def test_a_resumed_run_logs_only_once_its_checkpoint_loaded_and_then_everything_in_order(pretrained, tmp_path):
    """A killed run (stale lock, newest checkpoint step 2) resumed: log.txt keeps what it
    held, then every line of the resumed command in the order said, those said before the
    checkpoint loaded (the lock take-over, the precision) included. The same run with a
    damaged checkpoint: refused with log.txt and run.json byte for byte as they were."""
    import re
    import shutil

    from .helpers import assert_unchanged, digest

    run = tmp_path / "run"
    shutil.copytree(pretrained[0], run)
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "checkpoints" / "step-0000004")
    (run / "metrics.json").unlink()
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": "running"}))
    write(run / ".bertctl.lock", json.dumps({"pid": 999999, "host": "gone-host", "command": "pretrain", "since": "then"}))
    argv = ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={pretrained[1]}", "--out", run, "--resume"]

    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    (damaged / "checkpoints" / "step-0000002" / "state.json").write_text('{"step": 2, "epo')
    before = digest(damaged)
    result = _cli(*argv[:-3], "--out", damaged, "--resume")
    assert result.exit_code == 2 and "is damaged" in result.stderr, result.output
    assert "took over the lock" in result.stderr  # said on the terminal, not written
    del before[".bertctl.lock"]  # the stale lock is taken over and released (removed)
    assert_unchanged(damaged, before)

    old = (run / "log.txt").read_text()
    result = _cli(*argv)
    assert result.exit_code == 0, result.output
    log = (run / "log.txt").read_text()
    assert log.startswith(old)
    new = log[len(old):].splitlines()
    order = ["took over the lock of `bertctl pretrain`, pid 999999", "precision:", "accelerate:",
             "resumed from step-0000002", "finished:"]
    at = [next((i for i, line in enumerate(new) if want in line), None) for want in order]
    assert None not in at and at == sorted(at), (at, new)
    stamps = [re.match(r"(\S+) ", line).group(1) for line in new]
    assert stamps == sorted(stamps)  # written in the order said, with the times they were said
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_the_lock_is_exclusive_and_released(tmp_path):
    from bertctl.runs import Run, close_all

    run = Run.create(tmp_path / "r", "pretrain")
    holder = json.loads((tmp_path / "r" / ".bertctl.lock").read_text())
    assert holder["pid"] == os.getpid() and holder["command"] == "pretrain"
    again = Run.create(tmp_path / "r", "pretrain", resume=True)  # the same process may open it again
    assert again.path == run.path
    close_all(None)
    assert not (tmp_path / "r" / ".bertctl.lock").exists()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "finished"


def test_a_damaged_token_cache_is_rebuilt_with_a_note(pretrained, tmp_path):
    import shutil

    cache = pretrained[1]  # in place: the cache key holds the World corpus's path in it
    tokens = next(cache.glob("sequences/*/train/tokens.bin"))
    tokens.write_bytes(tokens.read_bytes()[: tokens.stat().st_size // 2])  # truncated, as by a full disk
    result = _cli("pretrain", *TINY_PRETRAIN, f"data.cache_dir={cache}", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())  # rich wraps long lines
    assert "is damaged (train/tokens.bin is" in said and "rebuilding it" in said
    assert _metrics(tmp_path / "run") == _metrics(pretrained[0])  # as trained on the intact cache

    # a flipped byte (same size) is found by the checksum
    from bertctl.pretraining.corpus import cache_problem

    copy = tmp_path / "copy"
    shutil.copytree(tokens.parent.parent, copy)
    data = bytearray((copy / "train" / "tokens.bin").read_bytes())
    data[0] ^= 1
    (copy / "train" / "tokens.bin").write_bytes(bytes(data))
    assert cache_problem(tokens.parent.parent) is None
    assert cache_problem(copy) == "train/tokens.bin does not match its checksum"


def test_a_failed_start_leaves_no_half_made_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _cli("finetune", "--task", "cls", f"model.name_or_path={tmp_path / 'no-model'}", "--out", "new-run")
    assert result.exit_code == 2 and not (tmp_path / "new-run").exists()
    # a folder the user made is kept, marked failed with the error line
    (tmp_path / "mine").mkdir()
    result = _cli("finetune", "--task", "cls", f"model.name_or_path={tmp_path / 'no-model'}", "--out", "mine")
    assert result.exit_code == 2
    record = json.loads((tmp_path / "mine" / "run.json").read_text())
    assert record["status"] == "failed" and "does not exist" in record["error"]
    assert "failed: model path" in (tmp_path / "mine" / "log.txt").read_text()
    # and the corrected command may use it
    assert not (tmp_path / "mine" / ".bertctl.lock").exists()


def test_input_fingerprints_ignore_a_touch_but_not_an_edit(tmp_path):
    from bertctl.runs import Run, close_all

    data = write(tmp_path / "train.tsv", "a\tb\n")
    (tmp_path / "r").mkdir()  # made by the user: kept when the run fails
    run = Run.create(tmp_path / "r", "finetune")
    run.start({"data.train": data}, resume=False)
    close_all(BertctlError("stopped"))
    os.utime(data, (1, 1))  # copied with a new mtime: same bytes
    Run.create(tmp_path / "r", "finetune", resume=True).start({}, resume=True)
    close_all(None)
    data.write_text("a\tc\n")
    with pytest.raises(BertctlError, match=r"input data\.train .*same size, other content"):
        Run.create(tmp_path / "r", "finetune", resume=True).start({}, resume=True)
    close_all(None)


def test_the_newest_pretrain_run_is_chosen_by_its_record(tmp_path, tiny):
    import shutil

    from bertctl.models import latest_run

    def make(name: str, command: str, status: str, finished: str) -> Path:
        folder = tmp_path / "runs" / name
        shutil.copytree(tiny, folder / "model")
        write(folder / "metrics.json", "{}")
        write(folder / "run.json", json.dumps({"command": command, "status": status, "finished": finished}))
        return folder

    make("pretrain-20300101-000000", "finetune", "finished", "2030-01-01T00:00:00")  # named like one; is not
    make("pretrain-20290101-000000", "pretrain", "failed", "2029-01-01T00:00:00")
    mine = make("my-bert", "pretrain", "finished", "2026-01-01T00:00:00")
    make("pretrain-20250101-000000", "pretrain", "finished", "2025-01-01T00:00:00")
    assert latest_run("pretrain", tmp_path / "runs") == mine


def test_recipes_read_yaml_1_2_scalars():
    from bertctl.recipe import parse_yaml

    assert parse_yaml("a: no\nb: 1e-4\nc: 2024-01-01\nd: 010\ne: on\nf: true\ng: 0x10\n") == {
        "a": "no", "b": 1e-4, "c": "2024-01-01", "d": 10, "e": "on", "f": True, "g": 16}


def test_strict_types_keep_ints_as_floats():
    from bertctl.config import TrainSettings

    assert TrainSettings.model_validate({"max_steps": 5, "lr": 1}).lr == 1.0


def test_dna_symbols_outside_acgt_are_counted(tiny):
    from transformers import AutoTokenizer

    from bertctl.finetune.dna import DnaTask

    from .helpers import recipe

    task = DnaTask(recipe(tiny, "dna"), ["0", "1"])
    task.setup(AutoTokenizer.from_pretrained(str(tiny)))
    assert task.report() == []
    task.spell("ACGTNNAC")
    task.spell("acgt")
    task.spell("AC-GX")
    (line,) = task.report()
    assert "4 symbol(s) outside A/C/G/T in 2 sequence(s)" in line and "'N' x2" in line and "unknown" in line


def test_an_eval_file_without_a_label_column_says_free_generation(tmp_path):
    from bertctl.prompting.config import PromptRecipe
    from bertctl.prompting.tasks import load_task

    rows = [[f"the film {i} was good ."] for i in range(12)]
    path = tsv(tmp_path / "eval.tsv", ["text"], rows)
    recipe = PromptRecipe.model_validate({"task": "mine", "data": {"eval": str(path), "pool_size": 4},
                                          "template": {"input": "Review: {text}"}})
    task = load_task(recipe)
    assert not task.labelled and any("no label column: free generation" in n for n in task.notes)


def test_a_pickled_adapter_needs_allow_pickle(tmp_path):
    from bertctl.models import check_weights

    write(tmp_path / "model.safetensors", b"base weights")
    write(tmp_path / "adapter_config.json", "{}")
    write(tmp_path / "adapter_model.bin", b"pickle")
    with pytest.raises(BertctlError, match="adapter .* stored as a pickle"):
        check_weights(tmp_path, allow_pickle=False)
    check_weights(tmp_path, allow_pickle=True)
    write(tmp_path / "adapter_model.safetensors", b"adapter")
    check_weights(tmp_path, allow_pickle=False)
