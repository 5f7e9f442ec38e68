"""Evaluation metrics, delegated to scikit-learn, scipy and seqeval so the numbers match
what papers and leaderboards report. The one exception is SQuAD: its metric *is* the
official evaluation script (answer normalisation, EM, token F1), reproduced here.

Libraries are imported inside the functions so `import bertctl.metrics` stays cheap.
Every function returns plain Python floats (ints for counts), ready for json.dump.
"""

from __future__ import annotations

import collections
import math
import re
import string
import unicodedata

from bertctl.errors import BertctlError


def _check_pair(y_true, y_pred, what: str = "labels") -> None:
    if len(y_true) != len(y_pred):
        raise BertctlError(
            f"got {len(y_pred)} predictions for {len(y_true)} {what}",
            fix="evaluate predictions and references from the same file",
        )
    if not y_true:
        raise BertctlError(f"no {what} to evaluate", fix="check the evaluation file is not empty")


# ------------------------------------------------------------------ classification


def classification(y_true, y_pred, n_classes: int | None = None) -> dict:
    """Accuracy, F1 and Matthews correlation (CoLA's metric).

    The key says which F1: `f1_binary`, the F1 of the positive class 1 for two-class
    tasks (GLUE's definition for MRPC/QQP), or `f1_macro`, the mean over the labels
    present otherwise. A task is two-class when every label is 0 or 1 (pass n_classes=3
    for a three-class task whose sample happens to hold only 0s and 1s).
    """
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    y_true, y_pred = list(y_true), list(y_pred)
    _check_pair(y_true, y_pred)
    binary = n_classes in (None, 2) and set(y_true) | set(y_pred) <= {0, 1}
    if binary:
        f1 = f1_score(y_true, y_pred, average="binary", pos_label=1, zero_division=0)
    else:
        f1 = f1_score(y_true, y_pred, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        ("f1_binary" if binary else "f1_macro"): float(f1),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
    }


def regression(y_true, y_pred) -> dict:
    """Pearson and Spearman correlation (STS-B). A constant input has no defined
    correlation; report 0.0 rather than NaN, which would poison JSON and averages."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    y_true, y_pred = list(y_true), list(y_pred)
    _check_pair(y_true, y_pred)
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return {"pearson": 0.0, "spearman": 0.0}
    pearson = float(pearsonr(y_true, y_pred)[0])
    spearman = float(spearmanr(y_true, y_pred)[0])
    return {
        "pearson": 0.0 if math.isnan(pearson) else pearson,
        "spearman": 0.0 if math.isnan(spearman) else spearman,
    }


# ------------------------------------------------------------------------- tagging

_BIO = re.compile(r"^[BIES]-.")


def is_iob_tag(tag: str) -> bool:
    """O, or B-/I-/E-/S- followed by a type."""
    return tag == "O" or bool(_BIO.match(tag))


def _looks_like_bio(tags) -> bool:
    return any(_BIO.match(t) for t in tags) and all(is_iob_tag(t) for t in tags)


def tagging(true_seqs, pred_seqs) -> dict:
    """Word-level accuracy for any tag set (POS); for BIO/BIOES entity tags also
    entity-level precision/recall/F1 from seqeval (conlleval-compatible default mode)."""
    true_seqs, pred_seqs = [list(s) for s in true_seqs], [list(s) for s in pred_seqs]
    _check_pair(true_seqs, pred_seqs, "sentences")
    for i, (t, p) in enumerate(zip(true_seqs, pred_seqs)):
        if len(t) != len(p):
            raise BertctlError(
                f"sentence {i + 1}: {len(p)} predicted tags for {len(t)} words",
                fix="predict exactly one tag per word",
            )
    flat_true = [t for s in true_seqs for t in s]
    flat_pred = [t for s in pred_seqs for t in s]
    if not flat_true:
        raise BertctlError("no words to evaluate", fix="check the evaluation file is not empty")
    out = {"accuracy": sum(t == p for t, p in zip(flat_true, flat_pred)) / len(flat_true)}
    if _looks_like_bio(flat_true):
        from seqeval.metrics import f1_score, precision_score, recall_score

        for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
            out[name] = float(fn(true_seqs, pred_seqs, zero_division=0))
        out.update(_per_type_f1(true_seqs, pred_seqs))
    return out


def _per_type_f1(true_seqs, pred_seqs) -> dict:
    """Entity F1 per type (f1_PER, f1_ORG, ...), as conlleval prints it, for the types of
    the gold tags."""
    from seqeval.metrics import classification_report

    report = classification_report(true_seqs, pred_seqs, output_dict=True, zero_division=0)
    return {f"f1_{name}": float(v["f1-score"]) for name, v in sorted(report.items())
            if isinstance(v, dict) and "avg" not in name and v.get("support", 0) > 0}


# --------------------------------------------------------------------------- SQuAD
# Normalisation, EM and F1 follow the official SQuAD v2.0 evaluation script exactly, with
# one addition for text the script was not written for: each CJK character counts as a
# token of its own (Chinese and Japanese have no spaces, so the script's whitespace
# tokens would make F1 all-or-nothing). This is the "mixed segmentation" of the MLQA,
# CMRC and DRCD evaluations; text without CJK characters scores exactly as officially.

_PUNCTUATION = frozenset(string.punctuation)
CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f])")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (in text with CJK
    characters also the full-width and other Unicode punctuation: 「」，。)."""
    s = s.lower()
    cjk = CJK.search(s) is not None
    s = "".join(ch for ch in s if ch not in _PUNCTUATION and not (cjk and unicodedata.category(ch).startswith("P")))
    s = re.sub(r"\b(a|an|the)\b", " ", s, flags=re.UNICODE)
    return " ".join(s.split())


