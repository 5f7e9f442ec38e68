"""Run the tiny job under torchrun/accelerate or alone; used by test_distributed.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bertctl.config import TrainSettings  # noqa: E402
from bertctl.runs import Run  # noqa: E402
from bertctl.train import fit  # noqa: E402
from tests import _tiny  # noqa: E402

out = sys.argv[1]
s = TrainSettings(epochs=2, batch_size=32, lr=2e-3, log_every=1, precision="fp32", save_every=0)
fit(_tiny.model(dropout=0.0), _tiny.job(), s, Run.create(out, "ddp"))
