"""`probe similarity`: is one word's contextual vector different in different senses?

Take the target word's vector (one layer) in each sentence, compare all pairs by cosine,
and, when the sentences carry sense labels, compare the mean similarity *within* a sense
to the mean *between* senses. Two controls:

- the static input embedding of the word (identical in every sentence, whatever the sense:
  within == between, so any gap must come from context);
- a randomly initialised encoder of the same shape (context mixing without learning).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bertctl.errors import BertctlError
from bertctl.probe.features import (Encoder, cosine_matrix, find_target, position_means, random_like, resolve_layer,
                                    span_features)


# ------------------------------------------------------------------------ the numbers


def group_means(sim: np.ndarray, groups: list) -> dict:
    """Mean similarity over pairs i<j in the same group and in different groups.

    `gap` = within - between: positive when the vectors separate the groups.
    """
    n = len(groups)
    if sim.shape != (n, n):
        raise ValueError(f"matrix {sim.shape} does not match {n} groups")
    within, between = [], []
    for i in range(n):
        for j in range(i + 1, n):
            (within if groups[i] == groups[j] else between).append(float(sim[i, j]))
    if not within or not between:
        raise BertctlError("within/between needs at least two groups and one group with two sentences",
                           fix="label the sentences with at least two senses")
    w, b = float(np.mean(within)), float(np.mean(between))
    return {"within": w, "between": b, "gap": w - b, "pairs_within": len(within), "pairs_between": len(between)}


# --------------------------------------------------------------------------- data


def read_sentence_file(path: str) -> list[tuple[str, str | None]]:
    """One sentence per line, optionally 'sentence<TAB>group'; or JSONL with text/group."""
    p = Path(path)
    if not p.is_file():
        raise BertctlError(f"sentence file {p} does not exist", fix="check similarity.file")
    rows = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if p.suffix == ".jsonl":
            try:
                obj = json.loads(line)
                rows.append((str(obj["text"]), None if obj.get("group") is None else str(obj["group"])))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise BertctlError(f"{p}: line {number} is not a JSON object with a 'text' key",
                                   fix='write lines like {"text": "...", "group": "fruit"}') from None
        else:
            text, _, group = line.partition("\t")
            rows.append((text.strip(), group.strip() or None))
    if not rows:
        raise BertctlError(f"{p} holds no sentences", fix="one sentence per line")
    return rows


def sentences_from(block) -> tuple[list[tuple[str, str | None]], str, str, list[str] | None]:
    """(sentences with groups, the word to find in them, where they came from, reference
    sentences for the position means or None).

    Priority: file > the recipe's list > the World generator. The World writes "xx"
    sentences with the xx word for `word` (apple -> its xx translation), so the word to
    find is translated through World.bilingual_lexicon() there. World sentences repeat
    (few templates): exact repeats are dropped, since any encoder, even a random one,
    gives a repeated sentence similarity 1.
    """
    reference = read_sentence_file(block.reference) if block.reference else None
    reference = [t for t, _ in reference] if reference else None
    if block.file:
        return read_sentence_file(block.file), block.word, str(block.file), reference
    if block.sentences:
        rows = [(s, None) if isinstance(s, str) else (s.text, s.group) for s in block.sentences]
        return rows, block.word, "recipe", reference
    from bertctl.data.world import World

    world = World(seed=block.world_seed, language=block.language)
    rows = distinct_per_group(world.sense_sentences(block.word, 8 * block.n_per_sense), block.n_per_sense)
    senses = list(dict.fromkeys(g for _, g in rows))
    rows = sorted(rows, key=lambda r: senses.index(r[1]))  # one block per sense: a readable heatmap
    word = dict(world.bilingual_lexicon()).get(block.word, block.word) if block.language == "xx" else block.word
    if reference is None:  # the world's own stories: many positions, every kind of word
        reference = [s for doc in world.documents(100) for s in doc]
    origin = f"{world!r}.sense_sentences({block.word!r}), {block.n_per_sense} distinct per sense"
    return rows, word, origin, reference


def distinct_per_group(rows: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """The first n distinct sentences of each group, interleaved as they came."""
    seen, count, out = set(), {}, []
    for text, group in rows:
        if text in seen or count.get(group, 0) >= n:
            continue
        seen.add(text)
        count[group] = count.get(group, 0) + 1
        out.append((text, str(group)))
    return out


def locate(sentences: list[str], word: str) -> list[tuple[int, int]]:
    spans = []
    for i, text in enumerate(sentences):
        span = find_target(text, word)
        if span is None:
            raise BertctlError(f"the word {word!r} is not in sentence {i + 1}: {text[:80]!r}",
                           fix="check the spelling (a whole-word match, any case) or set similarity.word")
        spans.append(span)
    return spans


# ------------------------------------------------------------------------ the probe


def target_vectors(enc: Encoder, sentences: list[str], word: str, batch_size: int = 32, max_length: int = 128,
                   center: np.ndarray | None = None):
    spans = locate(sentences, word)
    feats = span_features(enc, sentences, [[s] for s in spans], "mean", batch_size, max_length, center)
    if not feats.found.all():
        i = int(np.flatnonzero(~feats.found)[0])
        raise BertctlError(f"sentence {i + 1} is cut before the word {word!r} (max_length={max_length})",
                           fix="raise max_length or shorten the sentence")
    return feats


def centred_layers(enc: Encoder, sentences: list[str], word: str, reference: list[str] | None, batch_size: int = 32,
                   max_length: int = 128) -> np.ndarray:
    """[L+1, n, H] target vectors after subtracting each position's mean hidden state.

    The position means come from `reference` sentences, or (None) from the probe sentences
    themselves with the target word left out.
    """
    if reference:
        means = position_means(enc, reference, None, batch_size, max_length)
    else:
        means = position_means(enc, sentences, locate(sentences, word), batch_size, max_length)
    return target_vectors(enc, sentences, word, batch_size, max_length, means).layers


def _group_block(raw: np.ndarray, centred: np.ndarray | None, groups: list, layer: int) -> dict:
    out = {"raw": group_means(cosine_matrix(raw[layer]), groups)}
    if centred is not None:
        out["position_centred"] = group_means(cosine_matrix(centred[layer]), groups)
    return out


def similarity(enc: Encoder, rows: list[tuple[str, str | None]], word: str, layer: int = -1, random_control: bool = True,
               seed: int = 0, batch_size: int = 32, max_length: int = 128, center: str = "position",
               reference: list[str] | None = None) -> dict:
    """All numbers of `probe similarity` as one JSON-able dict.

    `center="position"`: the matrix and the headline use position-centred vectors (see
    `features.position_means`); the raw cosines are reported next to them either way.
    """
    sentences = [t for t, _ in rows]
    groups = [g for _, g in rows]
    feats = target_vectors(enc, sentences, word, batch_size, max_length)
    centred = centred_layers(enc, sentences, word, reference, batch_size, max_length) if center == "position" else None
    layer = resolve_layer(layer, enc.n_layers)
    shown = centred if centred is not None else feats.layers
    sim = cosine_matrix(shown[layer])
    result = {
        "model": enc.label, "precision": enc.precision.name, "word": word, "layer": layer, "n_layers": enc.n_layers - 1,
        "vectors": "position-centred" if centred is not None else "raw",
        "position_means_from": None if centred is None else ("reference sentences" if reference else "the sentences (target left out)"),
        "sentences": [{"text": t, "group": g, "sub_tokens": int(k), "unknown_token": bool(u)}
                      for (t, g), k, u in zip(rows, feats.n_tokens, feats.unk)],
        "cosine": sim.round(6).tolist(),
        "cosine_raw": cosine_matrix(feats.layers[layer]).round(6).tolist(),
    }
    if feats.unk.any():
        result["warning"] = (f"{word!r} maps to the unknown token in {int(feats.unk.sum())} sentence(s): "
                             "this tokenizer's vocabulary lacks it, so its vectors say little")
    labelled = all(g is not None for g in groups) and len(set(groups)) >= 2
    if labelled:
        g = result["groups"] = {
            "contextual": group_means(sim, groups),
            "model": _group_block(feats.layers, centred, groups, layer),
            "static_embedding": group_means(cosine_matrix(feats.static), groups),
            "by_layer": [{"layer": li, **group_means(cosine_matrix(shown[li]), groups)} for li in range(enc.n_layers)],
        }
        if random_control:
            rnd = random_like(enc, seed)
            r_raw = target_vectors(rnd, sentences, word, batch_size, max_length).layers
            r_cen = centred_layers(rnd, sentences, word, reference, batch_size, max_length) if center == "position" else None
            g["random_init"] = {"model": rnd.label, **group_means(cosine_matrix((r_cen if r_cen is not None else r_raw)[layer]), groups),
                                **_group_block(r_raw, r_cen, groups, layer)}
            del rnd
    return result


def summary_rows(result: dict) -> list[dict]:
    """The within/between table: the chosen layer (raw and centred), the controls, every layer."""
    g, L = result["groups"], result["layer"]
    rows = [{"name": f"model, layer {L}, {kind.replace('_', '-')}", **_pick(v)} for kind, v in g["model"].items()]
    if "random_init" in g:
        rows += [{"name": f"random init, layer {L}, {kind.replace('_', '-')} (control)", **_pick(g["random_init"][kind])}
                 for kind in g["model"]]
    rows.append({"name": "static input embedding (control)", **_pick(g["static_embedding"])})
    rows += [{"name": f"  model, layer {r['layer']}, {result['vectors']}", **_pick(r)} for r in g["by_layer"] if r["layer"] != L]
    return rows


def _pick(d: dict) -> dict:
    return {"within": d["within"], "between": d["between"], "gap": d["gap"]}


def short_labels(rows: list[tuple[str, str | None]], width: int = 28) -> list[str]:
    out = []
    for i, (text, group) in enumerate(rows, 1):
        t = text if len(text) <= width else text[:width - 1] + "…"
        out.append(f"{i}{' [' + group + ']' if group else ''} {t}")
    return out


# -------------------------------------------------------------------------- command


def main(recipe, out=None) -> dict:
    """`bertctl probe similarity`: JSON + heatmap in a run folder. Returns the run folder,
    the result (similarity.json), and for the command to print: the cosine matrix and the
    sense summary tables, and the result's warning if it has one."""
    from bertctl.probe.start import model_name, renderable, start
    from bertctl.probe.features import load_encoder
    from bertctl.report import Table, heatmap
    from bertctl.runs import write_metrics

    block = recipe.similarity
    rows, word, origin, reference = sentences_from(block)
    enc = load_encoder(model_name(recipe), recipe.device, recipe.model.trust_remote_code, recipe.model.allow_pickle,
                       recipe.precision)
    run = start(recipe, "similarity", out, enc.precision)
    result = similarity(enc, rows, word, block.layer, recipe.random_control, recipe.seed,
                        recipe.batch_size, recipe.max_length, block.center, reference)
    result["sentences_from"] = origin
    run.write_json("similarity.json", result)

    labels = short_labels(rows) if all(renderable(t) for t, _ in rows) else \
        [f"{i}{' [' + g + ']' if g else ''}" for i, (_, g) in enumerate(rows, 1)]
    heatmap(run.file("similarity.png"), result["cosine"], labels,
            f"cosine of '{word if renderable(word) else 'target'}', layer {result['layer']}")

    n = len(rows)
    matrix_rows = [{"#": str(i + 1), "sense": g or "", **{str(j + 1): f"{result['cosine'][i][j]:.2f}" for j in range(n)}}
                   for i, (_, g) in enumerate(rows)]
    tables = [Table(f"Cosine similarity of {word!r}, layer {result['layer']}: {enc.label}", matrix_rows,
                    caption="; ".join(f"{i + 1}: {t}" for i, (t, _) in enumerate(rows))[:2000])]
    if "groups" in result:
        tables.append(Table("Within-sense vs between-sense similarity", summary_rows(result), ["name", "within", "between", "gap"],
                            caption="gap = within - between. Position-centred: each position's mean vector "
                                    f"({result['position_means_from']}) subtracted first. The static embedding cannot tell senses apart."))
        g = result["groups"]
        scores = {"within": g["contextual"]["within"], "between": g["contextual"]["between"],
                  "gap": g["contextual"]["gap"]}
        write_metrics(run, {"vectors": result["vectors"], **scores,
                            "raw_gap": g["model"]["raw"]["gap"], "static_gap": g["static_embedding"]["gap"],
                            **({"random_init_gap": g["random_init"]["gap"],
                                "random_init_raw_gap": g["random_init"]["raw"]["gap"]} if "random_init" in g else {})},
                      scores={"senses": scores}, main_metric="gap")
    else:  # no sense groups: still every run folder's metrics.json
        write_metrics(run, {"vectors": result["vectors"], "layer": result["layer"], "sentences": n}, scores={})
    run.log(f"probe similarity on {enc.label}: {len(rows)} sentences from {origin}")
    return {"run": run.path, "result": result, "tables": tables,
            "warnings": [result["warning"]] if "warning" in result else []}
