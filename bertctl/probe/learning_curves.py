"""`probe checkpoints`: when, during pretraining, does the model learn what?

The same probes over every saved checkpoint of one `bertctl pretrain` run, with the
training step on the x-axis:

- pos:   a word-level linear probe for UPOS (World.tagged_sentences, or a .conllu
         file such as UD English EWT: checkpoints.data)                    -> syntax (words)
- order: a probe on [CLS] of sentence pairs, in order vs swapped (as SOP)   -> discourse
- sense: within-sense minus between-sense cosine of a two-sense word      -> semantics
         (position-centred vectors, distinct World sentences: see `probe similarity`)
- masked_pos: the masked LM's own accuracy on masked words, per part of speech (every
         word of the tagged sentences masked once; see probe/masked_pos.py)  -> what the
         objective learns first (Chiang, Huang and Lee 2020)
- and the run's own held-out evaluation rows from metrics.jsonl (masked-token accuracy,
  NSP/SOP accuracy): what the objective itself measured at each evaluation.

Step 0 is a seeded random initialisation of the same shape (not the run's exact init,
which the run does not save): the floor every curve starts from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertctl.errors import BertctlError
from bertctl.probe.features import Encoder, cosine_matrix, resolve_layer, seeded_init, wrap

PROPERTY_LABEL = {"pos": "POS probe (word, UPOS, unseen words)", "masked_pos": "masked-word accuracy per tag", "order": "sentence-order probe ([CLS] of pairs)",
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
    from bertctl.runs import Run

    curves: dict[str, list[tuple[int, float]]] = {}
    for row in Run(run_dir, "pretrain", main=False).metrics_history():
        for key, value in row.items():
            if key.startswith("eval_") and key.endswith("_accuracy") and isinstance(value, (int, float)):
                curves.setdefault(key.removeprefix("eval_"), []).append((int(row["step"]), float(value)))
    return curves


def load_step(run_dir: Path, checkpoint: Path | None, tokenizer, device: str, precision="auto",
              masked: bool = False, seed: int = 0) -> tuple[Encoder, object]:
    """One checkpoint as a bare encoder, and with `masked` its masked-LM (encoder + MLM head,
    for masked_pos) too. checkpoint=None: a seeded random init of the same shape (step 0)."""
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    from bertctl.pretraining.model import load_checkpoint_model

    hf_logging.set_verbosity_error()
    auto_cls = AutoModelForMaskedLM if masked else AutoModel
    if checkpoint is None:
        model = seeded_init(AutoConfig.from_pretrained(str(run_dir / "model_config")), seed, auto_cls)
        label = f"random init (seed {seed})"
    else:
        model = load_checkpoint_model(run_dir, checkpoint, auto_cls)
        label = f"{run_dir.name} {checkpoint.name}"
    if not masked:
        return wrap(model, tokenizer, label, device, precision), None
    model.to(device if device != "auto" else "cpu").eval()
    enc = wrap(model.base_model, tokenizer, label, device, precision)
    model.to(enc.device)
    return enc, model


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
            self.data["pos"] = tagged_data(block)
        if "masked_pos" in block.properties:
            self.tagged = masked_sentences(block, self.data.get("pos"))
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

    def measure(self, enc: Encoder, mlm=None) -> dict:
        """{property: [value per layer]} for one encoder; masked_pos: {tag: accuracy row}
        from its masked LM `mlm`."""
        from bertctl.probe.layers import per_layer
        from bertctl.probe.masked_pos import accuracy_by_tag
        from bertctl.probe.similarity import centred_layers, group_means

        r, b = self.recipe, self.block
        out = {}
        if mlm is not None:
            out["masked_pos"] = accuracy_by_tag(mlm, enc.tokenizer, self.tagged, enc.precision, enc.device,
                                                r.batch_size, enc.limit(r.max_length))
        for name, data in self.data.items():
            out[name] = per_layer(enc, data, r.seed, b.max_iter, 1.0, "mean", "cls", r.batch_size, r.max_length)
        if "sense" in b.properties:
            texts, groups = [t for t, _ in self.sense_rows], [g for _, g in self.sense_rows]
            # position-centred, as `probe similarity` (raw cosines reward the random init's position component)
            vecs = centred_layers(enc, texts, self.sense_word, self.sense_reference, r.batch_size, r.max_length)
            out["sense"] = [group_means(cosine_matrix(vecs[li]), groups)["gap"] for li in range(enc.n_layers)]
        return out


def tagged_data(block):
    """The POS probe's sentences: World's, or a .conllu file's (UD EWT: real English)."""
    from bertctl.probe.layers import file_data, world_data

    if block.data == "world":
        return world_data("world", block.n_train, block.n_test, block.world_seed, block.language, block.unseen_words)
    if not Path(block.data).is_file():
        raise BertctlError(f"probe data {block.data} is not a file",
                           fix="pass checkpoints.data=world or the path of a .conllu file (e.g. UD English EWT)")
    return file_data(block.data, block)


