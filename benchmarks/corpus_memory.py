"""Peak memory of pretraining data preparation as the corpus grows 10x.

`bertctl pretrain` prepares its data in two streamed passes over the corpus (bertctl/
pretraining/corpus.py): train a WordPiece tokenizer (`corpus_tokenizer`), then tokenise,
pack into NSP sequence pairs and write the token cache (`prepare_sequences`). Neither
should hold the corpus in memory, so peak memory should stay flat while the corpus grows.

Each size runs in a fresh Python process (nothing cached, nothing shared) on a text corpus
of the generated World stories written with `bertctl.data.world.write_corpus`:

    1x    one file of --mb megabytes
    10x   a folder of --factor such files (the 1x text, repeated: generating 200 MB of
          World text would take minutes on its own; World's vocabulary is small, so the
          tokenizer's word counts are the same size either way, and what grows is exactly
          what has to stream: documents, token ids, NSP pairs, packed sequences)

Peak resident memory is the child's ru_maxrss; "above start" subtracts its resident memory
once its imports are done (torch/transformers/tokenizers are most of the total).

    python benchmarks/corpus_memory.py            # 10 MB vs 100 MB: ~2 minutes on 2 idle cores
    python benchmarks/corpus_memory.py --mb 20    # 20 MB vs 200 MB: ~4 minutes on 2 idle cores
    python benchmarks/corpus_memory.py --quick    # 2 MB vs 20 MB: under a minute

Ends with one line:  RESULT corpus_memory growth=<peak at 10x / peak at 1x> ...  (target <= 1.2)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _rss_mb() -> float:
    """Current resident memory of this process, in MB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(source: str, cache: str) -> None:
    """Prepare the pretraining data of `source` exactly as `bertctl pretrain` does; print JSON."""
    from bertctl.pretraining.config import PretrainRecipe
    from bertctl.pretraining.corpus import corpus_tokenizer, prepare_sequences

    # what a real run has loaded anyway, before the baseline: "above start" is then the data's own memory
    import tokenizers  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoTokenizer, BertTokenizer  # noqa: F401

    recipe = PretrainRecipe.model_validate({"data": {"source": source, "cache_dir": cache},
                                            "tokenizer": {"source": "train"}})
    start = _rss_mb()
    t0 = time.perf_counter()
    tokenizer, _ = corpus_tokenizer(recipe)
    t_tok = time.perf_counter() - t0
    train, heldout, _ = prepare_sequences(recipe, tokenizer, log=lambda m: None)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    print(json.dumps({"start_mb": round(start, 1), "peak_mb": round(peak, 1), "seconds": round(seconds, 1),
                      "tokenizer_seconds": round(t_tok, 1), "train_sequences": len(train),
                      "heldout_sequences": len(heldout), "documents": train.meta["documents"] + heldout.meta["documents"],
                      "tokens": int(train.meta["tokens"] + heldout.meta["tokens"])}))


def measure(source: Path, cache: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(source), str(cache)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"child failed on {source}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_world(path: Path, megabytes: float) -> Path:
    """World stories until the file holds `megabytes` (write_corpus in chunks of documents)."""
    from bertctl.data.world import write_corpus

    path.parent.mkdir(parents=True, exist_ok=True)
    target = int(megabytes * 1e6)
    probe = path.with_suffix(".probe")
    write_corpus(probe, 500, seed=0, language="en")
    per_doc = probe.stat().st_size / 500
    probe.unlink()
    write_corpus(path, max(2, int(target / per_doc)), seed=0, language="en")
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=10.0, help="size of the 1x corpus in MB")
    p.add_argument("--factor", type=int, default=10, help="the large corpus is this many times the 1x one")
    p.add_argument("--quick", action="store_true", help="2 MB vs 20 MB")
    p.add_argument("--child", nargs=2, metavar=("SOURCE", "CACHE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return 0
    mb = 2.0 if args.quick else args.mb

    with tempfile.TemporaryDirectory(prefix="corpus-memory-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        one = write_world(tmp / "1x" / "world.txt", mb)
        many = tmp / f"{args.factor}x"
        many.mkdir()
        for i in range(args.factor):  # a folder of .txt files is one corpus (read in sorted order)
            shutil.copyfile(one, many / f"part-{i:03d}.txt")
        print(f"corpus: {one.stat().st_size / 1e6:.1f} MB and {args.factor} x that "
              f"({sum(f.stat().st_size for f in many.iterdir()) / 1e6:.0f} MB), written in {time.perf_counter() - t0:.0f} s")
        results = {}
        for name, source in (("1x", one), (f"{args.factor}x", many)):
            r = measure(source, tmp / f"cache-{name}")
            results[name] = r
            print(f"{name:>4}: {r['documents']:>9,} documents, {r['tokens']:>12,} tokens, "
                  f"{r['train_sequences']:>9,} sequences in {r['seconds']:6.1f} s "
                  f"(tokenizer {r['tokenizer_seconds']:.1f} s) | peak RSS {r['peak_mb']:7.1f} MB, "
                  f"{r['peak_mb'] - r['start_mb']:6.1f} MB above start")
    small, big = results["1x"], results[f"{args.factor}x"]
    growth = big["peak_mb"] / small["peak_mb"]
    above = (big["peak_mb"] - big["start_mb"]) / max(small["peak_mb"] - small["start_mb"], 1e-9)
    print(f"RESULT corpus_memory growth={growth:.3f} peak_1x_mb={small['peak_mb']:.0f} "
          f"peak_{args.factor}x_mb={big['peak_mb']:.0f} growth_above_start={above:.2f} "
          f"corpus_mb={mb:g}x{args.factor} target=<=1.2 {'ok' if growth <= 1.2 else 'FAIL'}")
    return 0 if growth <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
