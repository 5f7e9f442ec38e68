"""Which number format a command computes in: the one place `precision: auto` is decided.

Every command that runs a model (training, evaluation, `predict`, probes, prompt scoring,
QLoRA's compute dtype) asks `resolve(requested, device)` and gets a `ResolvedPrecision`:
the format used, and why; `report` says it (once on the terminal, always in log.txt and
run.json). `auto` (the default everywhere) picks the fastest correct format
for the hardware the command is running on, not the one the defaults were tuned on:

- CUDA GPU with bf16 (Ampere and newer): bf16.
- CUDA GPU without it (T4, V100): fp16, with accelerate's loss scaling when training
  (fp32 where the weights themselves are cast: a causal LM loaded for prompting).
- CPU with native bf16 (AMX tiles or AVX512-BF16, as the CPU reports them): bf16.
- anything else (a CPU without them, Apple MPS, an unknown device): fp32.

Why the CPU flags and not a timed matmul: on a CPU without AVX512-BF16/AMX, oneDNN
emulates bf16 and a bf16 matmul runs at about a quarter of the fp32 speed (60 vs 250
GFLOP/s measured on a 2-core AVX-512 cloud CPU); with AVX512-BF16 (AMD Zen 4) it ran at
2.3x fp32 (440 vs 193 GFLOP/s), and with AMX several times more. The flags decide the
kernel oneDNN runs, so they predict the speed without the noise of a timing on a shared
machine (`benchmarks/precision_probe.py` prints both for the machine it runs on).
CPUs of other architectures (aarch64's bf16 extension) are left at fp32: not measured.

An explicit bf16/fp16/fp32 keeps its meaning; one the hardware only emulates gets a
`warning` naming the faster choice. torch is imported only when a device is examined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from bertctl.recipe import Precision

CHOICES = get_args(Precision)  # auto, bf16, fp32, fp16: what a recipe may say


@dataclass(frozen=True)
class Hardware:
    """What the precision choice depends on; `detect` reads it, tests build it by hand."""

    device: str  # "cpu", "cuda", "mps", ...
    name: str  # CPU model or GPU name, for messages and benchmark RESULT lines
    native_bf16: bool  # computes bf16 at full speed (not emulated)
    native_fp16: bool  # computes fp16 at full speed (CUDA GPUs)
    why_bf16: str  # e.g. "AMX", "AVX512-BF16", "compute capability 8.0"; "" when not native


@dataclass(frozen=True)
class ResolvedPrecision:
    """A resolved precision: `name` is bf16, fp16 or fp32; `requested` what the recipe said."""

    name: str
    requested: str
    reason: str
    warning: str | None = None

    @property
    def dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.name]

    @property
    def autocast(self) -> bool:
        return self.name != "fp32"

    def autocast_context(self, device_type: str):
        """torch.autocast in this precision on that device (off for fp32)."""
        import torch

        return torch.autocast(device_type, dtype=self.dtype, enabled=self.autocast)

    def line(self) -> str:
        """The one line printed and logged, e.g. 'precision: bf16 (auto: this CPU computes bf16 natively ...)'."""
        how = "auto: " if self.requested == "auto" else "as asked: "
        return f"precision: {self.name} ({how}{self.reason})"

    def record(self) -> dict:
        """What run.json, metrics.json and the model card keep."""
        return {"used": self.name, "requested": self.requested, "reason": self.reason}


def _cpuinfo(*keys: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `keys` (None: none, or no file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(keys):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo (or platform) gives it."""
    import platform

    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


def _cpu_flags() -> set[str]:
    return set((_cpuinfo("flags", "Features") or "").split())


