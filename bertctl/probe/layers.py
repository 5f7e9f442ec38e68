"""`probe layers`: which layer holds a property? Linear probes on frozen features.

For every `hidden_states` index (0 = embeddings), a logistic regression (scikit-learn,
fixed seed, bounded iterations, standardised features) is trained on a train split and
scored on a held-out split. Two baselines frame each number:

- majority class: the accuracy of always predicting the most frequent training label;
- a random-init encoder of the same shape: token identity survives random layers, so a
  probe on random features can already tag many words. Only the margin over this control
  is evidence of what pretraining put into the model.

Word labels (UPOS from CoNLL-U or World.tagged_sentences) use one vector per word (first
sub-token or mean of sub-tokens); sentence labels use mean pooling or [CLS].
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bertctl.errors import BertctlError
from bertctl.probe.features import Encoder, random_like, sentence_features, word_features


# ------------------------------------------------------------------------------ data


@dataclass
class ProbeData:
    """A probing task: word level (sentences of words with one tag each) or sentence level."""

    level: str                                       # "word" | "sentence"
    source: str                                      # where it came from, for the report
    train: list = field(default_factory=list)        # word: [(words, tags)]; sentence: [(text, pair|None, label)]
    test: list = field(default_factory=list)
    unseen: frozenset | None = None                  # word level: test only these (lower-cased) word types,
    #                                                  train only on the others

    def describe(self) -> str:
        unit = "sentences" if self.level == "word" else "examples"
        extra = f", tested on {len(self.unseen)} word types unseen in training" if self.unseen else ""
        return f"{self.source}: {len(self.train)} train / {len(self.test)} test {unit}{extra}"

    def keep(self, rows: list, side: str) -> np.ndarray | None:
        """Word level with unseen types: which words of `rows` belong to this side."""
        if self.level != "word" or not self.unseen:
            return None
        held = np.array([w.lower() in self.unseen for words, _ in rows for w in words], dtype=bool)
        return held if side == "test" else ~held


def unseen_types(rows: list, fraction: float, seed: int) -> frozenset:
    """A seeded `fraction` of the word types (lower-cased) of each tag, kept out of training.

    Why: when most words have one tag, a probe can memorise each word's tag from any
    features that keep word identity, random ones included. Testing on word types it
    never saw asks whether the features *generalise* the category. The split is made per
    tag (by a type's most frequent tag) and always leaves a tag at least one training
    type, so every tag can be learnt; tags with a single type are never tested.
    """
    from collections import Counter, defaultdict

    counts: dict[str, Counter] = defaultdict(Counter)
    for words, tags in rows:
        for w, t in zip(words, tags):
            counts[w.lower()][t] += 1
    by_tag: dict[str, list[str]] = defaultdict(list)
    for w in sorted(counts):
        by_tag[counts[w].most_common(1)[0][0]].append(w)
    rng, held = random.Random(seed), []
    for tag in sorted(by_tag):
        types = by_tag[tag]
        rng.shuffle(types)
        held += types[:min(len(types) - 1, round(fraction * len(types)))]
    return frozenset(held)


def split(rows: list, n_train: int, n_test: int, seed: int) -> tuple[list, list]:
    """Shuffle with a fixed seed, then the first n_train rows train and the next n_test test.

    Splitting whole sentences keeps the words of one sentence on one side.
    """
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    if len(rows) < 2:
        raise BertctlError(f"only {len(rows)} example(s) to probe", fix="give a larger data set")
    if len(rows) < n_train + n_test:  # small file: keep the train:test ratio
        n_train = max(1, round(len(rows) * n_train / (n_train + n_test)))
        n_test = len(rows) - n_train
    return rows[:n_train], rows[n_train:n_train + n_test]


def order_pairs(documents: list[list[str]], n: int, seed: int) -> list[tuple[str, str, str]]:
    """Sentence-order task (as SOP): consecutive sentences in order ("ordered") or swapped."""
    rng = random.Random(seed)
    pairs = [(d[i], d[i + 1]) for d in documents for i in range(len(d) - 1)]
    rng.shuffle(pairs)
    out = []
    for k, (a, b) in enumerate(pairs[:n]):
        out.append((a, b, "ordered") if k % 2 == 0 else (b, a, "swapped"))
    return out


# World probe data sets: name -> (level, rows of n examples). Word level: (words, tags);
# sentence level: (text, text_pair or None, label).
WORLD_DATA = {
    "world": ("word", lambda world, n, seed: [([w for w, _ in s], [t for _, t in s]) for s in world.tagged_sentences(n)]),
    "world-topic": ("sentence", lambda world, n, seed: [(r["text"], None, str(r["label"])) for r in world.topic(n)]),
    "world-sentiment": ("sentence", lambda world, n, seed: [(r["text"], None, str(r["label"])) for r in world.sentiment(n)]),
    "world-order": ("sentence", lambda world, n, seed: order_pairs(world.documents(max(8, n)), n, seed)),
}


def world_data(kind: str, n_train: int, n_test: int, seed: int, language: str = "en",
               unseen_fraction: float = 0.0) -> ProbeData:
    from bertctl.data.world import World

    if kind not in WORLD_DATA:
        raise BertctlError(f"unknown data {kind!r}",
                           fix=f"use {', '.join(WORLD_DATA)} or a file path")
    level, make = WORLD_DATA[kind]
    rows = make(World(seed=seed, language=language), n_train + n_test, seed)
    train, test = split(rows, n_train, n_test, seed)
    unseen = unseen_types(train + test, unseen_fraction, seed) if level == "word" and unseen_fraction else None
    return ProbeData(level, f"World(seed={seed}, language={language!r}) {kind}", train, test, unseen)


def file_data(path: str, block) -> ProbeData:
    from bertctl.data.readers import read_conllu, read_table, require_columns

    p = Path(path)
    if p.suffix.lower() == ".conllu":
        rows = [(s["tokens"], s["tags"]) for s in read_conllu(p, block.tag_column)]
        level = "word"
    else:
        table = read_table(p)
        cols = [block.text_column, block.label_column] + ([block.pair_column] if block.pair_column else [])
        require_columns(table, cols, p)
        rows = [(str(r[block.text_column]), str(r[block.pair_column]) if block.pair_column else None,
                 str(r[block.label_column])) for r in table if r.get(block.label_column) not in (None, "")]
        level = "sentence"
    train, test = split(rows, block.n_train, block.n_test, block.world_seed)
    unseen = unseen_types(train + test, block.unseen_words, block.world_seed) if level == "word" and block.unseen_words else None
    return ProbeData(level, str(p), train, test, unseen)


def load_data(block) -> ProbeData:
    if block.data.startswith("world"):
        return world_data(block.data, block.n_train, block.n_test, block.world_seed, block.language, block.unseen_words)
    if not Path(block.data).exists():
        raise BertctlError(f"probe data {block.data} does not exist",
                           fix="pass a .conllu/.jsonl/.tsv/.csv file or one of world, world-topic, world-sentiment, world-order")
    return file_data(block.data, block)


# -------------------------------------------------------------------------- features


def features(enc: Encoder, rows: list, level: str, word_pool: str = "mean", sentence_pool: str = "mean",
             batch_size: int = 32, max_length: int = 128, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """([L+1, n, H] features, [n] labels) for one split. Words cut by max_length are dropped,
    and so are words outside `keep` (unseen-type splits)."""
    if level == "word":
        feats = word_features(enc, [w for w, _ in rows], word_pool, batch_size, max_length)
        labels = np.array([t for _, tags in rows for t in tags])
        mask = feats.found if keep is None else feats.found & keep
        return feats.layers[:, mask], labels[mask]
    texts = [t for t, _, _ in rows]
    pairs = [p for _, p, _ in rows]
    X = sentence_features(enc, texts, pairs if any(p is not None for p in pairs) else None, sentence_pool,
                          batch_size, max_length)
    return X, np.array([y for _, _, y in rows])


# ---------------------------------------------------------------------------- probes


def probe_accuracy(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, seed: int = 0,
                   max_iter: int = 300, C: float = 1.0) -> float:
    """Accuracy of a standardised logistic regression trained on (X_train, y_train)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if len(set(y_train.tolist())) < 2:  # one class: the probe can only say that class
        return float(np.mean(y_test == y_train[0]))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=C, random_state=seed))
    # one BLAS thread: these matrices are small, and multi-threaded OpenBLAS spin-waits; on a
    # shared or busy CPU that made one fit 70x slower (11 s instead of 0.16 s) in our tests
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # bounded on purpose; the JSON says max_iter
        clf.fit(X_train, y_train)
        return float(np.mean(clf.predict(X_test) == y_test))


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> tuple[str, float]:
    values, counts = np.unique(y_train, return_counts=True)
    label = values[int(np.argmax(counts))]
    return str(label), float(np.mean(y_test == label))


