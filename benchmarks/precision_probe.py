"""Does `precision: auto` pick the faster format on this machine? The hardware flags it
reads (bertctl/precision.py) against timed matmuls in each format.

    python benchmarks/precision_probe.py          # ~15 seconds

Prints what the CPU (or GPU) reports, what auto picks and why, then the best of several
timed matmuls (2048², CPU; 8192², GPU) and an autocast nn.Linear forward+backward of
BERT-base's shape per format, and ends with

    RESULT precision_probe auto=<format> bf16_over_fp32=<matmul speed ratio> agrees=yes|no ...

`agrees`: the 16-bit format auto chose measured faster than fp32, or auto chose fp32 and
no 16-bit format was 10 % faster.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def linear_step_flops(dtype, device: str, seconds: float = 2.0) -> float:
    """FLOP/s of an autocast Linear(768 -> 3072) forward + backward on 2,048 tokens."""
    import torch

    layer = torch.nn.Linear(768, 3072, device=device)
    x = torch.randn(2048, 768, device=device, requires_grad=True)
    flops = 3 * 2 * 2048 * 768 * 3072
    best, deadline = 0.0, None
    for i in range(1000):
        t = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            y = layer(x)
        y.float().sum().backward()
        if device != "cpu":
            torch.cuda.synchronize()
        if i:  # the first is a warm-up
            best = max(best, flops / (time.perf_counter() - t))
        deadline = deadline or time.perf_counter() + seconds
        if time.perf_counter() > deadline:
            break
    return best


def main() -> int:
    import torch

    from benchmarks.machine import matmul_flops, tag
    from bertctl.precision import detect, resolve

    hw = detect()
    auto = resolve("auto")
    device = "cuda" if hw.device == "cuda" else "cpu"
    print(f"{hw.device}: {hw.name}; native bf16: {hw.why_bf16 or 'no'}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(auto.line())
    formats = {"fp32": torch.float32, "bf16": torch.bfloat16} | ({"fp16": torch.float16} if device == "cuda" else {})
    speed = {}
    for name, dtype in formats.items():
        mm = matmul_flops(dtype, device)
        lin = linear_step_flops(dtype, device)
        speed[name] = mm
        print(f"  {name}: matmul {mm / 1e9:8.1f} GFLOP/s, autocast Linear fwd+bwd {lin / 1e9:8.1f} GFLOP/s")
    fastest = max(speed, key=speed.get)
    # auto chose well: a 16-bit format it picked beats fp32, or fp32 where no 16-bit one does by 10 %
    # (bf16 and fp16 tie on GPUs, so which of the two wins by noise does not matter)
    if auto.name == "fp32":
        agrees = all(v < 1.1 * speed["fp32"] for v in speed.values())
    else:
        agrees = speed[auto.name] > speed["fp32"]
    print(f"RESULT precision_probe auto={auto.name} fastest={fastest} bf16_over_fp32={speed['bf16'] / speed['fp32']:.2f} "
          f"agrees={'yes' if agrees else 'no'} {tag()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
