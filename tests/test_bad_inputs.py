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

from .helpers import TINY_PRETRAIN, sentiment_rows, tsv, write


# the same for a corpus file or a checkpoint's tokenizer: World and tokenizer-training settings would do nothing
TINY_FILE_PRETRAIN = [a for a in TINY_PRETRAIN if not a.startswith(("data.world.", "tokenizer."))]
TINY_FINETUNE = ["model.max_length=32", "train.epochs=1", "train.batch_size=8", "train.precision=fp32"]


@dataclass
class Row:
    name: str
    expect: str  # regex the error line must match
    make: Callable[[Path, dict], list[str]]  # (folder, fixtures) -> argv
    env: Callable[[Path], dict] | None = None  # (folder) -> environment variables for the call


ROWS: list[Row] = []


def row(name: str, expect: str, env: Callable[[Path], dict] | None = None):
    def register(make):
        ROWS.append(Row(name, expect, make, env))
        return make

    return register


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


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


# ---------------------------------------------------------------------- issue 12: run folders


FT_DATA = "ft-data"  # the finished finetune run of the fixtures trained on these files


def _ft_argv(d: Path, fx: dict, *extra: str) -> list[str]:
    """The command the fixture's finetune run was made with, its data files under d."""
    return ["finetune", "--task", "cls", f"model.name_or_path={fx['tiny']}", f"data.train={d / FT_DATA / 'train.tsv'}",
            f"data.dev={d / FT_DATA / 'dev.tsv'}", *TINY_FINETUNE, *extra]


def _ft_copy(d: Path, fx: dict, finished: bool = False) -> Path:
    """A copy of the fixtures' finetune run (and its data) under d, as if it had been made
    there: paths in recipe.yaml and run.json point at d's copies, whose fingerprints hold."""
    import shutil

    from bertctl.runs import fingerprint

    shutil.copytree(fx["finetune_data"], d / FT_DATA)
    run = d / "ft-run"
    shutil.copytree(fx["finetune_run"], run)
    for name in ("recipe.yaml", "run.json"):
        text = (run / name).read_text().replace(str(fx["finetune_data"]), str(d / FT_DATA))
        (run / name).write_text(text)
    record = json.loads((run / "run.json").read_text())
    record["inputs"] = {k: fingerprint(Path(v["path"])) for k, v in record["inputs"].items()}
    (run / "run.json").write_text(json.dumps(record))
    if not finished:
        _unfinish(run)
    return run


_HELD_FDS: list[int] = []  # locks rows hold for the length of their command (released by the test)


