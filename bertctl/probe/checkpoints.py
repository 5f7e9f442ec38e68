"""`probe checkpoints`: when, during pretraining, does the model learn what?

The same probes over every saved checkpoint of one `bertctl pretrain` run, with the
training step on the x-axis:

- pos:   a word-level linear probe for UPOS (World.tagged_sentences)       -> syntax (words)
- order: a probe on [CLS] of sentence pairs, in order vs swapped (as SOP)   -> discourse
- sense: within-sense minus between-sense cosine of a two-sense word      -> semantics
         (position-centred vectors, distinct World sentences: see `probe similarity`)
- and the run's own held-out evaluation rows from metrics.jsonl (masked-token accuracy,
  NSP/SOP accuracy): what the objective itself measured at each evaluation.

Step 0 is a seeded random initialisation of the same shape (not the run's exact init,
which the run does not save): the floor every curve starts from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bertctl.errors import BertctlError
from bertctl.probe.features import Encoder, cosine_matrix, random_like, resolve_layer, wrap

PROPERTY_LABEL = {"pos": "POS probe (word, UPOS, unseen words)", "order": "sentence-order probe ([CLS] of pairs)",
                  "sense": "sense gap (cosine within - between)"}


# ------------------------------------------------------------------------- the run


def run_folder(path: str) -> Path:
    """The pretraining run folder (accepts the run folder or its model/ subfolder)."""
    p = Path(path)
    if p.name == "model" and (p.parent / "checkpoints").is_dir():
        p = p.parent
    if not (p / "checkpoints").is_dir():
        raise BertctlError(f"{path} is not a `bertctl pretrain` run folder with checkpoints/",
                           fix="pass --model runs/pretrain-... (a run saved with train.save_every)")
    return p


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first (half-written ones skipped)."""
    from bertctl.runs import Run

    found = [(int(p.name.split("-")[1]), p) for p in Run(run_dir, "pretrain", main=False).checkpoints()]
    if not found:
        raise BertctlError(f"{run_dir}/checkpoints holds no complete checkpoint",
                           fix="pretrain with train.save_every=N to keep checkpoints along the way")
    return found


def every_nth(items: list, n: int) -> list:
    """Every nth item, always keeping the last one."""
    picked = items[::n]
    return picked if picked[-1] is items[-1] else picked + [items[-1]]


def eval_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Held-out accuracies the run logged: {"mlm_accuracy": [(step, value), ...], ...}."""
    path = run_dir / "metrics.jsonl"
    curves: dict[str, list[tuple[int, float]]] = {}
    if not path.exists():
        return curves
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        for key, value in row.items():
            if key.startswith("eval_") and key.endswith("_accuracy") and isinstance(value, (int, float)):
                curves.setdefault(key.removeprefix("eval_"), []).append((int(row["step"]), float(value)))
    return curves


def load_step(run_dir: Path, checkpoint: Path, tokenizer, device: str, precision="auto") -> Encoder:
    """One checkpoint as a bare encoder (the pretraining heads are not needed)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from bertctl.pretraining.model import load_checkpoint_model

    hf_logging.set_verbosity_error()
    model = load_checkpoint_model(run_dir, checkpoint, AutoModel)
    return wrap(model, tokenizer, f"{run_dir.name} {checkpoint.name}", device, precision)


def run_tokenizer(run_dir: Path):
    from bertctl.pretraining.model import load_checkpoint_tokenizer

    return load_checkpoint_tokenizer(run_dir)


# ------------------------------------------------------------------------ properties


class Probes:
    """The data of every property, built once and reused at every checkpoint."""

    def __init__(self, block, recipe):
        from bertctl.probe.layers import world_data

        self.block, self.recipe = block, recipe
        self.data = {}
        if "pos" in block.properties:
            self.data["pos"] = world_data("world", block.n_train, block.n_test, block.world_seed, block.language,
                                          block.unseen_words)
        if "order" in block.properties:
            self.data["order"] = world_data("world-order", block.n_train, block.n_test, block.world_seed, block.language)
        if "sense" in block.properties:
            from bertctl.probe.config import SimilarityBlock
            from bertctl.probe.similarity import sentences_from

            self.sense_rows, self.sense_word, _, self.sense_reference = sentences_from(SimilarityBlock(
                word=block.word, n_per_sense=block.n_per_sense, world_seed=block.world_seed, language=block.language))

    def baselines(self) -> dict:
        from bertctl.probe.layers import labels_of, majority_baseline

        out = {}
        for name, data in self.data.items():
            out[name] = majority_baseline(labels_of(data, "train"), labels_of(data, "test"))[1]
        return out

    def measure(self, enc: Encoder) -> dict:
        """{property: [value per layer]} for one encoder."""
        from bertctl.probe.layers import per_layer
        from bertctl.probe.similarity import centred_layers, group_means

        r, b = self.recipe, self.block
        out = {}
        for name, data in self.data.items():
            out[name] = per_layer(enc, data, r.seed, b.max_iter, 1.0, "mean", "cls", r.batch_size, r.max_length)
        if "sense" in b.properties:
            texts, groups = [t for t, _ in self.sense_rows], [g for _, g in self.sense_rows]
            # position-centred, as `probe similarity` (raw cosines reward the random init's position component)
            vecs = centred_layers(enc, texts, self.sense_word, self.sense_reference, r.batch_size, r.max_length)
            out["sense"] = [group_means(cosine_matrix(vecs[li]), groups)["gap"] for li in range(enc.n_layers)]
        return out


