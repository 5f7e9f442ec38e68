"""Benchmark: what the unit tests no longer time. `bertctl --help` against the Hugging Face
CLI (`hf --help`, huggingface_hub), interleaved so load from other processes hits both
alike, and the World generator on a 10,000-document corpus.

    python benchmarks/startup.py [--runs 7]

Ends with

    RESULT startup ratio=<hf --help median / bertctl --help median> help_s=... world_10k_s=...
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def seconds(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    ours = [sys.executable, "-m", "bertctl", "--help"]
    hf = shutil.which("hf", path=str(Path(sys.executable).parent)) or shutil.which("hf")
    if hf is None:
        sys.exit("the baseline `hf` (huggingface_hub's CLI) is not installed")
    seconds(ours), seconds([hf, "--help"])  # warm the file cache for both
    times: dict[str, list[float]] = {"bertctl --help": [], "hf --help": []}
    for _ in range(args.runs):
        times["bertctl --help"].append(seconds(ours))
        times["hf --help"].append(seconds([hf, "--help"]))
    for name, ts in times.items():
        print(f"{name:16s} min {min(ts):.3f} s  median {statistics.median(ts):.3f} s  max {max(ts):.3f} s")

    from bertctl.data.world import World

    t0 = time.perf_counter()
    World(1).documents(10_000)
    world = time.perf_counter() - t0
    print(f"World(1).documents(10_000): {world:.2f} s")
    ratio = statistics.median(times["hf --help"]) / statistics.median(times["bertctl --help"])
    print(f"RESULT startup ratio={ratio:.2f} help_s={statistics.median(times['bertctl --help']):.3f} "
          f"world_10k_s={world:.2f}")


if __name__ == "__main__":
    main()
