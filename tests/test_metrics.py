"""Metrics against values computed by hand on tiny examples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bertctl import metrics as m
from bertctl.errors import BertctlError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def plain(result: dict) -> dict:
    """Every value is a plain float/int and the dict survives json.dumps."""
    assert all(type(v) in (float, int) for v in result.values()), result
    json.dumps(result)
    return result


# --------------------------------------------------------------- classification


def test_binary_classification_by_hand():
    # TP=2 FN=1 FP=0 TN=1
    result = plain(m.classification([1, 0, 1, 1], [1, 0, 0, 1]))
    assert result["accuracy"] == pytest.approx(3 / 4)
    assert result["f1_binary"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))  # 2TP / (2TP + FP + FN) = 0.8
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 2 / sqrt(2*3*1*2)
    assert result["mcc"] == pytest.approx(2 / math.sqrt(12))


def test_multiclass_classification_by_hand():
    result = plain(m.classification([0, 1, 2, 2], [0, 2, 2, 2]))
    assert result["accuracy"] == pytest.approx(3 / 4)
    # per-class F1: class 0 = 1, class 1 = 0, class 2: P=2/3 R=1 -> 0.8; macro = 1.8 / 3
    assert result["f1_macro"] == pytest.approx(0.6)
    # Gorodkin's R_K: correct c=3, n=4, predicted counts p=(1,0,3), true counts t=(1,1,2)
    # (c*n - sum p*t) / sqrt((n^2 - sum p^2)(n^2 - sum t^2)) = (12 - 7) / sqrt(6 * 10)
    assert result["mcc"] == pytest.approx(5 / math.sqrt(60))


def test_n_classes_forces_macro():
    y_true, y_pred = [0, 1, 1, 0], [0, 1, 0, 0]
    assert m.classification(y_true, y_pred)["f1_binary"] == pytest.approx(2 / 3)  # binary: P=1, R=1/2
    # macro: class 0 P=2/3 R=1 -> 0.8; class 1 -> 2/3
    assert m.classification(y_true, y_pred, n_classes=3)["f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_classification_degenerate_inputs():
    result = plain(m.classification([1, 1, 0], [1, 1, 1]))  # constant prediction: MCC undefined -> 0
    assert result["mcc"] == 0.0
    assert m.classification(["a", "b", "a"], ["a", "b", "b"])["f1_macro"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    with pytest.raises(BertctlError, match="2 predictions for 3 labels"):
        m.classification([0, 1, 1], [0, 1])
    with pytest.raises(BertctlError, match="no labels"):
        m.classification([], [])


# ------------------------------------------------------------------- regression


def test_regression_by_hand():
    # deviations (-1.5,-.5,.5,1.5) and (-1.5,.5,-.5,1.5): covariance 4, variances 5 -> 0.8
    result = plain(m.regression([1, 2, 3, 4], [1, 3, 2, 4]))
    assert result["pearson"] == pytest.approx(0.8)
    assert result["spearman"] == pytest.approx(0.8)
    monotone = m.regression([1, 2, 3, 4], [1, 4, 9, 16])
    assert monotone["spearman"] == pytest.approx(1.0) and monotone["pearson"] < 1.0


def test_regression_constant_is_zero_not_nan():
    assert plain(m.regression([1.0, 2.0, 3.0], [2.5, 2.5, 2.5])) == {"pearson": 0.0, "spearman": 0.0}
    assert m.regression([5.0], [4.0]) == {"pearson": 0.0, "spearman": 0.0}


# ---------------------------------------------------------------------- tagging


def test_tagging_pos_is_word_accuracy_only():
    result = plain(m.tagging([["DET", "NOUN"], ["VERB"]], [["DET", "VERB"], ["VERB"]]))
    assert result == {"accuracy": pytest.approx(2 / 3)}


def test_tagging_bio_adds_entity_scores():
    # gold entities: PER(0-1), LOC(3); predicted: PER(0-1) -> P=1, R=1/2, F1=2/3
    result = plain(m.tagging([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]]))
    assert result["accuracy"] == pytest.approx(3 / 4)
    assert result["precision"] == pytest.approx(1.0)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(2 / 3)


def test_tagging_length_mismatch():
    with pytest.raises(BertctlError, match="sentence 2: 1 predicted tags for 2 words"):
        m.tagging([["O"], ["O", "O"]], [["O"], ["O"]])


# ------------------------------------------------------------------------ SQuAD


def test_normalize_answer():
    assert m.normalize_answer("The  Cat, sat!") == "cat sat"
    assert m.normalize_answer("An apple a day") == "apple day"
    assert m.normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_squad_f1_by_hand():
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]
    # overlap 2: P = 2/2, R = 2/3, F1 = 2PR/(P+R) = 0.8
    assert m.squad_f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    assert m.squad_em("the cat sat", ["a cat sat down"]) == 0.0
    assert m.squad_em("Cat sat.", ["dog", "the cat sat"]) == 1.0  # max over gold answers
    assert m.squad_f1("cat", ["dog", "cat sat"]) == pytest.approx(2 / 3)


def test_squad_unanswerable():
    assert m.squad_em("", []) == m.squad_f1("", []) == 1.0
    assert m.squad_em("France", []) == m.squad_f1("France", []) == 0.0
    assert m.squad_f1("", ["France"]) == 0.0


def test_squad_totals_and_breakdown():
    references = [
        {"id": "q1", "answers": {"text": ["cat sat down", "dog"], "answer_start": [0, 0]}},  # EM 0, F1 .8
        {"id": "q2", "answers": {"text": [], "answer_start": []}},  # "" -> 1, 1
        {"id": "q3", "answers": []},  # answered although unanswerable -> 0, 0
        {"id": "q4", "answers": [{"text": "Paris", "answer_start": 0}]},  # official layout -> 1, 1
    ]
    predictions = {"q1": "the cat sat", "q2": "", "q3": "something", "q4": "paris."}
    result = plain(m.squad(predictions, references))
    assert result["exact_match"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx(100 * (0.8 + 1 + 0 + 1) / 4)
    assert result["has_answer_exact_match"] == pytest.approx(50.0)
    assert result["has_answer_f1"] == pytest.approx(90.0)
    assert result["no_answer_exact_match"] == result["no_answer_f1"] == pytest.approx(50.0)
    assert result["has_answer_total"] == result["no_answer_total"] == 2


def test_squad_v1_only_and_missing_prediction():
    references = [{"id": "a", "answers": {"text": ["x"]}}, {"id": "b", "answers": {"text": ["y"]}}]
    assert m.squad({"a": "x"}, references) == {"exact_match": 50.0, "f1": 50.0}  # no breakdown; b missing -> 0
    with pytest.raises(BertctlError, match="no questions"):
        m.squad({}, [])


def test_squad_real_gold_scores_100():
    path = DATA / "squad" / "squad2-dev-normans.json"
    if not path.exists():
        pytest.skip(f"real data not present at {DATA}")
    from bertctl.data.readers import read_squad

    references = read_squad(path)
    predictions = {q["id"]: (q["answers"]["text"] or [""])[0] for q in references}
    result = m.squad(predictions, references)
    assert result["exact_match"] == result["f1"] == 100.0
    assert result["has_answer_total"] + result["no_answer_total"] == 208