def per_layer(enc: Encoder, data: ProbeData, seed: int = 0, max_iter: int = 300, C: float = 1.0,
              word_pool: str = "mean", sentence_pool: str = "mean", batch_size: int = 32,
              max_length: int = 128, with_labels: bool = False):
    """Probe accuracy at every hidden_states index of one encoder (and, with_labels, the
    train/test labels it was scored on)."""
    Xtr, ytr = features(enc, data.train, data.level, word_pool, sentence_pool, batch_size, max_length,
                        data.keep(data.train, "train"))
    Xte, yte = features(enc, data.test, data.level, word_pool, sentence_pool, batch_size, max_length,
                        data.keep(data.test, "test"))
    accs = [probe_accuracy(Xtr[li], ytr, Xte[li], yte, seed, max_iter, C) for li in range(Xtr.shape[0])]
    return (accs, ytr, yte) if with_labels else accs


def labels_of(data: ProbeData, side: str) -> np.ndarray:
    """The labels a split is scored on (after the unseen-type filter)."""
    rows = data.train if side == "train" else data.test
    if data.level == "word":
        y = np.array([t for _, tags in rows for t in tags])
        keep = data.keep(rows, side)
        return y if keep is None else y[keep]
    return np.array([y for _, _, y in rows])


def layers(enc: Encoder, data: ProbeData, seed: int = 0, max_iter: int = 300, C: float = 1.0, word_pool: str = "mean",
           sentence_pool: str = "mean", random_control: bool = True, batch_size: int = 32, max_length: int = 128) -> dict:
    """All numbers of `probe layers` as one JSON-able dict."""
    kw = dict(seed=seed, max_iter=max_iter, C=C, word_pool=word_pool, sentence_pool=sentence_pool,
              batch_size=batch_size, max_length=max_length)
    model_acc, ytr, yte = per_layer(enc, data, **kw, with_labels=True)
    random_acc, random_label = None, None
    if random_control:
        rnd = random_like(enc, seed)
        random_acc, random_label = per_layer(rnd, data, **kw), rnd.label
        del rnd
    label, majority = majority_baseline(ytr, yte)
    rows = [{"layer": li, "model": acc, "random_init": None if random_acc is None else random_acc[li],
             "majority": majority} for li, acc in enumerate(model_acc)]
    best = max(range(len(model_acc)), key=lambda i: model_acc[i])
    return {
        "model": enc.label, "precision": enc.precision.name, "data": data.describe(), "level": data.level,
        "pool": word_pool if data.level == "word" else sentence_pool,
        "n_train_units": int(len(ytr)), "n_test_units": int(len(yte)), "n_labels": int(len(set(ytr.tolist()))),
        "probe": {"kind": "LogisticRegression on standardised features", "max_iter": max_iter, "C": C, "seed": seed},
        "majority_label": label, "majority": majority,
        "random_init_model": random_label,
        "per_layer": rows,
        "best_layer": best, "best": model_acc[best],
        "best_random_init": None if random_acc is None else max(random_acc),
    }


