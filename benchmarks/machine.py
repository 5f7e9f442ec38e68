"""What every benchmark says about the machine it measured on, and the peak its MFU uses.

    tag()                          'machine=AMD_EPYC cpu_bf16=AVX512-BF16 threads=2' (or the GPU name):
                                   appended to the RESULT lines of the throughput benchmarks, so a
                                   figure never travels without its machine
    peak_flops(precision, given_tflops=0.0)  (FLOP/s, source) of the precision a side computed in

Peaks: a GPU's dense datasheet figure for its name (bf16/fp16 tensor cores; fp32 without
TF32), else the best of several timed matmuls in that precision on this machine. On a CPU
without native bf16 the bf16 "peak" is the emulated one, below fp32's: a side is always
measured against the format it used, never against a format it did not use.
"""

from __future__ import annotations

import time

# Dense tensor-core peaks from NVIDIA's datasheets (TFLOP/s, without sparsity), bf16 = fp16.
GPU_BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "GH200": 989.4,
                        "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0, "A100": 312.0, "L40S": 362.1,
                        "A10G": 70.0, "L4": 121.0, "T4": 65.0, "V100": 125.0}
GPU_FP32_PEAK_TFLOPS = {"H200": 66.9, "H100 SXM": 66.9, "H100 80GB HBM3": 66.9, "GH200": 66.9, "H100 NVL": 60.0,
                        "H100 PCIe": 51.2, "H100": 51.2, "A100": 19.5, "L40S": 91.6, "A10G": 31.2, "L4": 30.3,
                        "T4": 8.1, "V100": 15.7}


def tag() -> str:
    """The machine in RESULT-line form (no spaces inside values)."""
    import torch

    from bertctl.precision import detect

    hw = detect()
    name = hw.name.replace(" ", "_")
    if hw.device == "cuda":
        return f"machine={name} gpu_bf16={'yes' if hw.native_bf16 else 'no'}"
    return f"machine={name} cpu_bf16={hw.why_bf16 or 'none'} threads={torch.get_num_threads()}"


def matmul_flops(dtype, device: str = "cpu", seconds: float = 2.0) -> float:
    """FLOP/s of a big matmul in `dtype` here (the best of several timed runs)."""
    import torch

    n = 2048 if device == "cpu" else 8192
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    torch.matmul(a, b)  # warm-up (oneDNN / cuBLAS picks its kernel)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        torch.matmul(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def peak_flops(precision: str, given_tflops: float = 0.0) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from) for MFU of a side that computed in `precision`."""
    import torch

    if given_tflops:
        return given_tflops * 1e12, "--peak-tflops"
    from bertctl.precision import ResolvedPrecision

    dtype = ResolvedPrecision(precision, precision, "").dtype
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        table = GPU_FP32_PEAK_TFLOPS if precision == "fp32" else GPU_BF16_PEAK_TFLOPS
        for key, tflops in table.items():  # most specific names first
            if key in name:
                return tflops * 1e12, f"datasheet {precision}, {name}"
        return matmul_flops(dtype, "cuda"), f"measured {precision} matmul, {name} (not in the datasheet table)"
    return matmul_flops(dtype), f"measured {precision} matmul, CPU"
