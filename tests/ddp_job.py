"""Run the tiny job under torchrun/accelerate or alone; used by test_distributed.py.

    ddp_job.py OUT                   train (12 steps)
    ddp_job.py OUT --sigterm-at K    rank 1 (only) gets SIGTERM during step K; every rank
                                     prints how it stopped and exits 130
    ddp_job.py OUT --resume          continue OUT from its last checkpoint
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bertctl.config import TrainSettings  # noqa: E402
from bertctl.runs import Run  # noqa: E402
from bertctl.train import Interrupted, fit  # noqa: E402
from tests import _tiny  # noqa: E402

out, args = sys.argv[1], sys.argv[2:]
resume = "--resume" in args
at = int(args[args.index("--sigterm-at") + 1]) if "--sigterm-at" in args else None
rank = int(os.environ.get("RANK", "0"))


def on_step(n: int) -> None:
    if n == at and rank == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, to one process only


s = TrainSettings(epochs=2, batch_size=32, lr=2e-3, log_every=1, precision="fp32", save_every=0)
try:
    fit(_tiny.model(dropout=0.0), _tiny.job(on_step=on_step), s, Run.create(out, "ddp", resume), resume=resume)
except Interrupted as e:
    # one write of the whole line: print() writes the text and the newline apart, and under
    # PYTHONUNBUFFERED the two ranks' lines can interleave in the shared pipe
    sys.stdout.write(f"rank {rank}: {e.message}\n")
    sys.stdout.flush()
    if rank:  # as the CLI does: leave rank 0 time to finish before torchrun stops everyone
        import time

        time.sleep(2)
    sys.exit(130)
