"""`bertctl ARGS` under torchrun with the ranks starting more than a second apart (rank 1
sleeps first), each printing the run folder `Run.create` gave it; used by test_faults.py.
The folder name carries the time to the second: computed per rank, it would differ."""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

rank = int(os.environ.get("RANK", "0"))
if rank == 1:
    time.sleep(1.5)

from bertctl import runs  # noqa: E402

_create = runs.Run.create.__func__


def _reporting_create(cls, *args, **kwargs):
    run = _create(cls, *args, **kwargs)
    sys.stdout.flush()  # then one write(2) of a whole line, so the ranks' lines cannot interleave
    os.write(1, f"rank {rank} run folder: {run.path}\n".encode())
    return run


runs.Run.create = classmethod(_reporting_create)
sys.argv = ["bertctl", *sys.argv[1:]]
from bertctl.cli import main  # noqa: E402

main()