def pick(values: list[float], layer, n_layers: int) -> tuple[int, float]:
    """(layer, value) plotted for one property at one checkpoint."""
    li = int(np.argmax(values)) if layer == "best" else resolve_layer(int(layer), n_layers)
    return li, float(values[li])


def checkpoints(run_dir: Path, block, recipe, precision="auto", log=lambda line: None) -> dict:
    """All numbers of `probe checkpoints` as one JSON-able dict; `log` gets a line per checkpoint.
    `precision`: the recipe's, or one already resolved (then not again per checkpoint)."""
    steps = every_nth(list_checkpoints(run_dir), block.every)
    tokenizer = run_tokenizer(run_dir)
    probes = Probes(block, recipe)
    rows = []
    if block.include_init:
        first = load_step(run_dir, steps[0][1], tokenizer, recipe.device, precision)
        init = random_like(first, recipe.seed)
        del first
        log(f"step 0 (random init, seed {recipe.seed})")
        rows.append({"step": 0, "checkpoint": None, **probes.measure(init)})
    for step, folder in steps:
        log(f"step {step} ({folder.name})")
        rows.append({"step": step, "checkpoint": str(folder), **probes.measure(load_step(run_dir, folder, tokenizer, recipe.device, precision))})
    n_layers = len(next(iter(v for k, v in rows[-1].items() if k in PROPERTY_LABEL)))
    curves = {}
    for prop in block.properties:
        picked = [pick(row[prop], block.layer, n_layers) for row in rows]
        curves[prop] = {"label": PROPERTY_LABEL[prop], "steps": [row["step"] for row in rows],
                        "layer": [li for li, _ in picked], "value": [v for _, v in picked]}
    return {"run": str(run_dir), "properties": list(block.properties), "layer_rule": str(block.layer),
            "n_layers": n_layers - 1, "baselines": probes.baselines(),
            "curves": curves, "per_checkpoint": rows, "run_evals": eval_curves(run_dir),
            "data": {k: d.describe() for k, d in probes.data.items()}}


def table_rows(result: dict) -> list[dict]:
    """One row per probed step: each property's plotted value, and the run's own evals at that step."""
    evals = {name: dict(points) for name, points in result["run_evals"].items()}
    rows = []
    for i, step in enumerate(next(iter(result["curves"].values()))["steps"]):
        row = {"step": step}
        for prop, c in result["curves"].items():
            row[prop] = c["value"][i]
        for name, points in evals.items():
            row[name] = points.get(step)
        rows.append(row)
    return rows


# -------------------------------------------------------------------------- command


def main(recipe, out=None, say=lambda line: None) -> dict:
    """`bertctl probe checkpoints`: curves per property vs step (PNG), all numbers (JSON).
    Returns the run folder, the result (checkpoints.json) and a table (a row per step) for
    the command to print; `say` gets a progress line as each checkpoint is probed."""
    from bertctl.probe.start import model_name, start
    from bertctl.report import Table, line_plot

    block = recipe.checkpoints
    from bertctl.precision import resolve
    from bertctl.probe.features import pick_device

    run_dir = run_folder(model_name(recipe))
    precision = resolve(recipe.precision, pick_device(recipe.device))  # once, for every checkpoint
    run = start(recipe, "checkpoints", out, precision)
    result = checkpoints(run_dir, block, recipe, precision, log=lambda m: say(f"probing {m}"))
    run.write_json("checkpoints.json", result)
    series = {c["label"] + ("" if block.layer == "best" else f", layer {block.layer}"): (c["steps"], c["value"])
              for c in result["curves"].values()}
    for name, points in result["run_evals"].items():
        series[f"{name.replace('_', ' ')} (run's held-out eval)"] = ([s for s, _ in points], [v for _, v in points])
    hlines = {f"{k} majority": v for k, v in result["baselines"].items()}
    line_plot(run.file("checkpoints.png"), series, "training step (0 = random init)", "accuracy / cosine gap",
              f"What {run_dir.name} learns, and when", hlines=hlines)
    rows = table_rows(result)
    run.write_json("metrics.json", rows[-1])
    table = Table(f"Probes over the checkpoints of {run_dir}", rows,
                  caption=("layer: best per checkpoint" if block.layer == "best" else f"layer {block.layer}")
                  + "; majority: " + ", ".join(f"{k} {v:.3f}" for k, v in result["baselines"].items()))
    run.log(f"probe checkpoints on {run_dir}: {len(rows)} steps")
    return {"run": run.path, "result": result, "tables": [table]}
