"""Pretraining data: read documents, train a tokenizer, tokenise once into a cache, pack.

Documents (lists of sentences) stream from
  - the generated World corpus (data.source unset; written once into the cache),
  - text files or folders of .txt files (one sentence per line, blank line between documents),
  - JSON lines with a text field (one document per line),
  - a dataset saved with `save_to_disk`, or a Hugging Face dataset id / data folder (streamed).
Only one document is in memory at a time (plus a block of 1,000 for NSP's random
segments), so a corpus larger than RAM works.

The tokenised, packed sequences are written once to a cache folder named by a hash of
everything they depend on (the corpus files with sizes and mtimes, the tokenizer, the
length, the objective, the seed): `tokens.bin` (all token ids, flat) and `index.bin`
(start, length, length of segment A, pair label per sequence), both memory-mapped on
read, as nanoGPT's train.bin. Each cache folder (token sequences and trained tokenizers)
has a `manifest.json` with the size and SHA-256 of every file; it is checked whenever the
cache is opened, and a damaged cache (a truncated tokens.bin, a flipped byte, a missing
file) is rebuilt with a note instead of being trained on. Every tenth/twentieth/... document (data.heldout) goes to
the held-out split, which is packed separately, so no held-out text is ever trained on.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bertctl.errors import BertctlError

CACHE_VERSION = 2  # bump when the cache layout, packing or tokenizer training changes (2: balanced NSP pairs, deterministic WordPiece)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def cache_root(data) -> Path:
    """The cache folder, made if needed; one that cannot be used is an error naming the
    setting it came from (not a PermissionError from deep inside tokenisation)."""
    if data.cache_dir:
        root, where = Path(data.cache_dir), "data.cache_dir"
    elif os.environ.get("BERTCTL_CACHE"):
        root, where = Path(os.environ["BERTCTL_CACHE"]), "BERTCTL_CACHE"
    else:
        root, where = Path.home() / ".cache" / "bertctl", "the default cache folder"
    problem = None
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        problem = "is not a folder (it or a folder above it is a file)"
    except OSError as e:
        problem = f"cannot be made ({e.strerror or e})"
    if problem is None and not (root.is_dir() and os.access(root, os.W_OK | os.X_OK)):
        problem = "is not writable" if root.is_dir() else "is not a folder"
    if problem:
        raise BertctlError(f"cache folder {root} ({where}) {problem}",
                           fix="point data.cache_dir (or BERTCTL_CACHE) at a writable folder, e.g. data.cache_dir=/tmp/bertctl-cache")
    return root


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and checksum of every file of a cache folder (before it is renamed into place)."""
    files = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(Path(folder).rglob("*")) if p.is_file() and p.name != MANIFEST}
    (Path(folder) / MANIFEST).write_text(json.dumps({"version": CACHE_VERSION, "files": files}, indent=1),
                                         encoding="utf-8")


def cache_problem(folder: Path) -> str | None:
    """What is wrong with a cache folder, checked against its manifest; None when intact.
    Sizes first (cheap: catches truncation), then the checksums."""
    folder = Path(folder)
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        entries = [(folder / name, int(e["size"]), str(e["sha256"])) for name, e in files.items()]
    except FileNotFoundError:
        return "it has no manifest.json (written by an older bertctl, or its writer was stopped)"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "its manifest.json is unreadable"
    for path, size, _ in entries:
        if not path.is_file():
            return f"{path.name} is missing"
        if path.stat().st_size != size:
            return f"{path.relative_to(folder)} is {path.stat().st_size:,} bytes, the manifest says {size:,}"
    for path, _, digest in entries:
        if _sha256(path) != digest:
            return f"{path.relative_to(folder)} does not match its checksum"
    return None


def _open_cache(folder: Path, log) -> bool:
    """Whether a complete, intact cache folder is there. A damaged one is moved aside and
    deleted (a process still reading its files keeps them until it closes them)."""
    if not folder.exists():
        return False
    problem = cache_problem(folder)
    if problem is None:
        return True
    log(f"note: the cache {folder} is damaged ({problem}): rebuilding it")
    aside = folder.with_name(f".{folder.name}.damaged-{os.getpid()}")
    try:
        os.replace(folder, aside)
    except OSError:  # another process moved it first
        pass
    shutil.rmtree(aside, ignore_errors=True)
    return False


