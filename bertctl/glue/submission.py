"""Test-set predictions in the GLUE leaderboard's submission format.

One TSV per test set, named as the leaderboard expects (CoLA.tsv, MNLI-m.tsv, AX.tsv, ...),
with a header `index<TAB>prediction` and one line per test example, the label written
as the leaderboard reads it: "0"/"1" for CoLA, SST-2, MRPC, QQP and WNLI;
entailment/not_entailment for QNLI and RTE; entailment/neutral/contradiction for MNLI
and AX; a float clipped to [0, 5] for STS-B. All files go into submission.zip.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.glue.tasks import GlueTask
from bertctl.runs import atomic_write_text


def leaderboard_label(task: GlueTask, prediction) -> str:
    """One prediction as the leaderboard wants it written."""
    if task.regression:
        return f"{min(5.0, max(0.0, float(prediction))):.3f}"
    label = str(prediction)
    if label not in task.labels:
        raise BertctlError(f"{task.name}: prediction {label!r} is not one of {', '.join(task.labels)}",
                           fix="this is a bug in the prediction step; please report it")
    return label


def write_tsv(path: Path, task: GlueTask, ids: list[str], predictions: list) -> Path:
    if len(ids) != len(predictions):
        raise BertctlError(f"{path.name}: {len(predictions)} predictions for {len(ids)} test rows",
                           fix="rerun the task (delete its folder) to predict the whole test set")
    lines = ["index\tprediction"] + [f"{i}\t{leaderboard_label(task, p)}" for i, p in zip(ids, predictions)]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def zip_folder(folder: Path, zip_path: Path) -> Path:
    """submission.zip with the TSVs at its top level (the leaderboard reads no folders)."""
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.glob("*.tsv")):
            z.write(f, arcname=f.name)
    tmp.replace(zip_path)
    return zip_path
