"""Bad input through the real command line, one table: every row must end in exit code 2,
exactly one stderr line "error: <what is wrong>. <what to do>", no traceback, and every
file that was on disk before (recipes, data, earlier runs, checkpoints) byte-for-byte
unchanged afterwards.

Each row builds what it needs in its own folder (the working directory of the call) and
returns the argv; `{tiny}` is a 2-layer BERT with MiniLM's tokenizer, `{glue}` a small
GLUE folder. The commands run in-process through typer's CliRunner, as tests/conftest.py's
`cli` does, so a row costs what the command does before it fails (milliseconds for
recipe errors, about a second for a damaged checkpoint found on --resume).

Also here: a full disk (simulated with a file-size limit on a real command's process),
and the security rules through the commands: pickle weights only with allow_pickle=true,
remote code off by default, no eval/exec/shell/unsafe YAML anywhere in bertctl/, and
relative recipe paths resolved against the recipe's folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from .test_finetune import tiny  # noqa: F401  (session fixture)

TINY_PRETRAIN = ["data.world.n_docs=200", "model.hidden=32", "model.heads=2", "model.intermediate=64",
                 "model.layers=1", "model.max_length=32", "tokenizer.vocab_size=200", "train.batch_size=8",
                 "train.max_steps=4", "train.save_every=2", "train.precision=fp32", "eval.max_sequences=16"]
# the same for a corpus file or a checkpoint's tokenizer: World and tokenizer-training settings would do nothing
TINY_FILE_PRETRAIN = [a for a in TINY_PRETRAIN if not a.startswith(("data.world.", "tokenizer."))]
TINY_FINETUNE = ["model.max_length=32", "train.epochs=1", "train.batch_size=8", "train.precision=fp32"]


@dataclass
class Row:
    name: str
    expect: str  # regex the error line must match
    make: Callable[[Path, dict], list[str]]  # (folder, fixtures) -> argv


ROWS: list[Row] = []


def row(name: str, expect: str):
    def register(make):
        ROWS.append(Row(name, expect, make))
        return make

    return register


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def tsv(path: Path, header: list[str], rows: list[list]) -> Path:
    return write(path, "\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n")


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def sentiment_rows(n: int, labels=("positive", "negative")) -> list[list]:
    return [[f"the film number {i} was {'good' if i % 2 else 'bad'} .", labels[i % len(labels)]] for i in range(n)]


def pickle_model(folder: Path) -> Path:
    """A checkpoint with only pickle weights: must be refused unless allow_pickle is set."""
    write(folder / "config.json", json.dumps({"model_type": "bert", "vocab_size": 50, "hidden_size": 16,
                                              "num_hidden_layers": 1, "num_attention_heads": 2,
                                              "intermediate_size": 32}))
    write(folder / "pytorch_model.bin", b"\x80\x04 not loaded: pickle can run code")
    return folder


# ---------------------------------------------------------------------- recipes, CLI


@row("malformed YAML", r"recipe .*bad\.yaml line \d+, column \d+: malformed YAML.*\. fix the YAML syntax")
def _(d, fx):
    return ["pretrain", str(write(d / "bad.yaml", "command: pretrain\ntrain: [1, 2\nmodel: {\n"))]


@row("unknown key in a recipe file", r"trian: unknown key \(valid: .*train.*\)")
def _(d, fx):
    return ["pretrain", str(write(d / "typo.yaml", "command: pretrain\ntrian:\n  lr: 0.001\n"))]


@row("unknown key in an override", r"train\.lrr: unknown key \(valid: .*\blr\b")
def _(d, fx):
    return ["finetune", "--task", "cls", "train.lrr=0.1"]


@row("wrong type in an override", r"train\.batch_size: .*integer.*'abc'")
def _(d, fx):
    return ["pretrain", "train.batch_size=abc"]


@row("value out of range", r"train\.lr: .*greater than 0")
def _(d, fx):
    return ["finetune", "--task", "cls", "train.lr=-1"]


@row("recipe of another command", r"recipe pretrain\.yaml is for `bertctl pretrain`, not `bertctl finetune`")
def _(d, fx):
    return ["finetune", "pretrain"]


@row("recipe that is not UTF-8", r"recipe .*latin1\.yaml is not UTF-8 text")
def _(d, fx):
    return ["pretrain", str(write(d / "latin1.yaml", "command: pretrain\n# caf\xe9\n".encode("latin-1")))]


@row("no such recipe", r"no recipe named nosuch\. pass a YAML path or one of: .*pretrain")
def _(d, fx):
    return ["pretrain", "nosuch"]


@row("recipe that is a list", r"must be a mapping of keys to values, not list")
def _(d, fx):
    return ["prompt", str(write(d / "list.yaml", "- a\n- b\n"))]


@row("override after a stray word", r"unexpected argument 'extra'")
def _(d, fx):
    return ["pretrain", "train.lr=0.001", "extra"]


@row("recipes validate: no command key", r"has no `command:` key\. add e\.g\. `command: pretrain`")
def _(d, fx):
    return ["recipes", "validate", str(write(d / "nocmd.yaml", "train:\n  lr: 0.1\n"))]


@row("recipes copy onto an existing file", r"already exists\. choose another destination")
def _(d, fx):
    write(d / "pretrain.yaml", "# my own edited recipe\ncommand: pretrain\n")
    return ["recipes", "copy", "pretrain", str(d)]


@row("finetune: impossible combination of keys", r"data: value error, data\.split makes the dev set from train; leave data\.dev empty\. fix these keys")
def _(d, fx):
    return ["finetune", "--task", "cls", "data.split=0.2", f"data.dev={d / 'dev.tsv'}"]


@row("finetune: unknown task", r"unknown task 'summarize'\. use one of: cls")
def _(d, fx):
    return ["finetune", "--task", "summarize"]


# ---------------------------------------------------------------------- run folders, checkpoints


@row("existing run folder", r"run folder .*old-run already exists and is not empty\. pass --resume")
def _(d, fx):
    write(d / "old-run" / "metrics.json", '{"accuracy": 0.9}\n')
    write(d / "old-run" / "model" / "model.safetensors", b"weights of an earlier run")
    return ["finetune", "--task", "cls", "--out", str(d / "old-run")]


@row("--resume of a folder that does not exist", r"cannot resume: .*missing-run does not exist")
def _(d, fx):
    return ["pretrain", "--out", str(d / "missing-run"), "--resume"]


@row("--resume with a different recipe", r"the recipe differs from the one .* was started with")
def _(d, fx):
    write(d / "run" / "recipe.yaml", "model:\n  hidden: 999\n")
    write(d / "run" / "checkpoints" / "step-0000002" / "state.json", '{"step": 2}')
    return ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={fx['cache']}", "--out", str(d / "run"), "--resume"]


def _unfinish(run: Path) -> None:
    """Make a copy of a finished run look like one killed after its last checkpoint (a
    finished run resumed does nothing, so damage there would go unread)."""
    import shutil

    shutil.rmtree(run / "model")
    (run / "metrics.json").unlink()
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": "running"}))


def _pretrain_checkpoint(d: Path, fx: dict, damage: Callable[[Path], None]) -> list[str]:
    """A run folder whose newest checkpoint is damaged, resumed."""
    import shutil

    shutil.copytree(fx["pretrain_run"], d / "run")
    _unfinish(d / "run")
    damage(d / "run" / "checkpoints" / "step-0000004")
    return ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={fx['cache']}", "--out", str(d / "run"), "--resume"]


@row("truncated checkpoint weights", r"checkpoint .*step-0000004 is damaged .*\. delete .*step-0000004 to resume from "
                                     r"the previous checkpoint")
def _(d, fx):
    def truncate(ckpt):
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])

    return _pretrain_checkpoint(d, fx, truncate)


@row("corrupted checkpoint state", r"checkpoint .*step-0000004 is damaged")
def _(d, fx):
    return _pretrain_checkpoint(d, fx, lambda ckpt: (ckpt / "state.json").write_text('{"step": 4, "epo'))


@row("checkpoint of another model", r"checkpoint .*step-0000004 does not match this model .*parameters missing")
def _(d, fx):
    def replace(ckpt):
        import torch
        from safetensors.torch import save_file

        save_file({"other.weight": torch.zeros(2)}, str(ckpt / "model.safetensors"))

    return _pretrain_checkpoint(d, fx, replace)


@row("eval-glue --resume with another model", r"cannot resume .* with a different model(, train)? than it was started with\. rerun with the saved recipe")
def _(d, fx):
    write(d / "suite" / "recipe.yaml", "# bertctl eval-glue\ncommand: eval-glue\nmodel:\n  name_or_path: minilm\n")
    return ["eval-glue", "--model", str(fx["tiny"]), "--glue-dir", str(fx["glue"]), "--out", str(d / "suite"),
            "--resume"]


# ---------------------------------------------------------------------- models


@row("pretrain: model.init is not a model", r"empty-folder is not a model .*\. pass a Hugging Face model folder")
def _(d, fx):
    (d / "empty-folder").mkdir()
    return ["pretrain", f"model.init={d / 'empty-folder'}", f"data.cache_dir={fx['cache']}"]


@row("pretrain: hub id while offline", r"'bert-base-uncased' is neither a local folder nor reachable: HF_HUB_OFFLINE")
def _(d, fx):
    return ["pretrain", *TINY_FILE_PRETRAIN, "model.init=bert-base-uncased", f"data.cache_dir={fx['cache']}"]


@row("pretrain: pickle-only checkpoint", r"holds only pickle weights .*allow_pickle=true")
def _(d, fx):
    return ["pretrain", *TINY_FILE_PRETRAIN, f"model.init={pickle_model(d / 'pickled')}", f"data.cache_dir={fx['cache']}"]


@row("finetune: model path that is not a model", r"not-a-model is not a model")
def _(d, fx):
    write(d / "not-a-model" / "notes.txt", "just notes\n")
    return ["finetune", "--task", "cls", f"model.name_or_path={d / 'not-a-model'}"]


@row("finetune: hub id while offline", r"'someone/bert-tiny' is neither a local folder nor reachable: HF_HUB_OFFLINE")
def _(d, fx):
    return ["finetune", "--task", "cls", "model.name_or_path=someone/bert-tiny"]


@row("finetune: pickle-only checkpoint", r"holds only pickle weights")
def _(d, fx):
    return ["finetune", "--task", "cls", f"model.name_or_path={pickle_model(d / 'pickled')}"]


@row("finetune: impossible LoRA target module", r"LoRA target module\(s\) no_such_module not found .*available linear modules: .*query.*\. set lora\.target_modules")
def _(d, fx):
    return ["finetune", "--task", "cls", f"model.name_or_path={fx['tiny']}", "method=lora",
            "lora.target_modules=[no_such_module]", "data.world.train=16", "data.world.dev=8", *TINY_FINETUNE]


@row("finetune --eval-only on a folder that is no run", r"has no model/ \(the run did not finish\)")
def _(d, fx):
    (d / "nothing").mkdir()
    return ["finetune", "--eval-only", str(d / "nothing")]


@row("eval-glue: pickle-only checkpoint", r"holds only pickle weights")
def _(d, fx):
    return ["eval-glue", "--model", str(pickle_model(d / "pickled")), "--glue-dir", str(fx["glue"]), "--tasks",
            "RTE", "--out", str(d / "suite")]


@row("probe: model path that is not a model", r"empty is not a model")
def _(d, fx):
    (d / "empty").mkdir()
    return ["probe", "similarity", "--model", str(d / "empty")]


@row("probe: pickle-only checkpoint", r"holds only pickle weights")
def _(d, fx):
    return ["probe", "layers", "--model", str(pickle_model(d / "pickled"))]


@row("probe: recipe for another subcommand", r"is for `bertctl probe similarity`, not `probe layers`")
def _(d, fx):
    return ["probe", "layers", str(write(d / "sim.yaml", "command: probe\nsubcommand: similarity\n"))]


@row("probe checkpoints: not a pretrain run", r"not-a-run is not a `bertctl pretrain` run folder with checkpoints/")
def _(d, fx):
    write(d / "not-a-run" / "notes.txt", "x\n")
    return ["probe", "checkpoints", "--model", str(d / "not-a-run")]


@row("prompt: model path that is not a model", r"empty is not a model")
def _(d, fx):
    (d / "empty").mkdir()
    return ["prompt", "--model", str(d / "empty")]


@row("prompt: pickle-only checkpoint", r"holds only pickle weights")
def _(d, fx):
    return ["prompt", "--model", str(pickle_model(d / "pickled"))]


@row("prompt: hub id while offline", r"'someone/gpt-tiny' is neither a local folder nor reachable: HF_HUB_OFFLINE")
def _(d, fx):
    return ["prompt", "--model", "someone/gpt-tiny"]


@row("prompt: shots that are not numbers", r"--shots '1,a' is not a list of whole numbers\. write e\.g\.")
def _(d, fx):
    return ["prompt", "--shots", "1,a"]


# ---------------------------------------------------------------------- data files


@row("pretrain: corpus file missing", r"corpus .*missing\.txt does not exist\. check data\.source")
def _(d, fx):
    return ["pretrain", f"data.source={d / 'missing.txt'}", f"data.cache_dir={fx['cache']}"]


@row("pretrain: empty corpus", r"empty\.txt holds no text\. check the path")
def _(d, fx):
    return ["pretrain", *TINY_FILE_PRETRAIN, f"data.source={write(d / 'empty.txt', '')}", f"data.cache_dir={fx['cache']}"]


@row("pretrain: corpus that is not UTF-8", r"latin1\.txt is not valid UTF-8 text \(line 1\)\. re-encode")
def _(d, fx):
    text = ("the caf\xe9 was open .\nwe sat down .\n\n" * 50).encode("latin-1")
    return ["pretrain", *TINY_FILE_PRETRAIN, f"data.source={write(d / 'latin1.txt', text)}", f"data.cache_dir={fx['cache']}"]


@row("pretrain: JSON lines without the text field", r"line 1 has no 'text' field \(has: body\)\. set data\.text_field")
def _(d, fx):
    return ["pretrain", *TINY_FILE_PRETRAIN, f"data.source={jsonl(d / 'docs.jsonl', [{'body': 'a b c .'}] * 20)}",
            f"data.cache_dir={fx['cache']}"]


@row("pretrain: malformed JSON line", r"line 2 is not valid JSON")
def _(d, fx):
    docs = write(d / "docs.jsonl", '{"text": "a ."}\n{oops\n')
    return ["pretrain", *TINY_FILE_PRETRAIN, f"data.source={docs}", f"data.cache_dir={fx['cache']}"]


@row("pretrain: dataset id while offline", r"cannot load the dataset 'someone/no-such-corpus'")
def _(d, fx):
    return ["pretrain", *TINY_FILE_PRETRAIN, "data.source=someone/no-such-corpus", f"data.cache_dir={fx['cache']}"]


@row("finetune: train file missing", r"missing\.tsv: no such file\. check the path")
def _(d, fx):
    return ["finetune", "--task", "cls", f"data.train={d / 'missing.tsv'}", f"data.dev={d / 'missing.tsv'}"]


@row("finetune: empty train file", r"train\.tsv is empty\. check the path")
def _(d, fx):
    return ["finetune", "--task", "cls", f"data.train={write(d / 'train.tsv', '')}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], sentiment_rows(4))}"]


@row("finetune: missing column", r"train\.tsv: no column 'text' \(data\.columns\.text\); available columns: 'sentence', 'label'\. set data\.columns\.text")
def _(d, fx):
    rows = sentiment_rows(8)
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], rows)}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], rows)}", "data.columns.text=text"]


@row("finetune: mixed label types", r"label column mixes numbers .* and text")
def _(d, fx):
    rows = sentiment_rows(8, labels=("positive", "1"))
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], rows)}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], sentiment_rows(4))}"]


@row("finetune: dev label not in train", r"dev\.tsv: label\(s\) 'neutral' do not occur in the training data")
def _(d, fx):
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], sentiment_rows(8))}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], sentiment_rows(4, ('positive', 'neutral')))}"]


@row("finetune: regression label that is not a number", r"label column mixes numbers .* and text \(1 rows, e\.g\. 'high'\)")
def _(d, fx):
    rows = [[f"a man plays {i} .", f"a person plays {i} .", "high" if i == 3 else i % 5] for i in range(8)]
    return ["finetune", "--task", "regression",
            f"data.train={tsv(d / 'train.tsv', ['sentence1', 'sentence2', 'label'], rows)}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence1', 'sentence2', 'label'], rows[:4])}"]


@row("finetune: tags and tokens of different lengths", r"train\.jsonl: sentence 3 has 2 words but 1 tags\. give exactly one tag")
def _(d, fx):
    rows = [{"tokens": ["the", "cat", "sat"], "tags": ["DET", "NOUN", "VERB"]}] * 6
    bad = rows[:2] + [{"tokens": ["the", "dog"], "tags": ["DET"]}]
    return ["finetune", "--task", "pos", f"data.train={jsonl(d / 'train.jsonl', bad)}",
            f"data.dev={jsonl(d / 'dev.jsonl', rows)}"]


@row("finetune: QA answer outside its context", r"question q2: answer 'Paris' is not at answer_start 90 in its context .*\. fix answer_start")
def _(d, fx):
    good = {"id": "q1", "context": "Ada lives in Paris .", "question": "Where does Ada live ?",
            "answers": {"text": ["Paris"], "answer_start": [13]}}
    bad = {**good, "id": "q2", "answers": {"text": ["Paris"], "answer_start": [90]}}
    return ["finetune", "--task", "qa", f"data.train={jsonl(d / 'train.jsonl', [good, bad])}",
            f"data.dev={jsonl(d / 'dev.jsonl', [good])}"]


@row("finetune: file that is not UTF-8", r"train\.tsv is not valid UTF-8 text \(line 2\)\. re-encode")
def _(d, fx):
    train = write(d / "train.tsv", ("sentence\tlabel\n" + "caf\xe9 au lait .\tpositive\n" * 8).encode("latin-1"))
    return ["finetune", "--task", "cls", f"data.train={train}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], sentiment_rows(4))}"]


@row("finetune: dataset id while offline", r"cannot load dataset someone/no-such-set.*HF_HUB_OFFLINE is set")
def _(d, fx):
    return ["finetune", "--task", "cls", "data.hf.name=someone/no-such-set"]


@row("eval-glue: no GLUE data in the folder", r"empty-glue holds no GLUE task .*\. Pass --glue-dir")
def _(d, fx):
    (d / "empty-glue").mkdir()
    return ["eval-glue", "--glue-dir", str(d / "empty-glue"), "--out", str(d / "suite")]


@row("eval-glue: unknown task", r"unknown glue task 'foo' \(valid: cola")
def _(d, fx):
    return ["eval-glue", "--glue-dir", str(fx["glue"]), "--tasks", "FOO"]


@row("prompt: evaluation file missing", r"missing\.csv: no such file\. check the path")
def _(d, fx):
    return ["prompt", f"data.eval={d / 'missing.csv'}", "--task", "mine"]


@row("probe: sentence file missing", r"sentence file .*missing\.txt does not exist\. check similarity\.file")
def _(d, fx):
    return ["probe", "similarity", f"similarity.file={d / 'missing.txt'}", "--model", str(fx["tiny"])]


# ---------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def fixtures(tiny, tmp_path_factory):
    """What rows share: the tiny model, a token cache, a small GLUE folder, and a finished
    4-step pretrain run whose checkpoints rows copy and damage."""
    from bertctl.cli import app
    from typer.testing import CliRunner

    from .test_glue import make_glue

    root = tmp_path_factory.mktemp("bad-inputs")
    glue = make_glue(root / "glue", n=12, tasks=["RTE", "SST-2"])
    run = root / "pretrain-run"
    result = CliRunner().invoke(app, ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={root / 'cache'}", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "step-0000004" / "state.json").exists()
    return {"tiny": tiny, "cache": root / "cache", "glue": glue, "pretrain_run": run}


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_one_error_line(result, expect: str) -> str:
    """Exit code 2, one 'error:' line with a fix, no traceback; returns the line."""
    output = (result.stdout or "") + (result.stderr or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{output[-2000:]}")
    assert "Traceback" not in output, output[-2000:]
    assert result.exit_code == 2, f"exit code {result.exit_code}: {output[-2000:]}"
    # stderr may hold the progress lines a command logged before it failed (pretrain logs
    # there, keeping stdout for results); the error is one line, and the last
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("error: "), lines
    assert re.search(expect, errors[0]), f"{errors[0]!r} does not match {expect!r}"
    message = errors[0][len("error: "):]
    assert re.search(r"\. \S", message), f"no fix after the problem: {message!r}"  # "<problem>. <fix>"
    return errors[0]


def test_the_table_is_large_enough():
    assert len(ROWS) >= 30 and len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("case", ROWS, ids=[r.name for r in ROWS])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(case: Row, fixtures, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bertctl.cli import app

    monkeypatch.chdir(tmp_path)  # default run folders (runs/...) land here, and relative paths resolve here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = case.make(tmp_path, fixtures)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, argv)
    line = check_one_error_line(result, case.expect)
    if os.environ.get("BERTCTL_SHOW_ERRORS"):
        print(f"\n{case.name}: {line}")
    after = snapshot(tmp_path)
    changed = [name for name, data in before.items()
               if not (after.get(name) == data or (name.endswith("log.txt") and after.get(name, b"").startswith(data)))]
    assert not changed, f"overwritten or lost: {changed}"


# ---------------------------------------------------------------------- a full disk


def test_disk_full_is_one_line_loses_nothing_and_resume_then_finishes(tmp_path):
    """The disk fills while a resumed pretrain writes its next checkpoint (simulated with a
    file-size limit on the real command's process, so safetensors' own writes fail), and
    on a first run while the corpus is written into the cache."""
    from bertctl.runs import Run

    from .test_faults import Cli, _final, _step_log

    cache = tmp_path / "cache"
    command = ["pretrain", *TINY_PRETRAIN, "train.max_steps=8", f"data.cache_dir={cache}"]
    ref = Cli([*command, "--out", str(tmp_path / "reference")], tmp_path, tmp_path / "ref.log", {})
    assert ref.wait() == 0, ref.output()[-3000:]

    # a run that stopped after its step-4 checkpoint: the reference, cut back to step 4
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tmp_path / "reference", run)
    for name in ("checkpoints/step-0000006", "checkpoints/step-0000008", "model"):
        shutil.rmtree(run / name)
    (run / "metrics.json").unlink()
    rows = [line for line in (run / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= 4]
    (run / "metrics.jsonl").write_text("".join(r + "\n" for r in rows))
    optimizer_bytes = (run / "checkpoints" / "step-0000004" / "optimizer.safetensors").stat().st_size
    before = snapshot(run)

    full = Cli([*command, "--out", str(run), "--resume"], tmp_path, tmp_path / "full.log", {},
               max_file_bytes=optimizer_bytes // 2)  # the model file fits, the optimizer state does not
    assert full.wait() == 2, full.output()[-3000:]
    errors = [line for line in full.stderr().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in full.output(), full.output()[-3000:]
    assert re.search(r"error: disk full: file too large .*\. free some space .*--resume", errors[0]), errors[0]
    after = snapshot(run)
    lost = [name for name, data in before.items()
            if name != "metrics.jsonl" and not (after.get(name) == data or
                                               (name == "log.txt" and after[name].startswith(data)))]
    assert not lost, lost
    assert [p.name for p in Run(run, "x").checkpoints()] == ["step-0000002", "step-0000004"]

    # space is back: the same command with --resume finishes as if nothing happened
    again = Cli([*command, "--out", str(run), "--resume"], tmp_path, tmp_path / "again.log", {})
    assert again.wait() == 0, again.output()[-3000:]
    assert _final(run) == _final(tmp_path / "reference") and _step_log(run) == _step_log(tmp_path / "reference")

    # a first run whose corpus does not fit in the cache
    first = Cli([*_with_cache(command, tmp_path / "cache2"), "--out", str(tmp_path / "first")], tmp_path,
                tmp_path / "first.log", {}, max_file_bytes=4096)
    assert first.wait() == 2, first.output()[-3000:]
    errors = [line for line in first.stderr().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: disk full"), first.output()[-3000:]
    assert "Traceback" not in first.output()


def _with_cache(command: list[str], cache: Path) -> list[str]:
    return [a for a in command if not a.startswith("data.cache_dir=")] + [f"data.cache_dir={cache}"]


# ---------------------------------------------------------------------- security


def _pickled_copy(model_dir: Path, dest: Path, model_cls: str = "AutoModel") -> Path:
    """The same model with its weights as a pickle (pytorch_model.bin) instead of safetensors."""
    import shutil

    import torch
    import transformers

    dest.mkdir(parents=True)
    for f in model_dir.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy(f, dest / f.name)
    model = getattr(transformers, model_cls).from_pretrained(str(model_dir))
    torch.save(model.state_dict(), dest / "pytorch_model.bin")
    return dest


def _ok(result) -> None:
    assert result.exit_code == 0, (result.stdout or "")[-1500:] + (result.stderr or "")[-1500:] + repr(result.exception)


@pytest.mark.slow
def test_pickle_weights_load_only_when_the_recipe_allows_it(fixtures, tmp_path, monkeypatch):
    """Each command refuses pickle weights (see the table) and loads them with allow_pickle=true."""
    from typer.testing import CliRunner

    from bertctl.cli import app

    monkeypatch.chdir(tmp_path)
    bert = _pickled_copy(fixtures["tiny"], tmp_path / "bert-pickle")
    run = CliRunner().invoke
    _ok(run(app, ["pretrain", *TINY_FILE_PRETRAIN, f"data.cache_dir={fixtures['cache']}", f"model.init={bert}",
                  "model.allow_pickle=true", "objective.pairs=none", "train.max_steps=1", "train.save_every=1",
                  "train.batch_size=4", "--out", str(tmp_path / "pretrain")]))
    _ok(run(app, ["finetune", "--task", "cls", f"model.name_or_path={bert}", "model.allow_pickle=true",
                  "data.world.train=16", "data.world.dev=8", *TINY_FINETUNE, "--out", str(tmp_path / "finetune")]))
    _ok(run(app, ["probe", "similarity", "--model", str(bert), "model.allow_pickle=true",
                  "similarity.n_per_sense=2", "--out", str(tmp_path / "probe")]))

    # a causal LM for `prompt`: GPT-2 shaped, MiniLM's tokenizer
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(str(fixtures["tiny"]))
    gpt = tmp_path / "gpt"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=512)).save_pretrained(gpt)
    tok.save_pretrained(gpt)
    gpt_pickle = _pickled_copy(gpt, tmp_path / "gpt-pickle", "AutoModelForCausalLM")
    result = run(app, ["prompt", "--model", str(gpt_pickle), "--shots", "0", "data.limit=4", "data.pool_size=4",
                       "--out", str(tmp_path / "prompt")])
    assert result.exit_code == 2 and "allow_pickle" in result.stderr
    # the refused start left only its recipe/log in --out: the corrected command may reuse the folder
    _ok(run(app, ["prompt", "--model", str(gpt_pickle), "--shots", "0", "data.limit=4", "data.pool_size=4",
                  "model.allow_pickle=true", "--out", str(tmp_path / "prompt")]))


def test_every_command_keeps_remote_code_and_pickle_off_by_default():
    from bertctl.recipe import schema_for

    for command in ("pretrain", "finetune", "eval-glue", "probe", "prompt"):
        model = schema_for(command)().model
        assert model.trust_remote_code is False and model.allow_pickle is False, command


def test_the_code_never_evaluates_or_shells_out():
    """No recipe string can reach eval/exec or a shell, YAML is only safe_load-ed, weights
    never go through pickle, remote code is never forced on."""
    root = Path(__file__).resolve().parents[1] / "bertctl"
    banned = re.compile(r"(?<![\w.])(eval|exec|compile)\(|shell\s*=\s*True|os\.(system|popen)|subprocess|"
                        r"yaml\.(load|unsafe_load|full_load)\(|pickle\.loads?\(|torch\.load\(|trust_remote_code\s*=\s*True")
    found = [f"{p.relative_to(root)}:{n}: {line.strip()}" for p in sorted(root.rglob("*.py"))
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if banned.search(line)]
    assert not found, found


def test_relative_paths_in_a_recipe_resolve_against_its_folder(fixtures, tmp_path, monkeypatch):
    """A recipe's `data.source: corpus.txt` is the file next to the recipe, whatever the cwd."""
    from typer.testing import CliRunner

    from bertctl.cli import app

    folder = tmp_path / "project"
    write(folder / "corpus.txt", "caf\xe9 .\n".encode("latin-1"))  # unreadable: the error names the file it read
    write(folder / "recipe.yaml", "command: pretrain\ndata:\n  source: corpus.txt\n")
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "elsewhere" / "corpus.txt", "a decoy in the working directory .\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = CliRunner().invoke(app, ["pretrain", str(folder / "recipe.yaml"), f"data.cache_dir={fixtures['cache']}"])
    line = check_one_error_line(result, r"is not valid UTF-8")
    assert str(folder / "corpus.txt") in line


def test_a_folder_named_like_a_builtin_recipe_does_not_shadow_it(cli, tmp_path, monkeypatch):
    """`runs/` holds folders like pretrain-..., and a user may well have ./prompt or ./pretrain."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pretrain").mkdir()
    code, out, err = cli("recipes", "show", "pretrain")
    assert code == 0 and "command: pretrain" in out, err
    code, _, err = cli("pretrain", "train.batch_size=abc")  # the default recipe, found past ./pretrain
    assert code == 2 and "recipe pretrain.yaml (with overrides): train.batch_size" in err