def _hold_lock(folder: Path, command: str = "pretrain") -> None:
    """Another live command holding the folder's lock (this process, through another file)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".bertctl.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, json.dumps({"pid": 4242, "host": "elsewhere", "command": command, "since": "now"}).encode(), 0)
    _HELD_FDS.append(fd)


@row("finetune --resume with another --task", r"the recipe differs from the one .*ft-run was started with \(in .*task.*\)\. resume with the same")
def _(d, fx):
    run = _ft_copy(d, fx)
    return [a if a != "cls" else "nli" for a in _ft_argv(d, fx, "--out", str(run), "--resume")]


@row("finetune --resume with another override", r"the recipe differs .* \(in train\.lr\)")
def _(d, fx):
    run = _ft_copy(d, fx)
    return _ft_argv(d, fx, "train.lr=0.5", "--out", str(run), "--resume")


@row("finetune --resume into a pretrain run folder", r"cannot resume .*run: it is a `bertctl pretrain` run, not a finetune run\. continue it with `bertctl pretrain")
def _(d, fx):
    import shutil

    shutil.copytree(fx["pretrain_run"], d / "run")
    _unfinish(d / "run")
    return ["finetune", "--task", "cls", f"model.name_or_path={fx['tiny']}", "--out", str(d / "run"), "--resume"]


@row("pretrain --resume into a finetune run folder", r"it is a `bertctl finetune` run, not a pretrain run")
def _(d, fx):
    run = _ft_copy(d, fx)
    return ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={fx['cache']}", "--out", str(run), "--resume"]


@row("finetune --resume of a folder without run.json into another command", r"it is a `bertctl pretrain` run")
def _(d, fx):
    write(d / "old" / "recipe.yaml", "command: pretrain\ntrain:\n  max_steps: 4\n")
    return ["finetune", "--task", "cls", "--out", str(d / "old"), "--resume"]


@row("second command on a folder in use (--resume)", r"run folder .*busy is in use by `bertctl pretrain`, pid 4242 on elsewhere.*\. wait for that command to finish, or choose another --out")
def _(d, fx):
    _hold_lock(d / "busy")
    return ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={fx['cache']}", "--out", str(d / "busy"), "--resume"]


@row("second command on a folder in use (new run)", r"busy is in use by `bertctl finetune`")
def _(d, fx):
    _hold_lock(d / "busy", "finetune")
    write(d / "busy" / "log.txt", "2026-01-01T00:00:00 started\n")
    return ["finetune", "--task", "cls", "--out", str(d / "busy")]


@row("second command on a finished run in use", r"ft-run is in use by")
def _(d, fx):
    run = _ft_copy(d, fx, finished=True)
    _hold_lock(run, "finetune")
    return _ft_argv(d, fx, "--out", str(run), "--resume")


@row("finetune --resume after the training file changed", r"cannot resume .*ft-run: input data\.train \(.*train\.tsv: .*\) changed since the run started\. restore the original")
def _(d, fx):
    run = _ft_copy(d, fx)
    with open(d / FT_DATA / "train.tsv", "a") as f:
        f.write("one more row .\tpositive\n")
    return _ft_argv(d, fx, "--out", str(run), "--resume")


@row("finetune --resume after the dev file was edited in place", r"input data\.dev \(.*dev\.tsv: same size, other content\) changed")
def _(d, fx):
    run = _ft_copy(d, fx)
    dev = d / FT_DATA / "dev.tsv"
    dev.write_text(dev.read_text().replace("good", "gooD"))
    return _ft_argv(d, fx, "--out", str(run), "--resume")


@row("finetune --resume after the dev file was deleted", r"input data\.dev \(.*dev\.tsv: gone\) changed")
def _(d, fx):
    run = _ft_copy(d, fx)
    (d / FT_DATA / "dev.tsv").unlink()
    return _ft_argv(d, fx, "--out", str(run), "--resume")


@row("--resume of a file", r"cannot resume: .*notes\.txt is a file\. pass the --out folder")
def _(d, fx):
    return ["pretrain", "--out", str(write(d / "notes.txt", "x\n")), "--resume"]


@row("--out that is a file", r"run folder .*notes\.txt is a file\. choose another --out")
def _(d, fx):
    return ["finetune", "--task", "cls", "--out", str(write(d / "notes.txt", "x\n"))]


@row("pretrain --resume without --out", r"--resume needs the run folder\. pass --out runs/pretrain-")
def _(d, fx):
    return ["pretrain", "--resume"]


@row("finetune --resume without --out", r"--resume needs the run folder\. pass --out runs/finetune-")
def _(d, fx):
    return ["finetune", "--task", "cls", "--resume"]


@row("pretrain --resume: checkpoint of a model of another shape", r"checkpoint .*step-0000004 holds a model of another shape \(\d+ parameters differ, e\.g\. .*\)\. resume with the recipe the run was started with")
def _(d, fx):
    def reshape(ckpt):
        import torch
        from safetensors.torch import load_file, save_file

        weights = load_file(str(ckpt / "model.safetensors"))
        name = next(n for n, t in weights.items() if t.ndim == 2)
        weights[name] = torch.zeros(weights[name].shape[0] + 3, weights[name].shape[1])
        save_file(weights, str(ckpt / "model.safetensors"))

    return _pretrain_checkpoint(d, fx, reshape)


# ---------------------------------------------------------------------- issue 12: strict recipes


@row("duplicate key in a recipe", r"recipe .*dup\.yaml line 4: key 'lr' is given twice \(first on line 3\)\. keep one of them")
def _(d, fx):
    return ["pretrain", str(write(d / "dup.yaml", "command: pretrain\ntrain:\n  lr: 0.001\n  lr: 0.1\n"))]


@row("duplicate section in a recipe", r"line 5: key 'train' is given twice \(first on line 2\)")
def _(d, fx):
    return ["pretrain", str(write(d / "dup.yaml", "command: pretrain\ntrain:\n  lr: 0.001\nmodel: {}\ntrain:\n  max_steps: 3\n"))]


@row("recipes validate: duplicate key", r"key 'task' is given twice")
def _(d, fx):
    return ["recipes", "validate", str(write(d / "dup.yaml", "command: finetune\ntask: cls\ntask: nli\n"))]


@row("a boolean where a number belongs", r"train\.batch_size: input should be a valid integer, got True \(a boolean is not a number")
def _(d, fx):
    return ["pretrain", "train.batch_size=true"]


@row("a fractional number where a whole one belongs", r"train\.max_steps: input should be a valid integer, got 10\.5")
def _(d, fx):
    return ["pretrain", "train.max_steps=10.5"]


@row("yes/no where a boolean belongs", r"merge: input should be a valid boolean, got 'yes' \(write true or false\)")
def _(d, fx):
    return ["finetune", "--task", "cls", "method=lora", "merge=yes"]


@row("a number where text belongs, in a file", r"data\.columns\.label: input should be a valid string, got 1 \(YAML reads that as a number: quote it")
def _(d, fx):
    return ["finetune", str(write(d / "cols.yaml", "command: finetune\ndata:\n  columns:\n    label: 1\n"))]


@row("a boolean where text belongs, in a file", r"model\.name_or_path: input should be a valid string, got True \(YAML reads that as a boolean")
def _(d, fx):
    return ["finetune", str(write(d / "m.yaml", "command: finetune\nmodel:\n  name_or_path: true\n"))]


@row("quoted text where a number belongs", r"train\.lr: input should be a valid number, got '0\.1' \(text is not a number: write it without quotes\)")
def _(d, fx):
    return ["pretrain", str(write(d / "lr.yaml", "command: pretrain\ntrain:\n  lr: '0.1'\n"))]


@row("a number for a choice", r"train\.precision: input should be 'auto', 'bf16', 'fp32' or 'fp16', got 16")
def _(d, fx):
    return ["pretrain", "train.precision=16"]


@row("a list where a number belongs", r"train\.lr: input should be a valid number, got \[1, 2\]")
def _(d, fx):
    return ["pretrain", "train.lr=[1, 2]"]


@row("a non-name key in a recipe", r"recipe .*keys\.yaml: key 1 is a int, not a name\. recipe keys are names")
def _(d, fx):
    return ["pretrain", str(write(d / "keys.yaml", "command: pretrain\ntrain:\n  1: 2\n"))]


@row("a recipe of self-referencing aliases", r"expands to more than 100,000 values \(YAML aliases\?\)")
def _(d, fx):
    return ["pretrain", str(write(d / "loop.yaml", "command: pretrain\ntrain: &a [*a]\n"))]


@row("a recipe of exponential aliases", r"expands to more than 100,000 values")
def _(d, fx):
    lines = ["command: pretrain", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    return ["pretrain", str(write(d / "laughs.yaml", "\n".join(lines) + "\n"))]


@row("a folder named like a recipe file", r"cannot read recipe .*folder\.yaml \(Is a directory\)\. pass a readable \.yaml file")
def _(d, fx):
    (d / "folder.yaml").mkdir()
    return ["pretrain", str(d / "folder.yaml")]


@row("override without '='", r"'train\.max_steps' looks like an override without '='\. write overrides as key=value, e\.g\. train\.max_steps=VALUE")
def _(d, fx):
    return ["pretrain", "train.max_steps", "50"]


@row("override without '=' after a recipe", r"'model\.layers' looks like an override without '='")
def _(d, fx):
    return ["finetune", "finetune_cls", "model.layers"]


@row("override with an empty key part", r"override 'train\.\.lr=1' has an empty key")
def _(d, fx):
    return ["pretrain", "train..lr=1"]


@row("override into a value", r"override 'train\.lr\.x=1': lr is a value, not a section\. set train\.lr directly")
def _(d, fx):
    return ["pretrain", "train.lr.x=1"]


@row("unknown top-level key", r"colour: unknown key \(valid: .*train")
def _(d, fx):
    return ["finetune", "--task", "cls", "colour=blue"]


@row("tab-indented recipe", r"malformed YAML")
def _(d, fx):
    return ["pretrain", str(write(d / "tabs.yaml", "command: pretrain\ntrain:\n\tlr: 0.1\n"))]


@row("pretrain given a finetune recipe", r"recipe finetune_cls\.yaml is for `bertctl finetune`, not `bertctl pretrain`")
def _(d, fx):
    return ["pretrain", "finetune_cls"]


@row("recipes show: no such recipe", r"no recipe named nosuch")
def _(d, fx):
    return ["recipes", "show", "nosuch"]


@row("recipes validate: wrong type", r"train\.max_steps: input should be a valid integer, got 'ten'")
def _(d, fx):
    return ["recipes", "validate", str(write(d / "t.yaml", "command: pretrain\ntrain:\n  max_steps: ten\n"))]


# ---------------------------------------------------------------------- issue 12: settings that do nothing


@row("finetune --merge with full fine-tuning", r"merge would do nothing here: method=full has no adapter to merge.*\. drop it")
def _(d, fx):
    return ["finetune", "--task", "cls", "--merge"]


@row("finetune lora.* with full fine-tuning", r"lora\.r would do nothing here: method=full trains no adapter")
def _(d, fx):
    return ["finetune", "--task", "cls", "lora.r=4"]


@row("finetune quant.* without QLoRA", r"quant\.bits would do nothing here: method=lora quantises nothing")
def _(d, fx):
    return ["finetune", "--task", "cls", "method=lora", "quant.bits=8"]


@row("finetune qa.* on a classification task", r"qa\.doc_stride would do nothing here: task cls is not question answering")
def _(d, fx):
    return ["finetune", "--task", "cls", "qa.doc_stride=32"]


@row("finetune dna.* on another task", r"dna\.kmer would do nothing here: task nli is not dna")
def _(d, fx):
    return ["finetune", "--task", "nli", "dna.kmer=3"]


@row("finetune data.world.* with data files", r"data\.world\.train would do nothing here: data comes from files")
def _(d, fx):
    rows = sentiment_rows(8)
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], rows)}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], rows)}", "data.world.train=50"]


@row("finetune: several dead settings at once", r"lora\.alpha would do nothing here: .* \(so would dna\.kmer\)")
def _(d, fx):
    return ["finetune", "--task", "cls", "lora.alpha=4", "dna.kmer=2"]


@row("pretrain span settings without span masking", r"objective\.span_p would do nothing here: only masking=span draws spans \(masking=token\)")
def _(d, fx):
    return ["pretrain", "objective.span_p=0.3"]


@row("pretrain masking settings for a causal LM", r"objective\.masking, objective\.mask_rate would do nothing here: a causal LM masks nothing")
def _(d, fx):
    return ["pretrain", "objective.kind=causal", "objective.pairs=none", "objective.masking=span", "objective.mask_rate=0.3"]


@row("pretrain short_seq_prob without pairs", r"objective\.short_seq_prob would do nothing here: pairs=none")
def _(d, fx):
    return ["pretrain", "objective.pairs=none", "objective.short_seq_prob=0.5"]


@row("pretrain World settings with a corpus file", r"data\.world\.n_docs would do nothing here: data\.source is set")
def _(d, fx):
    return ["pretrain", *TINY_PRETRAIN, f"data.source={write(d / 'c.txt', 'a b .' * 5)}"]


@row("pretrain tokenizer settings with a reused tokenizer", r"tokenizer\.vocab_size would do nothing here: the tokenizer of minilm is reused, not trained")
def _(d, fx):
    return ["pretrain", "model.init=minilm", "tokenizer.vocab_size=500"]


@row("dead settings in the user's own recipe file", r"lora\.r would do nothing here")
def _(d, fx):
    return ["finetune", str(write(d / "mine.yaml", "command: finetune\nmethod: full\nlora:\n  r: 4\n"))]


# ---------------------------------------------------------------------- issue 12: labels


@row("classification with fractional labels", r"train\.tsv: the cls task needs class labels, but \d+ label\(s\) are fractional, NaN or infinite numbers \(row 1: '0\.25'\)\. use --task regression")
def _(d, fx):
    rows = [[f"the film {i} .", f"{i / 4 + 0.25}"] for i in range(8)]
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], rows)}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], rows)}"]


@row("classification with NaN labels", r"train\.jsonl: the cls task needs class labels, .* \(row 3: nan\)\. use --task regression")
def _(d, fx):
    rows = [{"text": f"film {i} .", "label": 1} for i in range(6)]
    rows[2]["label"] = float("nan")
    return ["finetune", "--task", "cls", f"data.train={jsonl(d / 'train.jsonl', rows)}", f"data.dev={jsonl(d / 'dev.jsonl', rows[:2])}"]


@row("NLI with infinite labels", r"the nli task needs class labels.*\(row 1: '1e400'\)")
def _(d, fx):
    rows = [["a man sleeps .", "a person sleeps .", "1e400" if i == 0 else i % 2] for i in range(6)]
    return ["finetune", "--task", "nli", f"data.train={tsv(d / 'train.tsv', ['premise', 'hypothesis', 'label'], rows)}",
            f"data.dev={tsv(d / 'dev.tsv', ['premise', 'hypothesis', 'label'], rows[1:])}"]


@row("regression with a NaN target", r"train\.jsonl: 1 label\(s\) are NaN or infinite \(row 2: nan\)\. drop or fix those rows")
def _(d, fx):
    rows = [{"sentence1": f"a man plays {i} .", "sentence2": "a person plays .", "label": i / 2} for i in range(6)]
    rows[1]["label"] = float("nan")
    return ["finetune", "--task", "regression", f"data.train={jsonl(d / 'train.jsonl', rows)}",
            f"data.dev={jsonl(d / 'dev.jsonl', rows[2:])}"]


@row("regression with text labels", r"regression needs numeric labels, got text such as 'high'")
def _(d, fx):
    rows = [[f"a man plays {i} .", "a person plays .", "high"] for i in range(6)]
    return ["finetune", "--task", "regression", f"data.train={tsv(d / 'train.tsv', ['sentence1', 'sentence2', 'label'], rows)}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence1', 'sentence2', 'label'], rows)}"]


@row("classification file whose labels are all empty", r"train\.tsv: no labelled rows left\. check the label column")
def _(d, fx):
    rows = [[f"film {i} .", "-"] for i in range(6)]
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], rows)}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], sentiment_rows(4))}"]


# ---------------------------------------------------------------------- issue 12: prompt labels, adapters


def _prompt_file(d: Path, header: list[str], rows: list[list]) -> Path:
    return tsv(d / "eval.tsv", header, rows)


@row("prompt: misnamed label column", r"eval\.tsv has no column 'label' \(data\.label_column\); columns: text, sentiment\. set data\.label_column=sentiment")
def _(d, fx):
    rows = [[f"the film {i} was good .", "positive"] for i in range(12)]
    return ["prompt", "--task", "mine", f"data.eval={_prompt_file(d, ['text', 'sentiment'], rows)}", "data.pool_size=4",
            "template.input='Review: {text}'"]


@row("prompt: label column set to a missing name", r"has no column 'gold' \(data\.label_column\); columns: text, verdict\. set data\.label_column to the label column, or drop")
def _(d, fx):
    rows = [[f"the film {i} was good .", "positive"] for i in range(12)]
    return ["prompt", "--task", "mine", f"data.eval={_prompt_file(d, ['text', 'verdict'], rows)}", "data.pool_size=4",
            "data.label_column=gold", "template.input='Review: {text}'"]


@row("prompt: some rows without a label", r"eval row \d+ has no label in column 'label' \(\d+ of \d+ rows lack one\)\. give every row a label")
def _(d, fx):
    rows = [[f"the film {i} was good .", "positive" if i % 3 else ""] for i in range(12)]
    return ["prompt", "--task", "mine", f"data.eval={_prompt_file(d, ['text', 'label'], rows)}", "data.pool_size=4",
            "template.input='Review: {text}'"]


@row("prompt: label words without a label column", r"has no column 'label' .*\. set data\.label_column to the label column, or drop data\.label_column/labels")
def _(d, fx):
    rows = [[f"the film {i} was good ."] for i in range(12)]
    return ["prompt", "--task", "mine", f"data.eval={_prompt_file(d, ['text'], rows)}", "data.pool_size=4",
            "template.input='Review: {text}'", "labels={positive: good}"]


@row("prompt: evaluation file that is a folder", r"eval\.tsv is not a file but a folder\. pass a file, not a folder")
def _(d, fx):
    (d / "eval.tsv").mkdir()
    return ["prompt", "--task", "mine", f"data.eval={d / 'eval.tsv'}", "template.input='{text}'"]


@row("eval-only of a LoRA adapter stored as a pickle", r"the LoRA adapter in .*model is stored as a pickle \(adapter_model\.bin\).*\. save it with safetensors .* or set allow_pickle=true")
def _(d, fx):
    run = _ft_copy(d, fx, finished=True)
    write(run / "model" / "adapter_config.json", json.dumps({"base_model_name_or_path": str(fx["tiny"]),
                                                             "peft_type": "LORA"}))
    write(run / "model" / "adapter_model.bin", b"\x80\x04 not loaded: pickle can run code")
    return ["finetune", "--eval-only", str(run)]


# ---------------------------------------------------------------------- issue 12: paths and caches


def _link(path: Path, target: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path


@row("pretrain: cache folder that is a file", r"cache folder .*cache-file \(data\.cache_dir\) is not a folder .*\. point data\.cache_dir \(or BERTCTL_CACHE\) at a writable folder")
def _(d, fx):
    return ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={write(d / 'cache-file', 'x')}"]


@row("pretrain: cache folder inside a file", r"cache folder .*cache-file/sub \(data\.cache_dir\) is not a folder")
def _(d, fx):
    write(d / "cache-file", "x")
    return ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={d / 'cache-file' / 'sub'}"]


@row("pretrain: BERTCTL_CACHE that is a file", r"cache folder .*env-cache \(BERTCTL_CACHE\) is not a folder", env=lambda d: {"BERTCTL_CACHE": str(write(d / "env-cache", "x"))})
def _(d, fx):
    return ["pretrain", *TINY_PRETRAIN]


@row("pretrain: corpus that is a broken link", r"corpus\.txt is a broken symbolic link \(to .*gone\.txt, which does not exist\)\. point the link")
def _(d, fx):
    return ["pretrain", *TINY_FILE_PRETRAIN, f"data.source={_link(d / 'corpus.txt', str(d / 'gone.txt'))}", f"data.cache_dir={fx['cache']}"]


@row("pretrain: corpus that is a link loop", r"loop-a\.txt is a loop of symbolic links\. point the link at a real file")
def _(d, fx):
    _link(d / "loop-b.txt", str(d / "loop-a.txt"))
    return ["pretrain", *TINY_FILE_PRETRAIN, f"data.source={_link(d / 'loop-a.txt', str(d / 'loop-b.txt'))}", f"data.cache_dir={fx['cache']}"]


@row("pretrain: one-document corpus", r"the corpus holds only one document, and every 20th document \(the first included\) is held out.*\. give more documents: .*blank line ends a document")
def _(d, fx):
    text = "".join(f"sentence {i} of the only document .\n" for i in range(40))
    return ["pretrain", *TINY_FILE_PRETRAIN, f"data.source={write(d / 'one.txt', text)}", f"data.cache_dir={d / 'cache'}"]


@row("pretrain: folder corpus without text files", r"(contains no \.txt files|cannot load the dataset)")
def _(d, fx):
    write(d / "docs" / "notes.md", "# not text\n")
    return ["pretrain", *TINY_FILE_PRETRAIN, f"data.source={d / 'docs'}", f"data.cache_dir={fx['cache']}"]


@row("finetune: training file that is a folder", r"train\.tsv is not a file but a folder\. pass a file, not a folder")
def _(d, fx):
    (d / "train.tsv").mkdir()
    return ["finetune", "--task", "cls", f"data.train={d / 'train.tsv'}", f"data.dev={d / 'train.tsv'}"]


@row("finetune: training file that is a broken link", r"train\.tsv is a broken symbolic link")
def _(d, fx):
    return ["finetune", "--task", "cls", f"data.train={_link(d / 'train.tsv', 'nowhere.tsv')}",
            f"data.dev={tsv(d / 'dev.tsv', ['sentence', 'label'], sentiment_rows(4))}"]


@row("finetune: dev file that is a link loop", r"dev\.tsv is a loop of symbolic links")
def _(d, fx):
    _link(d / "other.tsv", str(d / "dev.tsv"))
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], sentiment_rows(8))}",
            f"data.dev={_link(d / 'dev.tsv', str(d / 'other.tsv'))}"]


@row("finetune: link loop without an extension", r"data-loop is a loop of symbolic links")
def _(d, fx):
    _link(d / "data-loop2", str(d / "data-loop"))
    return ["finetune", "--task", "cls", f"data.train={_link(d / 'data-loop', str(d / 'data-loop2'))}",
            f"data.dev={d / 'data-loop'}"]


@row("prompt: evaluation file that is a broken link", r"eval\.csv is a broken symbolic link")
def _(d, fx):
    return ["prompt", "--task", "mine", f"data.eval={_link(d / 'eval.csv', 'nowhere.csv')}", "template.input='{text}'"]


@row("finetune --eval-only of a folder that does not exist", r"no-such-run does not exist\. pass the --out folder of a finished `bertctl finetune` run")
def _(d, fx):
    return ["finetune", "--eval-only", str(d / "no-such-run")]


@row("finetune --eval-only of a file", r"notes\.txt is not a folder\. pass the --out folder")
def _(d, fx):
    return ["finetune", "--eval-only", str(write(d / "notes.txt", "x\n"))]


@row("finetune QA: doc_stride the model cannot fit, advice that fits the model", r"max_length=32 and doc_stride=64 cannot make windows\. use 0 <= qa\.doc_stride < 32, e\.g\. qa\.doc_stride=8$")
def _(d, fx):
    return ["finetune", "--task", "qa", f"model.name_or_path={fx['tiny']}", "model.max_length=32", "qa.doc_stride=64",
            "data.world.train=8", "data.world.dev=4", "train.epochs=1"]


# ---------------------------------------------------------------------- more recipe checks


@row("finetune: data.split out of range", r"data\.split: input should be less than 1")
def _(d, fx):
    return ["finetune", "--task", "cls", "data.split=1.5", f"data.train={d / 'x.tsv'}"]


@row("finetune: data.split_by without data.split", r"data\.split_by only applies with data\.split")
def _(d, fx):
    return ["finetune", "--task", "qa", "data.split_by=title"]


@row("finetune: files and a dataset at once", r"set data\.train \(files\) or data\.hf \(a dataset\), not both")
def _(d, fx):
    return ["finetune", "--task", "cls", f"data.train={d / 'x.tsv'}", "data.hf.name=glue"]


@row("pretrain: hidden not a multiple of heads", r"hidden \(30\) must be a multiple of heads \(4\)")
def _(d, fx):
    return ["pretrain", "model.hidden=30", "model.heads=4"]


@row("pretrain: mask shares over one", r"mask_token \+ random_token must be at most 1")
def _(d, fx):
    return ["pretrain", "objective.mask_token=0.9", "objective.random_token=0.2"]


@row("pretrain: causal LM with a pair task", r"(?i)a causal LM has no sentence-pair head: set objective\.pairs=none")
def _(d, fx):
    return ["pretrain", "objective.kind=causal"]


@row("train.warmup over one", r"train\.warmup: input should be less than or equal to 1")
def _(d, fx):
    return ["finetune", "--task", "cls", "train.warmup=2"]


@row("finetune: neither epochs nor max_steps", r"set train\.epochs or train\.max_steps")
def _(d, fx):
    return ["finetune", "--task", "cls", "train.epochs=null"]


@row("pretrain: max_length below the minimum", r"model\.max_length: input should be greater than or equal to 16")
def _(d, fx):
    return ["pretrain", "model.max_length=8"]


@row("prompt: shots below zero", r"shots must be >= 0")
def _(d, fx):
    return ["prompt", "shots=[-1]"]


@row("prompt: answer template with another placeholder", r"template\.answer .* may only use the placeholder \{answer\}")
def _(d, fx):
    return ["prompt", "--task", "sentiment", "template.answer= {answer} {text}"]


@row("prompt: too few rows for the pool", r"has 3 rows, too few to hold out a pool of 64 demonstrations")
def _(d, fx):
    rows = [[f"film {i} .", "positive"] for i in range(3)]
    return ["prompt", "--task", "mine", f"data.eval={_prompt_file(d, ['text', 'label'], rows)}", "template.input='{text}'"]


@row("finetune --eval-only with a recipe", r"--eval-only takes data\.\* overrides, not a recipe \(finetune_cls\)")
def _(d, fx):
    return ["finetune", "--eval-only", str(d), "finetune_cls"]


@row("finetune --eval-only with --task", r"--eval-only cannot be combined with --task/--resume/--merge/--compare-init")
def _(d, fx):
    return ["finetune", "--eval-only", str(d), "--task", "cls"]


@row("finetune --eval-only with a training override", r"--eval-only accepts data\.\*, qa\.\* and eval_batch_size overrides, not train\.lr=1")
def _(d, fx):
    return ["finetune", "--eval-only", str(d), "train.lr=1"]


@row("finetune: compare_init with LoRA", r"compare_init trains from pretrained and from random weights with full fine-tuning")
def _(d, fx):
    return ["finetune", "--task", "cls", f"model.name_or_path={fx['tiny']}", "--compare-init", "method=lora",
            "data.world.train=16", "data.world.dev=8", *TINY_FINETUNE]


@row("finetune: LoRA on a random encoder", r"model\.init=random with method=lora")
def _(d, fx):
    return ["finetune", "--task", "cls", f"model.name_or_path={fx['tiny']}", "model.init=random", "method=lora",
            "data.world.train=16", "data.world.dev=8", *TINY_FINETUNE]


# ---------------------------------------------------------------------- more data files


@row("finetune: CSV row with too few fields", r"train\.csv: line 3 has 1 fields but 2 columns are expected")
def _(d, fx):
    train = write(d / "train.csv", 'sentence,label\n"a good film",positive\nno label here\n')
    return ["finetune", "--task", "cls", f"data.train={train}", f"data.dev={train}"]


@row("finetune: TSV row with too many fields", r"train\.tsv: line 3 has 3 fields but 2 columns are expected")
def _(d, fx):
    train = write(d / "train.tsv", "sentence\tlabel\na film .\tpositive\nanother\tfilm\tnegative\n")
    return ["finetune", "--task", "cls", f"data.train={train}", f"data.dev={train}"]


@row("finetune: duplicate column names", r"train\.tsv: duplicate column name\(s\) label")
def _(d, fx):
    train = write(d / "train.tsv", "label\tlabel\na\tb\n")
    return ["finetune", "--task", "cls", f"data.train={train}", f"data.dev={train}"]


@row("finetune: JSON lines holding a list", r"train\.jsonl: line 1 is a JSON list, not an object")
def _(d, fx):
    train = write(d / "train.jsonl", '["a", "b"]\n')
    return ["finetune", "--task", "cls", f"data.train={train}", f"data.dev={train}"]


@row("finetune: CoNLL-U line with 9 fields", r"train\.conllu: line 1 has 9 tab-separated fields, CoNLL-U needs 10")
def _(d, fx):
    train = write(d / "train.conllu", "1\tthe\tthe\tDET\tDT\t_\t2\tdet\t_\n")
    return ["finetune", "--task", "pos", f"data.train={train}", f"data.dev={train}"]


@row("finetune: CoNLL tag column that does not exist", r"train\.conll: line 1 has 2 columns; token column 0 and tag column 5 do not both exist")
def _(d, fx):
    train = write(d / "train.conll", "the DET\ncat NOUN\n")
    return ["finetune", "--task", "pos", f"data.train={train}", f"data.dev={train}", "data.conll_columns=[0, 5]"]


@row("finetune: SQuAD file that is not SQuAD", r"train\.json: not SQuAD JSON")
def _(d, fx):
    train = write(d / "train.json", '{"version": "x"}')
    return ["finetune", "--task", "qa", f"data.train={train}", f"data.dev={train}"]


@row("finetune: truncated SQuAD file", r"train\.json: invalid JSON at line 1 column \d+ .*\. fix the file; a truncated download")
def _(d, fx):
    train = write(d / "train.json", '{"data": [{"title": "x", "paragraphs": [')
    return ["finetune", "--task", "qa", f"data.train={train}", f"data.dev={train}"]


@row("finetune: header without rows", r"train\.tsv has a header but no rows")
def _(d, fx):
    train = write(d / "train.tsv", "sentence\tlabel\n")
    return ["finetune", "--task", "cls", f"data.train={train}", f"data.dev={train}"]


@row("finetune: unknown file extension", r"train\.txt: cannot tell the format from the extension \.txt\. set data\.format")
def _(d, fx):
    train = write(d / "train.txt", "a film .\tpositive\n")
    return ["finetune", "--task", "cls", f"data.train={train}", f"data.dev={train}"]


@row("finetune: data.root that does not exist", r"data\.root .*no-root does not exist")
def _(d, fx):
    return ["finetune", "--task", "cls", f"data.root={d / 'no-root'}", "data.train=train.tsv", "data.dev=dev.tsv"]


@row("finetune: training file but no dev data", r"no dev data to evaluate on\. set data\.dev, or data\.split")
def _(d, fx):
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], sentiment_rows(8))}"]


@row("finetune: split_by a column the rows lack", r"data\.split_by=title: row 1 has no column 'title'")
def _(d, fx):
    return ["finetune", "--task", "cls", f"data.train={tsv(d / 'train.tsv', ['sentence', 'label'], sentiment_rows(8))}",
            "data.split=0.5", "data.split_by=title"]


@row("finetune: format conllu forced on a TSV", r"train\.tsv: line 1 has 2 tab-separated fields, CoNLL-U needs 10")
def _(d, fx):
    train = tsv(d / "train.tsv", ["sentence", "label"], sentiment_rows(4))
    return ["finetune", "--task", "pos", f"data.train={train}", f"data.dev={train}", "data.format=conllu"]


@row("pretrain: batch larger than the corpus", r"only \d+ training sequences for train\.batch_size=4096")
def _(d, fx):
    return ["pretrain", *TINY_PRETRAIN, "train.batch_size=4096", f"data.cache_dir={fx['cache']}"]


# ---------------------------------------------------------------------- issue 20: finished runs, predict input


def _failed(d: Path, fx: dict) -> Path:
    """A copy of the fixtures' finished run whose run.json says it failed."""
    run = _ft_copy(d, fx, finished=True)
    record = json.loads((run / "run.json").read_text())
    record.update(status="failed", error="RuntimeError: out of memory")
    (run / "run.json").write_text(json.dumps(record))
    return run


