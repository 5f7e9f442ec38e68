"""Where a run came from: the exact command line, the hardware, the library versions.

The CLI records its arguments here (`record`) before running a command, so files written
by library code (model cards) can quote the command exactly; library calls that did not
come from the CLI fall back to the resolved recipe, which reproduces the run as well.
"""

from __future__ import annotations

import os
import platform
import shlex

from bertctl.distributed import world_size

_ARGV: list[str] | None = None


def record(argv: list[str]) -> None:
    global _ARGV
    _ARGV = [str(a) for a in argv]


def command_line(fallback: str) -> str:
    return "bertctl " + shlex.join(_ARGV) if _ARGV is not None else fallback


def hardware() -> str:
    """E.g. '1 x NVIDIA H100 80GB HBM3' or 'CPU: 16 cores (x86_64)', plus the process count."""
    import torch

    world = world_size()
    if torch.cuda.is_available():
        what = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    else:
        what = f"CPU: {os.cpu_count()} cores ({platform.machine()}, {torch.get_num_threads()} torch threads)"
    return what + (f", {world} processes" if world > 1 else "")


def versions() -> str:
    import torch
    import transformers

    from bertctl import __version__

    return f"bertctl {__version__}, torch {torch.__version__}, transformers {transformers.__version__}, " \
           f"Python {platform.python_version()}"