def cpu_bf16() -> str:
    """'AMX' or 'AVX512-BF16' when this CPU computes bf16 natively, else ''.

    torch's own CPU checks first (what oneDNN will use); /proc/cpuinfo when torch's
    private helpers are missing (another torch version)."""
    import torch

    checks = (("AMX", "_is_amx_tile_supported", "amx_bf16"), ("AVX512-BF16", "_is_avx512_bf16_supported", "avx512_bf16"))
    flags = None
    for label, helper, flag in checks:
        fn = getattr(torch.cpu, helper, None)
        if fn is not None:
            try:
                if fn():
                    return label
                continue
            except Exception:  # noqa: BLE001 - a private helper; fall back to the flags
                pass
        flags = _cpu_flags() if flags is None else flags
        if flag in flags:
            return label
    return ""


def detect(device=None) -> Hardware:
    """The hardware a command runs on. `device`: a torch.device or string; None = the
    default device (CUDA when available, else CPU)."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)  # "cuda:1", torch.device("cuda"), ...
    kind = device.type
    if kind == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        native = major >= 8  # Ampere and newer compute bf16 in their tensor cores
        return Hardware("cuda", torch.cuda.get_device_name(index), native, True,
                        f"compute capability {major}.{minor}" if native else "")
    if kind == "cpu":
        why = cpu_bf16()
        return Hardware("cpu", cpu_name(), bool(why), False, why)
    return Hardware(kind, kind, False, False, "")


def choose(requested: str, hw: Hardware, cast_weights: bool = False) -> ResolvedPrecision:
    """The decision itself, from the hardware alone (pure: tests call it with a made Hardware).
    `cast_weights`: the weights themselves are stored in the format (prompting loads a causal
    LM so), not autocast over fp32 ones: auto then never picks fp16, whose range a model
    trained in bf16 can overflow."""
    if requested not in CHOICES:
        from bertctl.errors import BertctlError

        raise BertctlError(f"precision {requested!r} is not one of {', '.join(CHOICES)}", fix="use auto")
    where = f"{hw.device} {hw.name}" if hw.device != "cpu" else f"CPU {hw.name}"
    if hw.native_bf16:
        best, why = "bf16", f"{where} computes bf16 natively ({hw.why_bf16})"
    elif hw.device == "cuda" and hw.native_fp16 and cast_weights:
        best, why = "fp32", f"{where} has no native bf16, and fp16 weights could overflow"
    elif hw.device == "cuda" and hw.native_fp16:
        best, why = "fp16", f"{where} has no native bf16; fp16 (with loss scaling when training)"
    elif hw.device == "cpu":
        best, why = "fp32", f"{where} has no native bf16 (no AMX or AVX512-BF16): bf16 would be emulated and slower"
    else:
        best, why = "fp32", f"{where}: no mixed precision used there"
    if requested == "auto":
        return ResolvedPrecision(best, "auto", why)
    if requested == best or requested == "fp32":
        return ResolvedPrecision(requested, requested, "set in the recipe")
    emulated = (requested == "bf16" and not hw.native_bf16) or (requested == "fp16" and not hw.native_fp16)
    warning = (f"precision {requested} is emulated on {where} and slower than {best}: set the recipe's precision "
               f"to auto (or {best})") if emulated else None
    return ResolvedPrecision(requested, requested, "set in the recipe", warning)


def resolve(requested: str | None = "auto", device=None, cast_weights: bool = False) -> ResolvedPrecision:
    """`requested` (None = auto) on the device a command runs on."""
    return choose(requested or "auto", detect(device), cast_weights)


_ANNOUNCED: set[tuple] = set()


def announce(p: ResolvedPrecision, say) -> None:
    """Print the resolved precision (and any warning) once per process and choice: a
    command that trains twice (compare-init, eval-glue's tasks) says it once."""
    key = (p.name, p.requested)
    if key in _ANNOUNCED:
        return
    _ANNOUNCED.add(key)
    say(p.line())
    if p.warning:
        say(f"warning: {p.warning}")


def report(p: ResolvedPrecision, run, say) -> None:
    """The one way a command says its precision: a line (and any warning) in the run's
    log.txt and the choice in its run.json, every time; on the terminal once per process."""
    run.log(p.line() + (f"; warning: {p.warning}" if p.warning else ""))
    run.note(precision=p.record())
    if run.main:
        announce(p, say)