@row("predict: a run whose run.json says failed", r"ft-run did not finish \(.*failed.*\)\. --resume it first")
def _(d, fx):
    return ["predict", str(_failed(d, fx)), str(write(d / "in.txt", "a good film\n"))]


@row("finetune --eval-only: a run whose run.json says failed", r"ft-run did not finish \(.*failed.*\)")
def _(d, fx):
    return ["finetune", "--eval-only", str(_failed(d, fx))]


def _eval_only_folder(d: Path, fx: dict) -> Path:
    """What `finetune --eval-only RUN --out ev` leaves: recipe.yaml (command: finetune),
    metrics.json, predictions, and a run.json saying finetune-eval; no model/."""
    import shutil

    run = _ft_copy(d, fx, finished=True)
    ev = d / "ev"
    shutil.copytree(run, ev)
    shutil.rmtree(ev / "model")
    record = json.loads((ev / "run.json").read_text())
    (ev / "run.json").write_text(json.dumps({**record, "command": "finetune-eval"}))
    metrics = json.loads((ev / "metrics.json").read_text())
    (ev / "metrics.json").write_text(json.dumps({**metrics, "model": str(run)}))
    return ev


@row("predict: an --eval-only folder", r"ev is an --eval-only folder \(`bertctl finetune --eval-only`\), not a finetune "
                                       r"run\. pass the run it evaluated \(.*ft-run\)")