def _save_cache(folder: Path, save) -> None:
    """_save_atomically, with a manifest written into the folder before it goes into place."""

    def save_and_record(tmp: str) -> None:
        save(tmp)
        write_manifest(Path(tmp))

    _save_atomically(folder, save_and_record)


# ------------------------------------------------------------------------ documents


def world_files(data) -> list[Path]:
    """The World corpus as one text file per language, generated once into the cache."""
    from bertctl.data import world

    w = data.world
    generator = hashlib.sha256(Path(world.__file__).read_bytes()).hexdigest()[:12]  # new generator -> new text
    files = []
    for k, language in enumerate(w.languages):
        # languages get different seeds: comparable, not parallel, corpora (as mBERT's)
        seed = w.seed + k
        path = cache_root(data) / "world" / f"{language}-seed{seed}-n{w.n_docs}-{generator}.txt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            world.write_corpus(tmp, w.n_docs, seed=seed, language=language)
            os.replace(tmp, path)  # atomic: a half-written corpus is never read as whole
        files.append(path)
    return files


def _sources(data) -> list[str]:
    if data.source is None:
        return [str(p) for p in world_files(data)]
    sources = list(data.source) if isinstance(data.source, list) else [data.source]
    if data.root is None:
        return sources
    root = Path(data.root).expanduser().resolve()  # against the working directory, at run time
    if not root.is_dir():
        raise BertctlError(f"data.root {data.root} is not a folder (looked in {root})",
                           fix="run from the project root (built-in recipes read ../shared/data) "
                               "or pass data.root=/path/to/data")
    return [s if os.path.isabs(s) else str(root / s) for s in sources]


