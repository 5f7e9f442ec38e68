"""`probe align`: are two languages aligned inside a multilingual encoder?

Word vectors: each word's contextual vector averaged over its occurrences in sentences of
its language (or the word encoded alone, or its static input embedding). Translation:
for a word b of language B, the nearest word a of language A by cosine, over the A words
of the bilingual list; top-1 / top-5 accuracy against the list.

The mean shift: the vectors of one language share a component that marks the language
(Libovický et al., 2020; Pires et al., 2019). Adding the difference of the two language
means, mean(A) - mean(B), to a B vector moves it into A's region; if what is left is
shared meaning, nearest neighbours become translations. The means are over all word
occurrences of each language's sentences (not only the listed words).

Offline, World(language="xx") is a second "language" with the same content as English
("en"), so a model pretrained by bertctl on both (`bertctl pretrain pretrain_bilingual`)
can be probed here. (Zero-shot transfer, fine-tune on en and evaluate on xx, is the
finetune command's job: see the recipe probe_align.yaml.)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bertctl.errors import BertctlError
from bertctl.metrics import CJK
from bertctl.probe.features import Encoder, resolve_layer, span_features, word_spans


# ---------------------------------------------------------------------- translation


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.where(n == 0, 1.0, n)


def translate(queries: np.ndarray, candidates: np.ndarray, gold: list[set[int]], shift: np.ndarray | None = None,
              ks: tuple[int, ...] = (1, 5)) -> dict:
    """Top-k accuracy of nearest-neighbour translation.

    queries [n, H] (language B), candidates [m, H] (language A), gold[i] = the candidate
    indices that translate query i; shift [H] is added to every query first (A - B means).
    """
    Q = queries if shift is None else queries + shift[None]
    sims = _unit(Q) @ _unit(candidates).T                       # [n, m]
    ranked = np.argsort(-sims, axis=1, kind="stable")
    out = {}
    for k in ks:
        hits = [bool(set(ranked[i, :k].tolist()) & gold[i]) for i in range(len(gold))]
        out[f"top{k}"] = float(np.mean(hits)) if hits else 0.0
    return out


def shifted_and_plain(vec_a: np.ndarray, vec_b: np.ndarray, pairs: list[tuple[int, int]], mean_a: np.ndarray,
                      mean_b: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict:
    """B -> A translation with and without the mean shift, over the A words in `pairs`.

    vec_a [nA, H], vec_b [nB, H]: one vector per distinct word; pairs: (a index, b index).
    """
    cand = sorted({a for a, _ in pairs})                      # the A words of the list
    where = {a: i for i, a in enumerate(cand)}
    queries = sorted({b for _, b in pairs})
    gold = [{where[a] for a, b in pairs if b == q} for q in queries]
    Q, C = vec_b[queries], vec_a[cand]
    return {"plain": translate(Q, C, gold, None, ks), "shifted": translate(Q, C, gold, mean_a - mean_b, ks),
            "n_queries": len(queries), "n_candidates": len(cand)}


# ------------------------------------------------------------------------- vectors


def read_lexicon(path: str) -> list[tuple[str, str]]:
    p = Path(path)
    if not p.is_file():
        raise BertctlError(f"lexicon {p} does not exist", fix="pass a TSV file with 'word_a<TAB>word_b' lines")
    pairs = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0].strip() or not cols[1].strip():
            raise BertctlError(f"{p}: line {number} is not 'word_a<TAB>word_b'", fix="separate the two words by a tab")
        pairs.append((cols[0].strip(), cols[1].strip()))
    if not pairs:
        raise BertctlError(f"{p} holds no word pairs", fix="one 'word_a<TAB>word_b' pair per line")
    return pairs


def read_sentences(path: str, n: int) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise BertctlError(f"corpus {p} does not exist", fix="pass a text file with one sentence per line")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:n]


def world_sentences(language: str, n: int, seed: int) -> list[str]:
    """Sentences of World(seed, language) documents. A seed other than the pretraining
    corpus's (0 by default) gives new sentences of the same vocabulary."""
    from bertctl.data.world import World

    out: list[str] = []
    docs = World(seed=seed, language=language).documents(max(1, n // 5 + 1))
    for d in docs:
        out += d
    return out[:n]


def contextual_vectors(enc: Encoder, sentences: list[str], words: list[str], max_occurrences: int, batch_size: int,
                       max_length: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray, dict]:
    """Per word (lower-cased match): mean contextual [L+1, H] and static [H] over its first
    `max_occurrences` occurrences; plus the language means over *all* word occurrences.

    Words are found between spaces; a listed word with CJK characters (Chinese has no
    spaces) is also found wherever it occurs inside a sentence."""
    cjk = sorted({w for w in words if CJK.search(w)}, key=len, reverse=True)
    spans = [word_spans(s) + [(w, m.span()) for w in cjk for m in re.finditer(re.escape(w), s)] for s in sentences]
    feats = span_features(enc, sentences, [[sp for _, sp in ws] for ws in spans], "mean", batch_size, max_length)
    keys = [w.lower() for ws in spans for w, _ in ws]
    ok = feats.found
    mean_ctx = feats.layers[:, ok].mean(1)                                   # [L+1, H]
    mean_static = feats.static[ok].mean(0)                                   # [H]
    wanted = {w.lower() for w in words}
    rows: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if ok[i] and k in wanted and len(rows.setdefault(k, [])) < max_occurrences:
            rows[k].append(i)
    ctx = {k: feats.layers[:, idx].mean(1) for k, idx in rows.items()}
    static = {k: feats.static[idx].mean(0) for k, idx in rows.items()}
    return ctx, static, mean_ctx, mean_static, {k: len(v) for k, v in rows.items()}


def isolated_vectors(enc: Encoder, words: list[str], batch_size: int, max_length: int):
    """Each word encoded alone ([CLS] word [SEP]); the language mean is over the listed words."""
    uniq = sorted({w.lower() for w in words})
    feats = span_features(enc, uniq, [[(0, len(w))] for w in uniq], "mean", batch_size, max_length)
    ctx = {w: feats.layers[:, i] for i, w in enumerate(uniq)}
    static = {w: feats.static[i] for i, w in enumerate(uniq)}
    return ctx, static, feats.layers.mean(1), feats.static.mean(0), {w: 1 for w in uniq}


# ---------------------------------------------------------------------------- probe


def align(enc: Encoder, lexicon: list[tuple[str, str]], sentences_a: list[str] | None, sentences_b: list[str] | None,
          vectors: str = "contextual", layer: int | str = -1, max_occurrences: int = 20, batch_size: int = 32,
          max_length: int = 128) -> dict:
    """All numbers of `probe align` as one JSON-able dict (B -> A is the headline direction)."""
    words_a, words_b = [a for a, _ in lexicon], [b for _, b in lexicon]
    if vectors == "isolated":
        va = isolated_vectors(enc, words_a, batch_size, max_length)
        vb = isolated_vectors(enc, words_b, batch_size, max_length)
    else:
        if not sentences_a or not sentences_b:
            raise BertctlError("contextual (and static) vectors need sentences of both languages",
                               fix="set align.corpus_a and align.corpus_b, or use align.vectors=isolated")
        va = contextual_vectors(enc, sentences_a, words_a, max_occurrences, batch_size, max_length)
        vb = contextual_vectors(enc, sentences_b, words_b, max_occurrences, batch_size, max_length)
    ctx_a, static_a, mean_a, mean_static_a, count_a = va
    ctx_b, static_b, mean_b, mean_static_b, count_b = vb

    # keep the pairs whose two words both have vectors; index the distinct words
    kept = [(a.lower(), b.lower()) for a, b in lexicon if a.lower() in ctx_a and b.lower() in ctx_b]
    kept = list(dict.fromkeys(kept))
    if len(kept) < 2:
        raise BertctlError(f"only {len(kept)} word pair(s) of the lexicon occur in the sentences of both languages",
                           fix="give more sentences (align.n_sentences), another lexicon, or align.vectors=isolated")
    list_a, list_b = sorted({a for a, _ in kept}), sorted({b for _, b in kept})
    ia, ib = {w: i for i, w in enumerate(list_a)}, {w: i for i, w in enumerate(list_b)}
    pairs = [(ia[a], ib[b]) for a, b in kept]
    rev = [(b, a) for a, b in pairs]

    per_layer = []
    for li in range(enc.n_layers):
        A = np.stack([ctx_a[w][li] for w in list_a])
        B = np.stack([ctx_b[w][li] for w in list_b])
        per_layer.append({"layer": li,
                          "b_to_a": shifted_and_plain(A, B, pairs, mean_a[li], mean_b[li]),
                          "a_to_b": shifted_and_plain(B, A, rev, mean_b[li], mean_a[li])})
    SA, SB = np.stack([static_a[w] for w in list_a]), np.stack([static_b[w] for w in list_b])
    static = {"b_to_a": shifted_and_plain(SA, SB, pairs, mean_static_a, mean_static_b),
              "a_to_b": shifted_and_plain(SB, SA, rev, mean_static_b, mean_static_a)}

    if layer == "best":  # chosen on these very words: an optimistic pick, said so in the JSON
        chosen = max(range(enc.n_layers), key=lambda li: per_layer[li]["b_to_a"]["shifted"]["top1"])
    else:
        chosen = resolve_layer(int(layer), enc.n_layers)
    head = static if vectors == "static" else per_layer[chosen]
    n_cand = head["b_to_a"]["n_candidates"]
    if vectors == "static":
        A, B, mu_a, mu_b = SA, SB, mean_static_a, mean_static_b
    else:
        A = np.stack([ctx_a[w][chosen] for w in list_a])
        B = np.stack([ctx_b[w][chosen] for w in list_b])
        mu_a, mu_b = mean_a[chosen], mean_b[chosen]
    cand = sorted({a for a, _ in pairs})
    plain, shifted = (nearest(B, A[cand], shift) for shift in (None, mu_a - mu_b))
    gold = {}
    for a, b in pairs:
        gold.setdefault(b, []).append(list_a[a])
    translations = [{"b": list_b[b], "gold": gold[b], "plain": list_a[cand[plain[b]]],
                     "shifted": list_a[cand[shifted[b]]]} for b in sorted(gold)]
    return {
        "model": enc.label, "precision": enc.precision.name, "vectors": vectors, "layer": None if vectors == "static" else chosen,
        "layer_rule": str(layer), "pairs_in_lexicon": len(lexicon), "pairs_used": len(kept),
        "pairs_missing": len(set(lexicon)) - len(kept),
        "mean_occurrences_a": float(np.mean([count_a[a] for a in list_a])),
        "mean_occurrences_b": float(np.mean([count_b[b] for b in list_b])),
        "chance_top1": 1.0 / n_cand, "chance_top5": min(1.0, 5.0 / n_cand),
        "headline": head, "per_layer": per_layer, "static": static, "translations": translations,
    }


def nearest(queries: np.ndarray, candidates: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """Index of each query's nearest candidate by cosine (after adding `shift`)."""
    Q = queries if shift is None else queries + shift[None]
    return np.argmax(_unit(Q) @ _unit(candidates).T, axis=1)


def by_tag(translations: list[dict], tag_of) -> list[dict]:
    """Top-1 accuracy per part of speech of the A word (World lexicon): which kinds of
    words the two languages share in the encoder."""
    groups: dict[str, list[dict]] = {}
    for t in translations:
        groups.setdefault(tag_of(t["gold"][0]), []).append(t)
    return [{"tag": tag, "n": len(ts), "top1": float(np.mean([t["plain"] in t["gold"] for t in ts])),
             "top1_shifted": float(np.mean([t["shifted"] in t["gold"] for t in ts]))}
            for tag, ts in sorted(groups.items(), key=lambda kv: -len(kv[1]))]


def summary_rows(result: dict) -> list[dict]:
    rows = []
    for li, r in enumerate(result["per_layer"]):
        rows.append(_row(f"layer {li}" + (" *" if li == result["layer"] else ""), r["b_to_a"]))
    rows.append(_row("static input embedding", result["static"]["b_to_a"]))
    rows.append({"name": "chance", "top1": result["chance_top1"], "top5": result["chance_top5"],
                 "top1 shifted": result["chance_top1"], "top5 shifted": result["chance_top5"]})
    return rows


def _row(name: str, r: dict) -> dict:
    return {"name": name, "top1": r["plain"]["top1"], "top5": r["plain"]["top5"],
            "top1 shifted": r["shifted"]["top1"], "top5 shifted": r["shifted"]["top5"]}


# -------------------------------------------------------------------------- command


def lexicon_and_sentences(block) -> tuple[list[tuple[str, str]], list[str] | None, list[str] | None, str]:
    from bertctl.data.world import World

    if block.lexicon:
        lexicon, origin = read_lexicon(block.lexicon), str(block.lexicon)
    else:
        if {block.language_a, block.language_b} != {"en", "xx"}:
            raise BertctlError("the World lexicon pairs en with xx", fix="set align.language_a/b to en and xx, or give align.lexicon")
        lexicon = World(block.world_seed).bilingual_lexicon()                 # [(en, xx)]
        if block.language_a == "xx":
            lexicon = [(b, a) for a, b in lexicon]
        origin = "World.bilingual_lexicon()"
    if block.vectors == "isolated":
        return lexicon, None, None, origin
    for side, language, corpus in (("a", block.language_a, block.corpus_a), ("b", block.language_b, block.corpus_b)):
        if not corpus and language not in ("en", "xx"):
            raise BertctlError(f"align.corpus_{side} is empty: World sentences exist only in en and xx, not {language}",
                               fix=f"set align.corpus_{side} to sentences of {language} (one per line), "
                                   "or use align.vectors=isolated")
    sa = read_sentences(block.corpus_a, block.n_sentences) if block.corpus_a else \
        world_sentences(block.language_a, block.n_sentences, block.world_seed)
    sb = read_sentences(block.corpus_b, block.n_sentences) if block.corpus_b else \
        world_sentences(block.language_b, block.n_sentences, block.world_seed)
    return lexicon, sa, sb, origin


def main(recipe, out=None) -> dict:
    """`bertctl probe align`: per-layer plot + JSON in a run folder. Returns the run folder,
    the result (align.json) and the translation accuracy table for the command to print."""
    from bertctl.probe.start import model_name, start
    from bertctl.probe.features import load_encoder
    from bertctl.report import Table, line_plot
    from bertctl.runs import write_metrics

    block = recipe.align
    lexicon, sa, sb, origin = lexicon_and_sentences(block)
    enc = load_encoder(model_name(recipe), recipe.device, recipe.model.trust_remote_code, recipe.model.allow_pickle,
                       recipe.precision)
    run = start(recipe, "align", out, enc.precision)
    result = align(enc, lexicon, sa, sb, block.vectors, block.layer, block.max_occurrences, recipe.batch_size,
                   recipe.max_length)
    result.update({"lexicon": origin, "language_a": block.language_a, "language_b": block.language_b,
                   "sentences_a": len(sa or []), "sentences_b": len(sb or [])})
    if not block.lexicon:  # the World knows every word's part of speech
        from bertctl.data.world import World

        world = World(block.world_seed, block.language_a)
        known = set(world.vocabulary())
        result["by_tag"] = by_tag(result["translations"],
                                  lambda w: world.pos_of(w) if w in known else next(
                                      (world.pos_of(v) for v in known if v.lower() == w), "X"))
    run.write_json("align.json", result)
    h = result["headline"]["b_to_a"]
    scores = {"top1": h["plain"]["top1"], "top5": h["plain"]["top5"],
              "top1_shifted": h["shifted"]["top1"], "top5_shifted": h["shifted"]["top5"]}
    write_metrics(run, {**scores, "chance_top1": result["chance_top1"], "layer": result["layer"]},
                  scores={f"{block.language_b}->{block.language_a}": scores}, main_metric="top1")
    xs = [r["layer"] for r in result["per_layer"]]
    line_plot(run.file("align.png"), {
        "top-1, no shift": (xs, [r["b_to_a"]["plain"]["top1"] for r in result["per_layer"]]),
        "top-1, mean shift": (xs, [r["b_to_a"]["shifted"]["top1"] for r in result["per_layer"]]),
        "top-5, mean shift": (xs, [r["b_to_a"]["shifted"]["top5"] for r in result["per_layer"]]),
    }, "layer (0 = embeddings)", "translation accuracy", f"{block.language_b} -> {block.language_a} by nearest neighbour",
        hlines={"chance (top-1)": result["chance_top1"]})
    table = Table(f"Translation {block.language_b} -> {block.language_a}: {enc.label}", summary_rows(result),
                  ["name", "top1", "top5", "top1 shifted", "top5 shifted"],
                  caption=f"{result['pairs_used']} word pairs ({origin}), {result['vectors']} vectors; "
                          f"* = layer {result['layer']} (headline); shifted = + mean({block.language_a}) - mean({block.language_b})")
    run.log(f"probe align on {enc.label}: {result['pairs_used']} pairs")
    return {"run": run.path, "result": result, "tables": [table]}