def _(d, fx):
    return ["predict", str(_eval_only_folder(d, fx)), str(write(d / "in.txt", "a good film\n"))]


@row("finetune --eval-only: an --eval-only folder", r"ev is an --eval-only folder .*\. pass the run it evaluated")
def _(d, fx):
    return ["finetune", "--eval-only", str(_eval_only_folder(d, fx)), f"data.dev={d / FT_DATA / 'dev.tsv'}"]


@row("finetune: a test-file label that train never had", r"test\.tsv: label\(s\) 'neutral' do not occur in the training data")
def _(d, fx):
    train = tsv(d / "train.tsv", ["sentence", "label"], sentiment_rows(8))
    test = tsv(d / "test.tsv", ["sentence", "label"], [["a plain film", "neutral"]])
    return ["finetune", "--task", "cls", f"model.name_or_path={fx['tiny']}", f"data.train={train}",
            f"data.dev={train}", f"data.test={test}", *TINY_FINETUNE]


@row("finetune --eval-only: a test-file label the run never had", r"test\.tsv: label\(s\) 'neutral' do not occur")
def _(d, fx):
    run = _ft_copy(d, fx, finished=True)
    test = tsv(d / "test.tsv", ["sentence", "label"], [["a plain film", "neutral"]])
    return ["finetune", "--eval-only", str(run), f"data.dev={d / FT_DATA / 'dev.tsv'}", f"data.test={test}"]


