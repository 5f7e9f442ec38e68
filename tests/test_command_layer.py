"""The command layer's contract (issue #20, part C), the same in every command:

- results on stdout, progress and notes on stderr; --quiet hides progress (not warnings, not errors);
- a flag that sets a recipe key is that key's override (`--model X` == `model.name_or_path=X`);
- a refused command leaves every file that was there byte for byte (hashed before and after);
- outputs in folders that do not exist yet are written (the folders made), and the network,
  a bad repository id, a file in a foreign encoding or a bad option value is one `error:` line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .helpers import (ENV, TINY_PRETRAIN, assert_unchanged, digest, make_glue, save_model, sentiment_rows, tiny_bpe_tokenizer,
                      tiny_llama, tsv, write)

TINY_FINETUNE = ["model.max_length=32", "train.epochs=1", "train.batch_size=8", "train.precision=fp32",
                 "train.log_every=1"]
# what finetune, pretrain and friends say while they work (never a result)
PROGRESS = re.compile(r"^(model: |data: |method: |precision: |eval-only: |.*: step \d+/\d+ )", re.M)


def _invoke(*args: str, input: str | None = None):
    from typer.testing import CliRunner

    from bertctl.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    return result


def _one_error_line(result, expect: str) -> str:
    """Exit 2, nothing on stderr but one `error: ... . fix` line, no traceback, no usage box."""
    err = [line for line in (result.stderr or "").splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in result.output and "Usage:" not in result.output and "╭" not in result.output
    assert re.search(expect, err[0]), err[0]
    return err[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sentiment")
    tsv(folder / "train.tsv", ["sentence", "label"], sentiment_rows(16))
    tsv(folder / "dev.tsv", ["sentence", "label"], sentiment_rows(8))
    return folder


def _finetune_argv(tiny: Path, data: Path) -> list[str]:
    return ["finetune", "--task", "cls", "--model", str(tiny), f"data.train={data / 'train.tsv'}",
            f"data.dev={data / 'dev.tsv'}", *TINY_FINETUNE]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny, data) -> Path:
    out = tmp_path_factory.mktemp("finetuned") / "run"
    result = _invoke(*_finetune_argv(tiny, data), "--out", out)
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------ stdout / stderr / --quiet


def test_finetune_results_on_stdout_progress_on_stderr_and_quiet_hides_it(tiny, data, tmp_path):
    loud = _invoke(*_finetune_argv(tiny, data), "--out", tmp_path / "loud")
    assert loud.exit_code == 0, loud.output
    assert not PROGRESS.search(loud.stdout), loud.stdout  # `bertctl finetune ... > out.txt` holds results only
    assert "accuracy" in loud.stdout and "Wrote" in loud.stdout
    assert "model: " in loud.stderr and "data: " in loud.stderr and re.search(r"step \d+/\d+", loud.stderr)
    quiet = _invoke(*_finetune_argv(tiny, data), "--out", tmp_path / "quiet", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr.strip() == "", quiet.stderr
    assert "accuracy" in quiet.stdout and "Wrote" in quiet.stdout
    # the run's log keeps what --quiet did not show
    assert "model: " in (tmp_path / "quiet" / "log.txt").read_text()


def test_finetune_redirected_to_a_file_holds_results_only(tiny, data, tmp_path):
    """`bertctl finetune ... > out.txt` in a real process: no progress, and no library's log
    line either (DeepSpeed, imported by accelerate, logs to stdout by default)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # this checkout's bertctl
    done = subprocess.run([sys.executable, "-m", "bertctl", *_finetune_argv(tiny, data), "--out", tmp_path / "r"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert "accuracy" in done.stdout and lines[-1].startswith("Wrote"), done.stdout
    assert not PROGRESS.search(done.stdout) and "WARNING" not in done.stdout, done.stdout
    assert "model: " in done.stderr and "step 2/2" in done.stderr


def test_eval_only_and_predict_progress_on_stderr(finetuned, tmp_path):
    loud = _invoke("finetune", "--eval-only", finetuned, "--out", tmp_path / "e")
    assert loud.exit_code == 0, loud.output
    assert "eval-only: " in loud.stderr and not PROGRESS.search(loud.stdout) and "accuracy" in loud.stdout
    quiet = _invoke("finetune", "--eval-only", finetuned, "--out", tmp_path / "q", "-q")
    assert quiet.exit_code == 0 and quiet.stderr.strip() == "", quiet.stderr
    rows = "the film was good .\nthe film was bad .\n"
    loud = _invoke("predict", finetuned, input=rows)
    assert loud.exit_code == 0, loud.output
    assert [json.loads(line)["label"] for line in loud.stdout.splitlines()]  # stdout: the JSON lines, only
    assert "predicted 2 rows" in loud.stderr
    quiet = _invoke("predict", finetuned, "--quiet", input=rows)
    assert quiet.exit_code == 0 and quiet.stderr.strip() == "" and quiet.stdout == loud.stdout


def test_pretrain_and_probe_progress_on_stderr_quiet_hides_it(tiny, tmp_path):
    argv = ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={tmp_path / 'cache'}"]
    loud = _invoke(*argv, "--out", tmp_path / "p1")
    assert loud.exit_code == 0, loud.output
    assert "held-out sequences" in loud.stderr and "held-out sequences" not in loud.stdout
    assert "Pretraining results" in loud.stdout
    quiet = _invoke(*argv, "--out", tmp_path / "p2", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr.strip() == "" and "Pretraining results" in quiet.stdout
    probe = ["probe", "checkpoints", "--model", tmp_path / "p1", "checkpoints.n_train=20", "checkpoints.n_test=10",
             "checkpoints.n_per_sense=3", "checkpoints.max_iter=50", "checkpoints.properties=[order]"]
    loud = _invoke(*probe, "--out", tmp_path / "c1")
    assert loud.exit_code == 0, loud.output
    assert "probing " in loud.stderr and "probing " not in loud.stdout and "Wrote" in loud.stdout
    quiet = _invoke(*probe, "--out", tmp_path / "c2", "--quiet")
    assert quiet.exit_code == 0 and "probing " not in quiet.stderr, quiet.stderr


def test_prompt_progress_on_stderr_results_and_asked_for_prompts_on_stdout(tmp_path):
    bpe = tiny_bpe_tokenizer()
    folder = save_model(tiny_llama(len(bpe)), bpe, tmp_path / "tiny")
    argv = ["prompt", "--shots", "0,1", "--model", folder, "data.limit=4", "data.pool_size=8"]
    loud = _invoke(*argv, "--out", tmp_path / "a", "--show-prompt")
    assert loud.exit_code == 0, loud.output
    assert "loading " in loud.stderr and "loading " not in loud.stdout
    assert "prompt of example 0 at 1 shots" in loud.stdout and "accuracy" in loud.stdout  # asked for, and results
    quiet = _invoke(*argv, "--out", tmp_path / "b", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr.strip() == "", quiet.stderr
    assert "accuracy" in quiet.stdout and "Wrote" in quiet.stdout


def test_every_command_that_trains_or_scores_takes_quiet():
    from typer.main import get_command

    from bertctl.cli import app

    root = get_command(app)
    for path in (["finetune"], ["pretrain"], ["eval-glue"], ["predict"], ["prompt"], ["probe", "similarity"],
                 ["probe", "layers"], ["probe", "checkpoints"], ["probe", "align"]):
        command = root
        for name in path:
            command = command.commands[name]
        assert any("--quiet" in p.opts for p in command.params), path


# ------------------------------------------------------------------ options are overrides


class _Stop(Exception):
    pass


def _captured(monkeypatch, module: str, name: str, *argv) -> object:
    """The recipe a command hands its library function (module.name), which is stopped there."""
    import importlib

    seen = []

    def stop(recipe, *a, **k):
        seen.append(recipe)
        raise _Stop

    monkeypatch.setattr(importlib.import_module(module), name, stop)
    result = _invoke(*argv)
    assert isinstance(result.exception, _Stop), (result.output, result.exception)
    return seen[0]


@pytest.mark.parametrize("command, module, name, option, key", [
    (["probe", "similarity"], "bertctl.probe.similarity", "main", "--model", "model.name_or_path"),
    (["probe", "layers"], "bertctl.probe.layers", "main", "--model", "model.name_or_path"),
    (["probe", "align"], "bertctl.probe.align", "main", "--model", "model.name_or_path"),
    (["probe", "checkpoints"], "bertctl.probe.learning_curves", "main", "--model", "model.name_or_path"),
    (["finetune", "--task", "nli"], "bertctl.finetune.config", "unused_settings", "--model", "model.name_or_path"),
    (["eval-glue"], "bertctl.glue.suite", "plan", "--model", "model.name_or_path"),
    (["eval-glue"], "bertctl.glue.suite", "plan", "--tasks", "tasks"),
    (["eval-glue"], "bertctl.glue.suite", "plan", "--seeds", "seeds"),
    (["eval-glue"], "bertctl.glue.suite", "plan", "--glue-dir", "glue_dir"),
    (["prompt"], "bertctl.prompting.run", "run_prompt", "--model", "models"),
    (["prompt"], "bertctl.prompting.run", "run_prompt", "--task", "task"),
    (["prompt"], "bertctl.prompting.run", "run_prompt", "--shots", "shots"),
])
def test_an_option_is_the_same_as_its_override(command, module, name, option, key, monkeypatch, tmp_path):
    """In a folder holding an empty minilm/: `--model minilm` is the embedded MiniLM exactly as
    `model.name_or_path=minilm` is (probe said ".../minilm is not a model"); a relative path
    resolves against the working directory either way."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "minilm").mkdir()
    (tmp_path / "sub" / "m").mkdir(parents=True)
    values = {"--model": ["minilm", "sub/m", "./sub/m"], "--task": ["nli"], "--shots": ["0,2"],
              "--tasks": ["RTE,SST-2"], "--seeds": ["2"], "--glue-dir": ["sub", "./sub/m"]}[option]
    for value in values:
        override = f"{key}=[{value}]" if key in ("models", "shots") else f"{key}={value}"
        by_option = _captured(monkeypatch, module, name, *command, option, value)
        by_override = _captured(monkeypatch, module, name, *command, override)
        assert by_option.model_dump() == by_override.model_dump(), (option, value)
        if option == "--model":
            got = by_option.models[0] if key == "models" else by_option.model.name_or_path
            assert got == ("minilm" if value == "minilm" else str((tmp_path / "sub" / "m").resolve())), got


def test_option_values_stay_text():
    from bertctl.recipe import option_overrides, parse_override

    for value in ("yes", "1e-4", "null", "x: [y]", "007"):
        assert parse_override(option_overrides({"model.name_or_path": value})[0])[1] == value
    assert option_overrides({"a": None, "b": [0, 2], "c": Path("d")}) == ['b=[0, 2]', 'c="d"']


# ------------------------------------------------------------------ refused commands change nothing


def test_refused_finetune_into_a_folder_with_the_users_recipe_changes_nothing(tmp_path):
    """`finetune myexp/recipe.yaml --out myexp` with a bad model overwrote the commented
    recipe.yaml and appended to the user's log.txt before it said no."""
    exp = tmp_path / "myexp"
    write(exp / "recipe.yaml", "# my experiment: keep these comments\ncommand: finetune\ntask: cls\n"
                               "model:\n  name_or_path: ./no-such-model\n")
    write(exp / "log.txt", "my own notes\n")
    before = digest(tmp_path)
    _one_error_line(_invoke("finetune", exp / "recipe.yaml", "--out", exp), "no-such-model")
    assert_unchanged(tmp_path, before)
    assert sorted(p.name for p in exp.iterdir()) == ["log.txt", "recipe.yaml"]
    # a model folder that is no model
    (tmp_path / "empty").mkdir()
    _one_error_line(_invoke("finetune", exp / "recipe.yaml", "--out", exp, "--model", tmp_path / "empty"),
                    "is not a model")
    assert_unchanged(tmp_path, before)
    # a data file that is not there, a column that is not in the file
    _one_error_line(_invoke("finetune", exp / "recipe.yaml", "--out", exp, "--model", "minilm",
                            f"data.train={tmp_path / 'nope.tsv'}", f"data.dev={tmp_path / 'nope.tsv'}"), "nope.tsv")
    tsv(tmp_path / "d" / "train.tsv", ["words", "label"], sentiment_rows(8))
    before = digest(tmp_path)
    _one_error_line(_invoke("finetune", exp / "recipe.yaml", "--out", exp, "--model", "minilm",
                            f"data.train={tmp_path / 'd' / 'train.tsv'}", f"data.dev={tmp_path / 'd' / 'train.tsv'}"),
                    "column")
    assert_unchanged(tmp_path, before)
    assert sorted(p.name for p in exp.iterdir()) == ["log.txt", "recipe.yaml"]


def test_refused_predict_and_probe_change_nothing(finetuned, tmp_path):
    out = write(tmp_path / "out.jsonl", "kept\n")
    before = digest(tmp_path)
    before_run = digest(finetuned)
    _one_error_line(_invoke("predict", finetuned, tmp_path / "in.txt", "--out", out), "already exists")
    _one_error_line(_invoke("predict", finetuned, tmp_path / "missing.txt", "--out", tmp_path / "new.jsonl"),
                    "missing.txt")
    # probe: a model that is not one, into a folder holding a file
    write(tmp_path / "probe-out" / "notes.txt", "mine\n")
    before = digest(tmp_path)
    _one_error_line(_invoke("probe", "similarity", "--model", tmp_path / "probe-out", "--out", tmp_path / "probe-out"),
                    "is not a model")
    assert_unchanged(tmp_path, before)
    assert_unchanged(finetuned, before_run)


@pytest.mark.parametrize("argv", [["prompt", "--model", "{empty}"], ["pretrain", "model.init={empty}"],
                                  ["eval-glue", "--model", "{empty}", "--glue-dir", "{glue}", "--tasks", "RTE"]])
def test_refused_commands_into_a_folder_with_the_users_files_change_nothing(argv, tmp_path):
    write(tmp_path / "myexp" / "recipe.yaml", "# mine\n")
    write(tmp_path / "myexp" / "log.txt", "my notes\n")
    (tmp_path / "empty").mkdir()
    glue = make_glue(tmp_path / "glue", n=8, tasks=["RTE"], tests=False)
    before = digest(tmp_path)
    argv = [a.format(empty=tmp_path / "empty", glue=glue) for a in argv]
    _one_error_line(_invoke(*argv, "--out", tmp_path / "myexp"), "is not a model")
    assert_unchanged(tmp_path, before)
    assert sorted(p.name for p in (tmp_path / "myexp").iterdir()) == ["log.txt", "recipe.yaml"]


def test_refused_pretrain_resume_with_a_changed_recipe_changes_nothing(tmp_path):
    argv = ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={tmp_path / 'cache'}", "--out", tmp_path / "run"]
    assert _invoke(*argv).exit_code == 0
    before = digest(tmp_path / "run")
    _one_error_line(_invoke(*argv, "--resume", "train.lr=0.5"), "train.lr")
    assert_unchanged(tmp_path / "run", before)


def test_refused_eval_glue_resume_keeps_the_suite_resumable(tmp_path, tiny):
    """A --resume refused for changed input data has rewritten nothing: the documented plain
    `--resume` still continues the suite."""
    glue = make_glue(tmp_path / "glue", n=12, tasks=["RTE"], tests=False)
    other = make_glue(tmp_path / "other", n=12, tasks=["RTE"], seed=1, tests=False)
    out = tmp_path / "suite"
    fast = ["train.epochs=1", "train.batch_size=8", "train.precision=fp32", "submission=false"]
    first = _invoke("eval-glue", "--model", tiny, "--glue-dir", glue, "--tasks", "RTE", "--out", out, *fast)
    assert first.exit_code == 0, first.output
    assert "GLUE data: " in first.stderr and "GLUE data: " not in first.stdout and "RTE" in first.stdout
    for done in (out / "RTE").glob("seed*/glue.json"):  # as if stopped before RTE's result was kept
        done.unlink()
    before = digest(out)
    _one_error_line(_invoke("eval-glue", "--glue-dir", other, "--out", out, "--resume"), r"RTE.*differ")
    assert_unchanged(out, before)
    again = _invoke("eval-glue", "--out", out, "--resume")
    assert again.exit_code == 0, again.output


# ------------------------------------------------------------------ folders that do not exist, the Hub, encodings


def test_predict_out_in_a_new_folder_makes_it(finetuned, tmp_path):
    result = _invoke("predict", finetuned, "--out", tmp_path / "x" / "y" / "p.jsonl", input="the film was good .\n")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "x" / "y" / "p.jsonl").read_text().splitlines()) == 1
    write(tmp_path / "file", "a file, not a folder")
    before = digest(tmp_path)
    _one_error_line(_invoke("predict", finetuned, "--out", tmp_path / "file" / "p.jsonl", input="good .\n"),
                    r"cannot make the folder .*file")
    assert_unchanged(tmp_path, before)


def test_recipes_copy_into_a_new_folder_makes_it(tmp_path):
    result = _invoke("recipes", "copy", "pretrain", tmp_path / "x" / "y.yaml")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x" / "y.yaml").read_text().startswith("#")
    write(tmp_path / "file", "a file, not a folder")
    _one_error_line(_invoke("recipes", "copy", "pretrain", tmp_path / "file" / "y.yaml"), r"cannot write")


def test_recipes_show_of_a_latin1_file_is_one_line(tmp_path):
    path = write(tmp_path / "r.yaml", "# caf\xe9\ncommand: pretrain\n".encode("latin-1"))
    _one_error_line(_invoke("recipes", "show", path), r"not UTF-8")


def _lora_run(folder: Path) -> Path:
    write(folder / "model" / "adapter_config.json", json.dumps({"peft_type": "LORA"}))
    write(folder / "model" / "adapter_model.safetensors", b"")
    return folder


def test_push_with_the_hub_unreachable_or_a_bad_repo_id_is_one_line(tmp_path, monkeypatch):
    import huggingface_hub

    run = tmp_path / "run"
    write(run / "model" / "config.json", "{}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    class TransportError(Exception):  # the shape of httpx's errors: not OSErrors
        pass

    class ConnectError(TransportError):
        pass

    def offline(*a, **k):
        raise ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", offline)
    _one_error_line(_invoke("push", run, "you/model"), r"cannot reach the Hub .*Name or service not known")
    for bad in ("bad repo!!", "a/b/c"):
        _one_error_line(_invoke("push", run, bad), r"is not a Hub repository id .*\. write it as NAME or OWNER/NAME")


def test_finetune_push_to_a_bad_repo_id_is_refused_before_training(tmp_path):
    _one_error_line(_invoke("finetune", "--task", "cls", "--push-to-hub", "bad repo!!", "--out", tmp_path / "r"),
                    "is not a Hub repository id")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ messages that point the right way


def test_a_lora_run_given_as_a_model_says_use_merged(tmp_path):
    run = _lora_run(tmp_path / "lora-run")
    line = _one_error_line(_invoke("probe", "similarity", "--model", run, "--out", tmp_path / "o"),
                           r"is a LoRA adapter run")
    assert "merged/" in line and "--merge" in line
    _one_error_line(_invoke("probe", "layers", "--model", run / "model", "--out", tmp_path / "o2"),
                    r"is a LoRA adapter run")


def test_a_glue_task_folder_without_dev_tsv_names_the_file(tmp_path):
    tsv(tmp_path / "glue" / "SST-2" / "train.tsv", ["sentence", "label"], [["good film", 1]])
    _one_error_line(_invoke("eval-glue", "--glue-dir", tmp_path / "glue", "--out", tmp_path / "o"),
                    r"SST-2/ lacks dev\.tsv")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, expect", [
    (["finetune", "--nonsense"], r"No such option: --nonsense\. see `bertctl finetune --help`"),
    (["predict", "run", "-b", "0"], r"--batch-size.*\. see `bertctl predict --help`"),
    (["predict", "run", "-b", "abc"], r"--batch-size.*\. see `bertctl predict --help`"),
    (["predict"], r"Missing argument"),
    (["--nonsense"], r"No such option: --nonsense"),
    (["probe", "similarity", "--shots", "1"], r"No such option: --shots"),
    (["runs", "list", "--nonsense"], r"No such option"),
])
def test_bad_option_values_are_one_error_line(argv, expect):
    _one_error_line(_invoke(*argv), expect)


def test_help_is_still_help():
    result = _invoke("finetune", "--help")
    assert result.exit_code == 0 and "--quiet" in result.stdout
    result = _invoke("probe")
    assert "similarity" in result.output and "error:" not in result.output
