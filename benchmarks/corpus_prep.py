"""Preparing a real corpus for pretraining: bertctl against the Hugging Face path a user takes.

The corpus: ../shared/data/english/ (2.65 M words of real English, 6 files, a blank line
between documents). Both sides train a lowercase BERT WordPiece vocabulary of --vocab
tokens on it, tokenise it and cut it into sequences of --length tokens:

- Hugging Face: `tokenizers` (BertNormalizer, BertPreTokenizer, WordPieceTrainer) trained
  on the files with `Tokenizer.train` (its fastest entry point), wrapped in a
  PreTrainedTokenizerFast; then run_mlm.py's data path: `load_dataset("text")`,
  `datasets.map(tokenize)` and `datasets.map(group_texts)` with `num_proc` = cores, into a
  fresh datasets cache.
- bertctl: `corpus_tokenizer` + `prepare_sequences` (what `bertctl pretrain` runs before
  training) into a fresh bertctl cache, with the contiguous packing that matches
  group_texts (objective.pairs=none), and, reported beside it, the default NSP pairing.

Each side runs in its own fresh process (`--side`), timed from the first file read to the
last sequence written; peak memory is the process's maximum resident set plus the largest
of its worker processes' (datasets' num_proc workers; Linux keeps only the largest child's),
in MB: an upper bound for bertctl, which starts none, a lower one for the baseline.

    python benchmarks/corpus_prep.py                 # ~2 minutes on 2 cores
    python benchmarks/corpus_prep.py --vocab 8000 --length 256

Ends with one line: RESULT corpus_prep ratio=<HF seconds / bertctl seconds> ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # both sides: the Rust tokenizer may use every core
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENGLISH = ROOT.parent / "shared" / "data" / "english"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=str(ENGLISH), help="a folder of .txt files (blank line between documents)")
    p.add_argument("--vocab", type=int, default=16000)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="datasets.map workers (default: cores)")
    p.add_argument("--side", choices=["hf", "bertctl", "bertctl-nsp"], help=argparse.SUPPRESS)  # a child process
    p.add_argument("--work", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + workers) / 1024  # KB on Linux


def hf_side(a, work: Path) -> dict:
    import datasets
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece
    from tokenizers.processors import TemplateProcessing
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    datasets.disable_progress_bars()
    files = sorted(str(p) for p in Path(a.corpus).glob("*.txt"))
    t0 = time.perf_counter()
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train(files, WordPieceTrainer(vocab_size=a.vocab, special_tokens=SPECIALS, continuing_subword_prefix="##",
                                      show_progress=False))
    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                            special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    t_tok = time.perf_counter() - t0
    raw = datasets.load_dataset("text", data_files={"train": files}, cache_dir=str(work / "hf-cache"))["train"]
    block = a.length

    def tokenize_function(examples):  # run_mlm.py, line_by_line=False
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):  # verbatim logic of run_mlm.py
        concatenated = {k: [t for row in examples[k] for t in row] for k in examples}
        total = (len(concatenated[next(iter(examples))]) // block) * block
        return {k: [t[i:i + block] for i in range(0, total, block)] for k, t in concatenated.items()}

    tokenized = raw.map(tokenize_function, batched=True, num_proc=a.num_proc, remove_columns=["text"])
    grouped = tokenized.map(group_texts, batched=True, num_proc=a.num_proc)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tokenizer_seconds": t_tok, "sequences": len(grouped),
            "tokens": len(grouped) * block, "vocab": len(tokenizer)}


def bertctl_side(a, work: Path, pairs: str) -> dict:
    from transformers import AutoTokenizer, BertTokenizer  # noqa: F401 - loaded before the clock, as on the HF side

    from bertctl.pretraining.config import PretrainRecipe
    from bertctl.pretraining.corpus import corpus_tokenizer, prepare_sequences

    recipe = PretrainRecipe.model_validate({
        "data": {"source": a.corpus, "cache_dir": str(work / "bertctl-cache"), "heldout": 0.0001},
        "tokenizer": {"source": "train", "vocab_size": a.vocab}, "model": {"max_length": a.length},
        "objective": {"pairs": pairs}})
    t0 = time.perf_counter()
    tokenizer, _ = corpus_tokenizer(recipe, log=lambda m: None)
    t_tok = time.perf_counter() - t0
    train, heldout, _ = prepare_sequences(recipe, tokenizer, log=lambda m: None)
    seconds = time.perf_counter() - t0
    tokens = int(train.meta["tokens"] + heldout.meta["tokens"])
    return {"seconds": seconds, "tokenizer_seconds": t_tok, "sequences": len(train) + len(heldout),
            "tokens": tokens, "vocab": len(tokenizer)}


def child(a) -> None:
    work = Path(a.work)
    # what both sides load anyway, before the clock and the memory baseline
    import datasets  # noqa: F401
    import tokenizers  # noqa: F401
    import transformers  # noqa: F401

    start = _peak_mb()
    result = hf_side(a, work) if a.side == "hf" else bertctl_side(a, work, "nsp" if a.side == "bertctl-nsp" else "none")
    print(json.dumps({**result, "peak_mb": round(_peak_mb(), 1), "start_mb": round(start, 1)}))


def measure(a, side: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bertctl-corpus-prep-") as work:
        out = subprocess.run([sys.executable, __file__, "--side", side, "--work", work, "--corpus", a.corpus,
                              "--vocab", str(a.vocab), "--length", str(a.length), "--num-proc", str(a.num_proc)],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"{side} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    a = parse_args(argv)
    if a.side:
        return child(a)
    if not Path(a.corpus).is_dir():  # a fresh machine without ../shared/data: nothing to measure (make bench goes on)
        print(f"no corpus folder at {a.corpus} (../shared/data/english on the development machines)")
        print("RESULT corpus_prep status=skipped reason=no_corpus")
        return
    from benchmarks.machine import tag

    words = sum(len(line.split()) for p in Path(a.corpus).glob("*.txt") for line in open(p, encoding="utf-8"))
    print(f"corpus {a.corpus}: {words:,} words; vocabulary {a.vocab}, sequences of {a.length} tokens; "
          f"datasets num_proc {a.num_proc}", flush=True)
    rows = {}
    for side in ("hf", "bertctl", "bertctl-nsp"):
        rows[side] = r = measure(a, side)
        print(f"{side:12s} {r['seconds']:6.1f} s (tokenizer {r['tokenizer_seconds']:5.1f} s), {r['sequences']:,} "
              f"sequences, {r['tokens']:,} tokens, vocabulary {r['vocab']:,}, peak {r['peak_mb']:,.0f} MB "
              f"({r['peak_mb'] - r['start_mb']:,.0f} above the imports)", flush=True)
    hf, ours = rows["hf"], rows["bertctl"]
    print(f"RESULT corpus_prep ratio={hf['seconds'] / ours['seconds']:.2f} bertctl_s={ours['seconds']:.1f} "
          f"hf_s={hf['seconds']:.1f} bertctl_nsp_s={rows['bertctl-nsp']['seconds']:.1f} "
          f"bertctl_tokenizer_s={ours['tokenizer_seconds']:.1f} hf_tokenizer_s={hf['tokenizer_seconds']:.1f} "
          f"bertctl_peak_mb={ours['peak_mb']:.0f} hf_peak_mb={hf['peak_mb']:.0f} "
          f"bertctl_nsp_peak_mb={rows['bertctl-nsp']['peak_mb']:.0f} "
          f"bertctl_sequences={ours['sequences']} hf_sequences={hf['sequences']} vocab={a.vocab} length={a.length} "
          f"words={words} {tag()}")


if __name__ == "__main__":
    main()