@row("predict: a null text", r"in\.jsonl line 2: the text is null \(or missing\), not text\. give every row its text")
def _(d, fx):
    return ["predict", str(_ft_copy(d, fx, finished=True)), str(jsonl(d / "in.jsonl", [{"text": "fine"}, {"text": None}]))]


@row("predict: a text that is a list", r"in\.jsonl line 1: the text is a list, not text")
def _(d, fx):
    return ["predict", str(_ft_copy(d, fx, finished=True)), str(jsonl(d / "in.jsonl", [{"text": ["a", "b"]}]))]


@row("predict: a later row without the text column", r"in\.jsonl line 2: no column 'text / sentence / sentence1'")
def _(d, fx):
    return ["predict", str(_ft_copy(d, fx, finished=True)),
            str(jsonl(d / "in.jsonl", [{"text": "fine"}, {"review": "lost"}]))]


@row("predict: a CSV row shorter than its header", r"in\.csv line 3: the text is null \(or missing\)")
def _(d, fx):
    return ["predict", str(_ft_copy(d, fx, finished=True)), str(write(d / "in.csv", "id,text\n1,fine\n2\n"))]


@row("predict: --column for a role the kind does not read", r"--column question=\.\.\.: a cls run does not read a question\. map only what it reads: text")
def _(d, fx):
    return ["predict", str(_ft_copy(d, fx, finished=True)), str(write(d / "in.txt", "fine\n")), "--column", "question=q"]


