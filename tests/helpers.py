"""Helpers shared by several test modules (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bertctl.glue.tasks import TASKS

# ---------------------------------------------------------------------- tiny causal LMs (prompt tests)


WORDS = ("Review Sentiment positive negative Classify the sentiment of each review as or Premise Hypothesis "
         "Answer True False Neither Text Topic English Xx")


def tiny_bpe_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer trained on World sentences (~400 tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from bertctl.data.world import World

    texts = [r["text"] for r in World(0).sentiment(300)] + [WORDS] * 5
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_llama(vocab_size: int, seed: int = 0, positions: int = 512):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=positions,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def save_model(model, tokenizer, folder):
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


# ---------------------------------------------------------------------- a tiny GLUE folder


GOOD = ["good", "great", "fine", "lovely", "superb"]


BAD = ["bad", "awful", "poor", "dull", "boring"]


NOUNS = ["film", "movie", "story", "cat", "dog", "plan", "song", "book", "game", "city"]


VERBS = ["saw", "liked", "made", "found", "read", "played", "wrote", "sold"]


NAMES = ["Anna", "Ben", "Carl", "Dana", "Eve", "Finn"]


def _sentence(rng: random.Random, positive: bool | None = None) -> str:
    adj = rng.choice(GOOD if positive else BAD) if positive is not None else rng.choice(GOOD + BAD)
    return f"{rng.choice(NAMES)} {rng.choice(VERBS)} the {adj} {rng.choice(NOUNS)} ."


def _tsv(path: Path, header: list[str] | None, rows: list[list], bom: bool = False, extra: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(str(c) for c in r) for r in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n" + extra, encoding="utf-8")


def _pairs(rng, n, labels):
    """(sentence1, sentence2, label) where the label is learnable from word overlap."""
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        a = _sentence(rng)
        b = a.replace(".", "!") if label == labels[0] else _sentence(rng)
        out.append((a, b, label))
    return out


def make_glue(root: Path, n: int = 30, tasks=None, seed: int = 0, tests: bool = True) -> Path:
    """A tiny GLUE folder (n train rows, n//2 dev and test rows per task)."""
    rng = random.Random(seed)
    tasks = set(tasks or TASKS)
    m = max(4, n // 2)
    sizes = {"train": n, "dev": m}

    if "CoLA" in tasks:  # no header in train/dev; test has one
        for split, k in sizes.items():
            rows = []
            for i in range(k):
                ok = i % 2
                s = _sentence(rng) if ok else f"the {rng.choice(NOUNS)} {rng.choice(NOUNS)} {rng.choice(VERBS)} ."
                rows.append(["gj04", ok, "" if ok else "*", s])
            _tsv(root / "CoLA" / f"{split}.tsv", None, rows)
        if tests:
            _tsv(root / "CoLA" / "test.tsv", ["index", "sentence"], [[i, _sentence(rng)] for i in range(m)])
    if "SST-2" in tasks:
        for split, k in sizes.items():
            _tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"],
                 [[_sentence(rng, bool(i % 2)) + " ", i % 2] for i in range(k)])
        if tests:
            _tsv(root / "SST-2" / "test.tsv", ["index", "sentence"], [[i, _sentence(rng)] for i in range(m)])
    if "MRPC" in tasks:  # byte-order mark, bare quotes inside strings
        for split, k in sizes.items():
            rows = [[lab, 1000 + i, 2000 + i, f'He said " {a} " today .', f'" {b}'] for i, (a, b, lab) in
                    enumerate(_pairs(rng, k, ["1", "0"]))]
            _tsv(root / "MRPC" / f"{split}.tsv", ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], rows, bom=True)
        if tests:
            _tsv(root / "MRPC" / "test.tsv", ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                 [[i, 1, 2, a, b] for i, (a, b, _) in enumerate(_pairs(rng, m, ["x"]))])
    if "STS-B" in tasks:  # float scores with three decimals
        head = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
        for split, k in sizes.items():
            rows = [[i, "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", a, b,
                     f"{5.0 if a.rstrip('.') == b.rstrip('!') else rng.uniform(0, 2.5):.3f}"]
                    for i, (a, b, _) in enumerate(_pairs(rng, k, ["same", "diff"]))]
            _tsv(root / "STS-B" / f"{split}.tsv", head + ["score"], rows)
        if tests:
            _tsv(root / "STS-B" / "test.tsv", head, [[i, "g", "f", "y", i, "n", "n", a, b]
                                                      for i, (a, b, _) in enumerate(_pairs(rng, m, ["x"]))])
    if "QQP" in tasks:  # one malformed line in train, as in the real file
        for split, k in sizes.items():
            rows = [[i, 2 * i, 2 * i + 1, a, b, lab] for i, (a, b, lab) in enumerate(_pairs(rng, k, ["1", "0"]))]
            _tsv(root / "QQP" / f"{split}.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], rows,
                 extra="999\t1998\tbroken line without its other fields\n" if split == "train" else "")
        if tests:
            _tsv(root / "QQP" / "test.tsv", ["id", "question1", "question2"],
                 [[i, a, b] for i, (a, b, _) in enumerate(_pairs(rng, m, ["x"]))])
    if "MNLI" in tasks:  # two dev sets, two test sets; dev has five annotator labels
        parse = ["sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse"]
        head = ["index", "promptID", "pairID", "genre", *parse, "sentence1", "sentence2"]
        labels = ["entailment", "neutral", "contradiction"]
        for split, k, annotators in (("train", n, 1), ("dev_matched", m, 5), ("dev_mismatched", m, 5)):
            rows = [[i, i, f"{i}e", "fiction", "( x )", "( y )", "(ROOT x)", "(ROOT y)", a, b, *[lab] * annotators, lab]
                    for i, (a, b, lab) in enumerate(_pairs(rng, k, labels))]
            _tsv(root / "MNLI" / f"{split}.tsv", head + [f"label{j + 1}" for j in range(annotators)] + ["gold_label"], rows)
        if tests:
            for split in ("test_matched", "test_mismatched"):
                _tsv(root / "MNLI" / f"{split}.tsv", head,
                     [[i, i, f"{i}e", "g", "x", "y", "x", "y", a, b] for i, (a, b, _) in enumerate(_pairs(rng, m, ["x"]))])
            _tsv(root / "diagnostic" / "diagnostic.tsv", ["index", "sentence1", "sentence2"],
                 [[i, a, b] for i, (a, b, _) in enumerate(_pairs(rng, m // 2, ["x"]))])
    for name, cols, labels in (("QNLI", ["question", "sentence"], ["entailment", "not_entailment"]),
                               ("RTE", ["sentence1", "sentence2"], ["entailment", "not_entailment"]),
                               ("WNLI", ["sentence1", "sentence2"], ["1", "0"])):
        if name not in tasks:
            continue
        for split, k in sizes.items():
            _tsv(root / name / f"{split}.tsv", ["index", *cols, "label"],
                 [[i, a, b, lab] for i, (a, b, lab) in enumerate(_pairs(rng, k, labels))])
        if tests:
            _tsv(root / name / "test.tsv", ["index", *cols], [[i, a, b] for i, (a, b, _) in enumerate(_pairs(rng, m, ["x"]))])
    return root


# ---------------------------------------------------------------------- a hand-made WordPiece tokenizer (probe tests)


CJK = list("我吃了一个苹果公司发布新手机")


PIECES = ["un", "##believ", "##ably", "good", "apple", "pie", "ate", "an", "the", "i", "company", "shares", "rose", "."]


def tiny_tokenizer(words=(), chars=CJK):
    """A fast BERT WordPiece tokenizer over a hand-made vocabulary (lower-cased, CJK split)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(dict.fromkeys([*PIECES, *chars, *words]))
    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


# ---------------------------------------------------------------------- a tiny pretrain


PRETRAIN = ["data.world.n_docs=200", "data.heldout=0.1", "model.hidden=32", "model.heads=2", "model.intermediate=64",
            "model.layers=1", "model.max_length=32", "train.batch_size=16", "train.max_steps=6", "train.log_every=2",
            "eval.max_sequences=32", "train.precision=fp32"]


# ---------------------------------------------------------------------- torchrun


JOB = Path(__file__).with_name("ddp_job.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, env: dict, timeout: float = 300, job: Path = JOB, cwd=None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 JOB ARGS` in its own process group: on a timeout (a hang)
    the workers are killed too, not left behind."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), str(job), *args]
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun still running after {timeout} s (a hang): {stderr[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


# ---------------------------------------------------------------------- small data files


TINY_PRETRAIN = ["data.world.n_docs=200", "model.hidden=32", "model.heads=2", "model.intermediate=64",
                 "model.layers=1", "model.max_length=32", "tokenizer.vocab_size=200", "train.batch_size=8",
                 "train.max_steps=4", "train.save_every=2", "train.precision=fp32", "eval.max_sequences=16"]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def tsv(path: Path, header: list[str], rows: list[list]) -> Path:
    return write(path, "\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n")


def sentiment_rows(n: int, labels=("positive", "negative")) -> list[list]:
    return [[f"the film number {i} was {'good' if i % 2 else 'bad'} .", labels[i % len(labels)]] for i in range(n)]


# ---------------------------------------------------------------------- the CLI in a forked process (fault tests)


ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1", "COLUMNS": "250", "MPLBACKEND": "Agg", "BERTCTL_DEBUG": "0"}


TIMING = {"tokens_per_s", "train_seconds", "train_samples_per_s", "train_tokens_per_s", "timings"}


def _cli_process(argv: list[str], cwd: str, log: str, env: dict, max_file_bytes: int | None = None) -> None:
    """Body of one forked process: the `bertctl` command line, as the console script runs it.
    `max_file_bytes` simulates a full disk: a write past it fails (EFBIG) as it would (ENOSPC)."""
    os.chdir(cwd)
    os.environ.update(env)
    # as in a terminal (a process started in the background may inherit SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if max_file_bytes is not None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    for fd, name in ((1, log), (2, log + ".err")):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    import torch

    torch.set_num_threads(1)
    sys.argv = ["bertctl", *argv]
    from bertctl.cli import main

    main()  # sys.exit(code): the exit code of the process


def _noop() -> None:
    pass


_SERVER: dict = {}


def _context():
    if "ctx" not in _SERVER:
        ctx = multiprocessing.get_context("forkserver")
        for key, value in ENV.items():  # the server (and so every fork) starts with these
            os.environ.setdefault(key, value)
        ctx.set_forkserver_preload(["torch", "transformers", "transformers.models.bert.modeling_bert", "accelerate",
                                    "accelerate.accelerator", "datasets", "tokenizers", "safetensors.torch",
                                    "matplotlib.pyplot", "sklearn.metrics", "scipy.stats", "rich.progress",
                                    "bertctl.cli", "bertctl.train", "bertctl.pretraining.run",
                                    "bertctl.pretraining.model", "bertctl.finetune.run", "bertctl.finetune.methods",
                                    "tests.test_faults"])
        _SERVER["ctx"] = ctx
        warm_up = ctx.Process(target=_noop)  # starts the server (and its imports) before any timing
        warm_up.start()
        warm_up.join()
    return _SERVER["ctx"]


class Cli:
    """Start `bertctl ARGS` in a forked process; kill it or wait for it."""

    def __init__(self, argv: list[str], cwd: Path, log: Path, env: dict, max_file_bytes: int | None = None):
        self.log = log
        self.proc = _context().Process(target=_cli_process,
                                       args=(argv, str(cwd), str(log), {**ENV, **env}, max_file_bytes))
        self.t0 = time.perf_counter()
        self.proc.start()

    def wait(self, timeout: float = 300) -> int:
        self.proc.join(timeout)
        assert self.proc.exitcode is not None, f"still running after {timeout} s: {self.output()[-2000:]}"
        return self.proc.exitcode

    def kill_after(self, delay: float) -> bool:
        """SIGKILL after `delay` seconds; False if it had already finished."""
        self.proc.join(delay)
        if self.proc.exitcode is not None:
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join()
        return self.proc.exitcode == -signal.SIGKILL  # else it exited on its own just before

    def signal_when(self, ready: Callable[[], bool], sig: int, timeout: float) -> None:
        """Send `sig` as soon as `ready()` holds (failing if the process ends first or `timeout` s pass)."""
        deadline = time.time() + timeout
        while not ready():
            assert self.proc.exitcode is None and time.time() < deadline, self.output()[-2000:]
            time.sleep(0.01)
        os.kill(self.proc.pid, sig)

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr().splitlines() if line.startswith("error:")]

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def stdout(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def stderr(self) -> str:
        err = Path(f"{self.log}.err")
        return err.read_text(encoding="utf-8", errors="replace") if err.exists() else ""


def _final(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in TIMING}


def _step_log(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


# ---------------------------------------------------------------------- a small fine-tuning recipe on World data


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def recipe(model_path: Path | str, task: str = "cls", **extra):
    """A small FinetuneRecipe on World data: fp32 (bf16 is slower for tiny matmuls)."""
    from bertctl.finetune.config import FinetuneRecipe

    base = {"task": task, "model": {"name_or_path": str(model_path), "max_length": 64},
            "data": {"world": {"train": 96, "dev": 32}},
            "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "precision": "fp32", "log_every": 1,
                      "keep_checkpoints": 1, "warmup": 0.0}}
    return FinetuneRecipe.model_validate(_merge(base, extra))


# ---------------------------------------------------------------------- refused commands


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder, by relative path (links to nowhere are no files)."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def assert_unchanged(folder: Path, before: dict[str, str]) -> None:
    """Every file that was under folder is there, byte for byte (a refused command changes nothing)."""
    after = digest(folder)
    changed = sorted(name for name, h in before.items() if after.get(name) != h)
    assert not changed, f"a refused command changed or removed: {changed}"