def _tokens(s: str) -> list[str]:
    return CJK.sub(r" \1 ", normalize_answer(s)).split() if s else []


def _golds(golds) -> list[str]:
    """Gold answers that survive normalisation; none means unanswerable, whose only
    correct answer is the empty string."""
    kept = [g for g in golds if normalize_answer(g)]
    return kept or [""]


def squad_em(pred: str, golds) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    return float(max(normalize_answer(g) == normalize_answer(pred) for g in _golds(golds)))


def _f1(pred: str, gold: str) -> float:
    pred_toks, gold_toks = _tokens(pred), _tokens(gold)
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)  # no-answer: right only if both are empty
    same = sum((collections.Counter(pred_toks) & collections.Counter(gold_toks)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_f1(pred: str, golds) -> float:
    """Token-overlap F1, the best over the gold answers."""
    return max(_f1(pred, g) for g in _golds(golds))


def _answer_texts(answers) -> list[str]:
    """Accept both the `datasets` layout {"text": [...]} and the official [{"text": ...}]."""
    if isinstance(answers, dict):
        return list(answers.get("text", []))
    return [a["text"] if isinstance(a, dict) else a for a in answers]


def squad(predictions: dict, references: list[dict]) -> dict:
    """Exact match and F1 in percent (0-100), as the official script prints them.

    A question without a prediction scores 0 (the v1.1 script's rule; v2.0 silently
    leaves it out, which flatters partial runs). When both answerable and unanswerable
    questions are present, the has_answer_* / no_answer_* breakdown is added.
    """
    if not references:
        raise BertctlError("no questions to evaluate", fix="check the evaluation file is not empty")
    groups = {"has_answer": [], "no_answer": []}
    for ref in references:
        golds = _answer_texts(ref["answers"])
        pred = predictions.get(ref["id"])
        scores = (0.0, 0.0) if pred is None else (squad_em(pred, golds), squad_f1(pred, golds))
        groups["has_answer" if golds else "no_answer"].append(scores)

    def summary(scores, prefix=""):
        return {
            f"{prefix}exact_match": 100.0 * sum(s[0] for s in scores) / len(scores),
            f"{prefix}f1": 100.0 * sum(s[1] for s in scores) / len(scores),
        }

    out = summary(groups["has_answer"] + groups["no_answer"])
    if groups["has_answer"] and groups["no_answer"]:
        for name, scores in groups.items():
            out.update(summary(scores, f"{name}_"))
            out[f"{name}_total"] = len(scores)
    return out