def masked_sentences(block, data=None) -> list[tuple[list[str], list[str]]]:
    """masked_pos: n_masked tagged sentences, seeded, from the same source as the POS probe."""
    import random

    if block.data == "world":
        from bertctl.data.world import World

        sentences = World(seed=block.world_seed, language=block.language).tagged_sentences(block.n_masked)
        return [([w for w, _ in s], [t for _, t in s]) for s in sentences]
    data = data or tagged_data(block)  # the POS probe's, when it already read the file
    rows = data.train + data.test
    random.Random(block.world_seed).shuffle(rows)
    return rows[:block.n_masked]


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
    masked = "masked_pos" in block.properties
    rows = []
    todo = ([(0, None)] if block.include_init else []) + steps
    for step, folder in todo:
        log(f"step {step} ({folder.name})" if folder else f"step 0 (random init, seed {recipe.seed})")
        enc, mlm = load_step(run_dir, folder, tokenizer, recipe.device, precision, masked, recipe.seed)
        rows.append({"step": step, "checkpoint": str(folder) if folder else None, **probes.measure(enc, mlm)})
        n_layers = enc.n_layers
        del enc, mlm
    curves = {}
    for prop in block.properties:
        if prop == "masked_pos":
            continue
        picked = [pick(row[prop], block.layer, n_layers) for row in rows]
        curves[prop] = {"label": PROPERTY_LABEL[prop], "steps": [row["step"] for row in rows],
                        "layer": [li for li, _ in picked], "value": [v for _, v in picked]}
    return {"run": str(run_dir), "properties": list(block.properties), "layer_rule": str(block.layer),
            "n_layers": n_layers - 1, "baselines": probes.baselines(),
            "curves": curves, "masked_pos": masked_curves(rows) if masked else None,
            "per_checkpoint": rows, "run_evals": eval_curves(run_dir),
            "data": {k: d.describe() for k, d in probes.data.items()}}


# the classes drawn in masked_pos.png (ten lines, ten colours); every tag is in the JSON and the table
PLOTTED_TAGS = ("ALL", "FUNCTION", "NOUN", "VERB", "ADJ", "ADV", "DET", "ADP", "PRON", "PUNCT")
MIN_WORDS = 50  # a tag with fewer scored words is left out of the masked_pos curves (too noisy)


def masked_curves(rows: list[dict]) -> dict:
    """{tag: {"steps", "accuracy", "words", "half_step"}} for the tags with enough words,
    most frequent first; half_step: when the tag reached half of its final accuracy."""
    from bertctl.probe.masked_pos import half_final_step

    last = rows[-1]["masked_pos"]
    out = {}
    for tag, final in last.items():
        if final["total"] < MIN_WORDS:
            continue
        steps = [r["step"] for r in rows]
        values = [r["masked_pos"].get(tag, {}).get("accuracy", 0.0) for r in rows]
        out[tag] = {"steps": steps, "accuracy": values, "words": final["total"],
                    "half_step": half_final_step(steps, values)}
    return out


def table_rows(result: dict) -> list[dict]:
    """One row per probed step: each property's plotted value, and the run's own evals at that step."""
    evals = {name: dict(points) for name, points in result["run_evals"].items()}
    rows = []
    for i, step in enumerate(r["step"] for r in result["per_checkpoint"]):
        row = {"step": step}
        for prop, c in result["curves"].items():
            row[prop] = c["value"][i]
        for tag in ("ALL", "NOUN", "VERB", "ADJ", "FUNCTION"):
            if tag in (result.get("masked_pos") or {}):
                row[f"masked {tag}"] = result["masked_pos"][tag]["accuracy"][i]
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
    from bertctl.runs import write_metrics

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
    if result["masked_pos"]:
        mp = result["masked_pos"]
        line_plot(run.file("masked_pos.png"), {f"{tag} ({c['words']} words)": (c["steps"], c["accuracy"])
                                               for tag, c in mp.items() if tag in PLOTTED_TAGS},
                  "training step (0 = random init)", "masked-word accuracy",
                  f"Masked-word accuracy per part of speech, {run_dir.name}", legend_outside=True)
    rows = table_rows(result)
    write_metrics(run, rows[-1], scores={f"step {rows[-1]['step']}": rows[-1]})
    table = Table(f"Probes over the checkpoints of {run_dir}", rows,
                  caption=("layer: best per checkpoint" if block.layer == "best" else f"layer {block.layer}")
                  + "; majority: " + ", ".join(f"{k} {v:.3f}" for k, v in result["baselines"].items()))
    tables = [table]
    if result["masked_pos"]:
        tables.append(Table("When each part of speech is learnt (masked-word accuracy)",
                            [{"tag": tag, "words": c["words"], "final accuracy": c["accuracy"][-1],
                              "step at half of final": c["half_step"]} for tag, c in result["masked_pos"].items()],
                            caption="FUNCTION = ADP AUX CCONJ DET PART PRON SCONJ together; ALL = every word"))
    run.log(f"probe checkpoints on {run_dir}: {len(rows)} steps")
    return {"run": run.path, "result": result, "tables": tables}