@row("predict: a SQuAD JSON file", r"squad\.json is one JSON document \(a SQuAD file\?\), not one JSON object per line\. give one object per line")
def _(d, fx):
    squad = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "Ada wrote.", "qas": []}]}]}
    return ["predict", str(_ft_copy(d, fx, finished=True)), str(write(d / "squad.json", json.dumps(squad, indent=2)))]


@row("predict: a CoNLL file", r"eng\.conll: predict reads one example per line, not CoNLL sentences\. write one sentence per line")
def _(d, fx):
    return ["predict", str(_ft_copy(d, fx, finished=True)), str(write(d / "eng.conll", "EU B-ORG\nrejects O\n\n"))]


@row("finetune --eval-only: the second of several files is missing", r"missing\.tsv.*(does not exist|no such file)")
def _(d, fx):
    run = _ft_copy(d, fx, finished=True)
    return ["finetune", "--eval-only", str(run), f"data.dev=[{d / FT_DATA / 'dev.tsv'}, {d / 'missing.tsv'}]",
            "--out", str(d / "evals")]


# ---------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def fixtures(tiny, tmp_path_factory):
    """What rows share: the tiny model, a token cache, a small GLUE folder, and a finished
    4-step pretrain run whose checkpoints rows copy and damage."""
    from bertctl.cli import app
    from typer.testing import CliRunner

    from .helpers import make_glue

    root = tmp_path_factory.mktemp("bad-inputs")
    glue = make_glue(root / "glue", n=12, tasks=["RTE", "SST-2"])
    run = root / "pretrain-run"
    result = CliRunner().invoke(app, ["pretrain", *TINY_PRETRAIN, f"data.cache_dir={root / 'cache'}", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "step-0000004" / "state.json").exists()
    # a finished finetune run on data files (rows copy it next to copies of its data)
    data = root / FT_DATA
    tsv(data / "train.tsv", ["sentence", "label"], sentiment_rows(16))
    tsv(data / "dev.tsv", ["sentence", "label"], sentiment_rows(8))
    fx = {"tiny": tiny, "cache": root / "cache", "glue": glue, "pretrain_run": run, "finetune_data": data,
          "finetune_run": root / "finetune-run"}
    result = CliRunner().invoke(app, [*_ft_argv(root, fx), "--out", str(fx["finetune_run"])])
    assert result.exit_code == 0, result.output
    return fx


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (links to nowhere and link loops are no files: skipped)."""
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
    assert len(ROWS) >= 120 and len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("case", ROWS, ids=[r.name for r in ROWS])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(case: Row, fixtures, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bertctl.cli import app

    monkeypatch.chdir(tmp_path)  # default run folders (runs/...) land here, and relative paths resolve here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = case.make(tmp_path, fixtures)
    for key, value in (case.env(tmp_path) if case.env else {}).items():
        monkeypatch.setenv(key, value)
    before = snapshot(tmp_path)
    try:
        result = CliRunner().invoke(app, argv)
    finally:
        while _HELD_FDS:  # the other command holding a lock in this row has ended
            os.close(_HELD_FDS.pop())
    line = check_one_error_line(result, case.expect)
    if os.environ.get("BERTCTL_SHOW_ERRORS"):
        print(f"\n{case.name}: {line}")
    after = snapshot(tmp_path)
    changed = [name for name, data in before.items() if after.get(name) != data]  # log.txt too: not even appended to
    assert not changed, f"overwritten, appended to or lost: {changed}"


# ---------------------------------------------------------------------- a full disk


def test_disk_full_is_one_line_loses_nothing_and_resume_then_finishes(tmp_path):
    """The disk fills while a resumed pretrain writes its next checkpoint (simulated with a
    file-size limit on the real command's process, so safetensors' own writes fail), and
    on a first run while the corpus is written into the cache."""
    from bertctl.runs import Run

    from .helpers import Cli, _final, _step_log

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
    # the one process bertctl starts: `bertctl reproduce` runs each step as `python -m bertctl ARGV` (an
    # argument list, no shell), so its report can quote the exact command lines
    allowed = {"reproduce/run.py": ("import subprocess", 'subprocess.run([sys.executable, "-m", "bertctl", *step.argv],')}
    found = [f for f in found if not any(f.startswith(path + ":") and any(a in f for a in lines)
                                         for path, lines in allowed.items())]
    assert not found, found
    assert "shell" not in (root / "reproduce" / "run.py").read_text(encoding="utf-8")


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