def _format_of(source: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    path = Path(source)
    if os.path.lexists(source) and not path.exists():  # a broken link or a link loop: say which
        from bertctl.data.readers import check_path

        check_path(path)
    if path.is_file():
        return "jsonl" if path.suffix.lower() in (".jsonl", ".json") else "text"
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            return "hf"
        return "text" if any(path.rglob("*.txt")) else "hf"
    if source.startswith((".", "/", "~")) or Path(source).suffix in (".txt", ".jsonl", ".json"):
        raise BertctlError(f"corpus {source} does not exist", fix="check data.source")
    return "hf"  # a dataset id


def split_sentences(text: str) -> list[str]:
    """A document's sentences: its non-blank lines, or, for a single line, split after . ! ?"""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        lines = [s for s in _SENTENCE_END.split(lines[0]) if s]
    return lines


def _jsonl_documents(path: Path, field: str) -> Iterator[list[str]]:
    from bertctl.jsonl import parse

    with open(path, encoding="utf-8-sig") as f:
        for number, row in parse(f, path, torn_last_line="error", objects=False):
            if not isinstance(row, dict) or field not in row:
                keys = ", ".join(row) if isinstance(row, dict) else type(row).__name__
                raise BertctlError(f"{path}: line {number} has no '{field}' field (has: {keys})",
                                   fix="set data.text_field to the column holding the text")
            sentences = split_sentences(str(row[field] or ""))
            if sentences:
                yield sentences


def _hf_documents(source: str, data) -> Iterator[list[str]]:
    import datasets

    try:
        if Path(source).is_dir() and ((Path(source) / "state.json").exists() or (Path(source) / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(source)
            if isinstance(ds, datasets.DatasetDict):
                if data.hf_split not in ds:
                    raise BertctlError(f"{source} has no split '{data.hf_split}' (has: {', '.join(ds)})",
                                       fix="set data.hf_split")
                ds = ds[data.hf_split]
        else:
            ds = datasets.load_dataset(source, name=data.hf_config, split=data.hf_split, streaming=True)
    except BertctlError:
        raise
    except Exception as e:  # datasets raises many types (connection, not found, config)
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise BertctlError(f"cannot load the dataset '{source}' ({first})",
                           fix="check the id/folder and data.hf_config/hf_split; offline, use a local file or folder") from None
    columns = ds.column_names or []
    if columns and data.text_field not in columns:
        raise BertctlError(f"dataset {source} has no column '{data.text_field}' (has: {', '.join(columns)})",
                           fix="set data.text_field")
    for row in ds:
        sentences = split_sentences(str(row[data.text_field] or ""))
        if sentences:
            yield sentences


def documents(data) -> Iterator[list[str]]:
    """Every document of the corpus, in a fixed order, streaming."""
    from bertctl.data.readers import read_text_documents

    n = 0
    for source in _sources(data):
        fmt = _format_of(source, data.format)
        if fmt == "text":
            docs = read_text_documents(source)
        elif fmt == "jsonl":
            if not Path(source).is_file():
                raise BertctlError(f"corpus {source} is not a file", fix="point data.source at a .jsonl file")
            docs = _jsonl_documents(Path(source), data.text_field)
        else:
            docs = _hf_documents(source, data)
        for doc in docs:
            yield doc
            n += 1
            if data.max_docs and n >= data.max_docs:
                return


def is_heldout(doc_index: int, fraction: float) -> bool:
    """Every k-th document (k = 1/fraction) is held out: a fixed split, streaming-friendly."""
    return doc_index % max(2, round(1 / fraction)) == 0


def input_files(data) -> dict[str, Path]:
    """The local files the corpus is read from (fingerprinted in run.json, checked on
    --resume). The World corpus is generated from its settings, which the recipe holds."""
    if data.source is None:
        return {}
    sources = _sources(data)
    return {(f"data.source[{i}]" if len(sources) > 1 else "data.source"): Path(src)
            for i, src in enumerate(sources) if Path(src).exists()}


def corpus_fingerprint(data) -> str:
    """What the token cache depends on in the corpus: files with sizes and mtimes, or the
    World settings, or the dataset id."""
    parts = []
    for source in _sources(data):
        path = Path(source)
        if path.exists():
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            parts.append([(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files])
        else:
            parts.append(source)
    return _hash([CACHE_VERSION, parts, data.format, data.text_field, data.hf_config, data.hf_split,
                  data.heldout, data.max_docs])


# ------------------------------------------------------------------------ tokenizer


def _continuation_tokens(chars: set[str], normalizer, pre_tokenizer) -> list[str]:
    """"##c" for every character c that can continue a word, in a fixed order.

    Why: the WordPiece trainer numbers these tokens in hash-map order as it meets them,
    which changes from process to process, and breaks ties between equally frequent
    merges by those numbers; so the same corpus gave different vocabularies (and token
    ids) on every run (huggingface/tokenizers#1794). Registered up front as special
    tokens they get fixed ids and training is deterministic."""
    normalized = {c for raw in chars for c in normalizer.normalize_str(raw) if not c.isspace()}
    # punctuation is split off as a word of its own, so it never continues one
    inside = [c for c in sorted(normalized) if len(pre_tokenizer.pre_tokenize_str(f"a{c}a")) == 1]
    return [f"##{c}" for c in inside]


def train_tokenizer(texts: Iterator[str], vocab_size: int, lowercase: bool = True, min_frequency: int = 2,
                    chars: set[str] | None = None):
    """A BERT WordPiece tokenizer trained on `texts` (streamed), as a transformers tokenizer.
    `chars`: every character of the texts (`corpus_tokenizer` streams the corpus twice to
    get them); without it the texts are read into memory first."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertTokenizer

    if chars is None:
        texts = list(texts)
        chars = set().union(*map(set, texts))
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    fixed = _continuation_tokens(chars, tok.normalizer, tok.pre_tokenizer)
    trainer = WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS + fixed,
                               continuing_subword_prefix="##", show_progress=False)
    tok.train_from_iterator(texts, trainer)
    vocab = tok.get_vocab()
    if len(vocab) <= len(SPECIALS) + len(fixed):
        raise BertctlError("the corpus is too small to train a tokenizer", fix="give a larger corpus")
    return BertTokenizer(vocab=vocab, do_lower_case=lowercase)


def _too_few_documents(n: int, heldout: float) -> BertctlError:
    return BertctlError(f"the corpus holds {'only one document' if n == 1 else f'{n} documents'}, and every "
                        f"{max(2, round(1 / heldout))}th document (the first included) is held out for evaluation, "
                        "so none is left to train on",
                        fix="give more documents: in a text file, a blank line ends a document (one sentence per line)")


def corpus_tokenizer(recipe, log=print) -> tuple[object, str]:
    """Train (or fetch from the cache) a WordPiece tokenizer on the training documents."""
    from transformers import AutoTokenizer

    t, data = recipe.tokenizer, recipe.data
    key = _hash([corpus_fingerprint(data), t.vocab_size, t.lowercase, t.min_frequency, t.max_docs])
    folder = cache_root(data) / "tokenizers" / key
    if _open_cache(folder, log):
        return AutoTokenizer.from_pretrained(str(folder)), str(folder)

    def texts() -> Iterator[str]:
        # a document at a time, its sentences joined by newlines: the pre-tokenizer splits at
        # any whitespace, so the word counts (and the vocabulary) are those of the sentences,
        # and the trainer gets a fifth as many Python strings (2.2 vs 2.8 s on 2.65 M words)
        for i, doc in enumerate(documents(data)):
            if i >= t.max_docs:
                return
            if not is_heldout(i, data.heldout):
                yield "\n".join(doc)

    chars: set[str] = set()
    for text in texts():  # first pass: the alphabet (see _continuation_tokens), in constant memory
        chars.update(text)
    if not chars:  # every document was held out: a corpus of one document (no blank lines) ends here
        n = sum(1 for _ in itertools.islice(documents(data), 2))
        raise _too_few_documents(n, data.heldout)
    tokenizer = train_tokenizer(texts(), t.vocab_size, t.lowercase, t.min_frequency, chars)
    _save_cache(folder, tokenizer.save_pretrained)
    return tokenizer, str(folder)


def plain_backend(tokenizer):
    """A copy of the fast tokenizer without padding or truncation. Some checkpoints ship a
    tokenizer.json that pads every encoding to a fixed length (MiniLM's pads to 128): that
    must not leak [PAD]s into the packed text, nor change the cache key."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


def tokenizer_fingerprint(tokenizer) -> str:
    return hashlib.sha256(plain_backend(tokenizer).to_str().encode()).hexdigest()[:16]


def _save_atomically(folder: Path, save) -> None:
    """Fill a temporary folder, then rename it into place; a concurrent writer that won
    the race is kept (both wrote the same thing)."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save(str(tmp))
    try:
        os.replace(tmp, folder)
    except OSError:
        if not folder.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- packed sequences


class Example(NamedTuple):
    idx: int  # index in its split: the collator's randomness is keyed on it
    ids: np.ndarray  # int64 [length]
    n_a: int  # tokens of "[CLS] A [SEP]" (token_type 0); == length when there is no pair
    label: int  # pair label (0/1), or -1


class PackedSequences:
    """A memory-mapped split: `len()`, and `[i]` -> Example."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        if self.meta["sequences"] == 0:  # numpy cannot memory-map an empty file
            self.tokens, self.index = np.zeros(0, dtype=self.meta["dtype"]), np.zeros((0, 4), dtype=np.int64)
        else:
            self.tokens = np.memmap(self.folder / "tokens.bin", dtype=self.meta["dtype"], mode="r")
            self.index = np.memmap(self.folder / "index.bin", dtype=np.int64, mode="r").reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Example:
        start, length, n_a, label = (int(v) for v in self.index[i])
        return Example(i, np.asarray(self.tokens[start:start + length], dtype=np.int64), n_a, label)

    def token_counts(self) -> np.ndarray:
        return np.load(self.folder / "counts.npy")


class _SplitWriter:
    """Appends sequences to tokens.bin/index.bin in bounded memory."""

    def __init__(self, folder: Path, vocab_size: int):
        folder.mkdir(parents=True)
        self.folder = folder
        self.dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
        self.tokens = open(folder / "tokens.bin", "wb")
        self.index = open(folder / "index.bin", "wb")
        self.counts = np.zeros(vocab_size, dtype=np.int64)
        self.n_tokens = self.n_sequences = self.n_docs = 0
        self.rows: list[tuple[int, int, int, int]] = []

    def add(self, ids: list[int], n_a: int, label: int) -> None:
        arr = np.asarray(ids, dtype=self.dtype)
        self.tokens.write(arr.tobytes())
        self.counts += np.bincount(arr, minlength=len(self.counts))[:len(self.counts)]
        self.rows.append((self.n_tokens, len(arr), n_a, label))
        self.n_tokens += len(arr)
        self.n_sequences += 1
        if len(self.rows) >= 10_000:
            self._flush_rows()

    def _flush_rows(self) -> None:
        if self.rows:
            self.index.write(np.asarray(self.rows, dtype=np.int64).tobytes())
            self.rows = []

    def close(self, meta: dict) -> None:
        self._flush_rows()
        self.tokens.close()
        self.index.close()
        np.save(self.folder / "counts.npy", self.counts)
        (self.folder / "meta.json").write_text(json.dumps({
            "dtype": np.dtype(self.dtype).name, "sequences": self.n_sequences, "tokens": self.n_tokens,
            "documents": self.n_docs, **meta}, indent=2), encoding="utf-8")


class ContiguousPacker:
    """Plain MLM: [CLS] + (length-2) tokens of running text + [SEP], documents joined by [SEP]
    inside the stream (RoBERTa's FULL-SENTENCES), so no sequence is padded but the last."""

    def __init__(self, length: int, cls_id: int, sep_id: int):
        self.room, self.cls, self.sep, self.buffer = length - 2, cls_id, sep_id, []

    def add(self, doc: list[list[int]]) -> list[tuple[list[int], int, int]]:
        self.buffer.extend(t for s in doc for t in s)
        self.buffer.append(self.sep)
        out = []
        while len(self.buffer) >= self.room:
            ids = [self.cls, *self.buffer[:self.room], self.sep]
            out.append((ids, len(ids), -1))
            self.buffer = self.buffer[self.room:]
        return out

    def finish(self) -> list[tuple[list[int], int, int]]:
        body = self.buffer[:-1] if self.buffer[-1:] == [self.sep] else self.buffer
        if not body:
            return []
        ids = [self.cls, *body, self.sep]
        return [(ids, len(ids), -1)]


class CausalPacker:
    """GPT-style: the stream [CLS] doc [SEP] [CLS] doc [SEP] ... cut into windows of
    length+1 tokens overlapping by one, so inputs = w[:-1] and labels = w[1:] lose nothing."""

    def __init__(self, length: int, cls_id: int, sep_id: int):
        self.length, self.cls, self.sep, self.buffer = length, cls_id, sep_id, []

    def add(self, doc: list[list[int]]) -> list[tuple[list[int], int, int]]:
        self.buffer.append(self.cls)
        self.buffer.extend(t for s in doc for t in s)
        self.buffer.append(self.sep)
        out = []
        while len(self.buffer) >= self.length + 1:
            window = self.buffer[:self.length + 1]
            out.append((window, len(window), -1))
            self.buffer = self.buffer[self.length:]
        return out

    def finish(self) -> list[tuple[list[int], int, int]]:
        return [(self.buffer, len(self.buffer), -1)] if len(self.buffer) >= 2 else []


class PairPacker:
    """NSP/SOP: [CLS] A [SEP] B [SEP], with pairs from pairs.PairStream."""

    def __init__(self, kind: str, length: int, cls_id: int, sep_id: int, seed: int, short_seq_prob: float):
        from bertctl.pretraining.pairs import PairStream

        self.stream = PairStream(kind, length - 3, seed, short_seq_prob)
        self.cls, self.sep = cls_id, sep_id

    def _pack(self, pairs) -> list[tuple[list[int], int, int]]:
        return [([self.cls, *p.a, self.sep, *p.b, self.sep], len(p.a) + 2, p.label) for p in pairs]

    def add(self, doc):
        return self._pack(self.stream.add(doc))

    def finish(self):
        return self._pack(self.stream.finish())


def make_packer(objective, length: int, tokenizer, seed: int):
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if objective.kind == "causal":
        return CausalPacker(length, cls_id, sep_id)
    if objective.pairs == "none":
        return ContiguousPacker(length, cls_id, sep_id)
    return PairPacker(objective.pairs, length, cls_id, sep_id, seed, objective.short_seq_prob)


def _tokenized_documents(docs: Iterator[list[str]], tokenizer, block: int = 64) -> Iterator[list[list[int]]]:
    """Documents as lists of sentences of token ids, tokenised in batches (fast, parallel).
    64 documents a batch: thousands of sentences keep both cores busy, and the Encoding
    objects of a batch stay small (500 took 160 MB more peak memory and was no faster on
    the 2.65 M-word English corpus)."""
    backend = plain_backend(tokenizer)
    pending: list[list[str]] = []

    def flush():
        flat = [s for doc in pending for s in doc]
        # ids only: the _fast variant skips the character offsets (same ids, ~12 % less time)
        encoded = iter(backend.encode_batch_fast(flat, add_special_tokens=False))
        out = [[next(encoded).ids for _ in doc] for doc in pending]
        pending.clear()
        return out

    for doc in docs:
        pending.append(doc)
        if len(pending) >= block:
            yield from flush()
    if pending:
        yield from flush()


def prepare_sequences(recipe, tokenizer, log=print) -> tuple[PackedSequences, PackedSequences, Path]:
    """Tokenise and pack the corpus once (train and held-out splits); later runs with the
    same inputs reuse the cache. Returns (train, heldout, cache folder)."""
    data, obj = recipe.data, recipe.objective
    length = recipe.model.max_length
    key = _hash([corpus_fingerprint(data), tokenizer_fingerprint(tokenizer), length, obj.kind, obj.pairs,
                 obj.short_seq_prob, recipe.train.seed])
    folder = cache_root(data) / "sequences" / key
    if not _open_cache(folder, log):
        log(f"tokenising the corpus into {folder}")

        def build(tmp: str) -> None:
            tmp = Path(tmp)
            vocab = len(tokenizer)
            writers = {"train": _SplitWriter(tmp / "train", vocab), "eval": _SplitWriter(tmp / "eval", vocab)}
            # different seeds per split: the held-out pairs do not mirror the training ones
            packers = {"train": make_packer(obj, length, tokenizer, recipe.train.seed),
                       "eval": make_packer(obj, length, tokenizer, recipe.train.seed + 1)}
            for i, doc in enumerate(_tokenized_documents(documents(data), tokenizer)):
                split = "eval" if is_heldout(i, data.heldout) else "train"
                writers[split].n_docs += 1
                for ids, n_a, label in packers[split].add(doc):
                    writers[split].add(ids, n_a, label)
            for split, writer in writers.items():
                for ids, n_a, label in packers[split].finish():
                    writer.add(ids, n_a, label)
                writer.close({"length": length, "objective": obj.kind, "pairs": obj.pairs})

        folder.parent.mkdir(parents=True, exist_ok=True)
        _save_cache(folder, build)
    train, heldout = PackedSequences(folder / "train"), PackedSequences(folder / "eval")
    if train.meta["documents"] == 0:
        raise _too_few_documents(heldout.meta["documents"], data.heldout)
    for name, split in (("training", train), ("held-out", heldout)):
        if len(split) == 0:
            raise BertctlError(f"the corpus gives no {name} sequences ({split.meta['documents']} documents)",
                               fix="give a larger corpus" + (" or raise data.heldout" if name == "held-out" else ""))
    return train, heldout, folder