# -------------------------------------------------------------------------- command


def main(recipe, out=None) -> dict:
    """`bertctl probe layers`: line plot + JSON in a run folder. Returns the run folder,
    the result (layers.json) and the per-layer table for the command to print."""
    from bertctl.probe.start import model_name, start
    from bertctl.probe.features import load_encoder
    from bertctl.report import Table, line_plot
    from bertctl.runs import write_metrics

    block = recipe.layers
    data = load_data(block)
    enc = load_encoder(model_name(recipe), recipe.device, recipe.model.trust_remote_code, recipe.model.allow_pickle,
                       recipe.precision)
    run = start(recipe, "layers", out, enc.precision)
    result = layers(enc, data, recipe.seed, block.max_iter, block.C, block.word_pool, block.sentence_pool,
                    recipe.random_control, recipe.batch_size, recipe.max_length)
    run.write_json("layers.json", result)
    best = {"best_layer": result["best_layer"], "best": result["best"],
            "best_random_init": result["best_random_init"], "majority": result["majority"]}
    write_metrics(run, best, scores={"probe": best}, main_metric="best")
    xs = [r["layer"] for r in result["per_layer"]]
    series = {"model": (xs, [r["model"] for r in result["per_layer"]])}
    if result["random_init_model"]:
        series["random-init encoder (control)"] = (xs, [r["random_init"] for r in result["per_layer"]])
    line_plot(run.file("layers.png"), series, "layer (0 = embeddings)", "probe accuracy (held out)",
              f"{data.level}-level probe per layer", hlines={f"majority ({result['majority_label']})": result["majority"]})
    table = Table(f"Linear probe per layer: {enc.label}", result["per_layer"], ["layer", "model", "random_init", "majority"],
                  caption=f"{result['data']}; " + (f"{result['n_train_units']} train / {result['n_test_units']} test words, "
                                                    if data.level == "word" else "") + f"{result['n_labels']} labels")
    run.log(f"probe layers on {enc.label}: best layer {result['best_layer']} ({result['best']:.4f})")
    return {"run": run.path, "result": result, "tables": [table]}
