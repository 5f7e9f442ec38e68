"""The lecture's experiments as a data table (cramming style): one `Experiment` row each.

A row holds the lecture's claim in one sentence, the published reference where there is
one, the rule of its verdict (thresholds come from the recipe's `criterion`), and
`measure`: a function that reads the experiment's run folders (finished steps only) and
returns its numbers, table, figures and verdict. The runs themselves are the other
commands' (see recipes/reproduce.yaml): nothing here trains or probes anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bertctl.errors import BertctlError
from bertctl.runs import read_json, read_metrics

REPRODUCED, PARTLY, NOT = "reproduced", "partly", "not reproduced"


class MissingRun(Exception):
    """A step the experiment cannot do without did not run (or did not finish)."""


@dataclass
class Outcome:
    verdict: str
    why: str  # the comparison the verdict came from, with its numbers
    numbers: dict  # for results.json
    rows: list[dict]  # the section's table
    columns: list[str]
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (caption, PNG)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Experiment:
    name: str
    number: int  # the numbering of the lecture's experiments
    title: str
    claim: str
    reference: str  # the published result and its citation ("" where there is no number to compare)
    criterion: str  # the rule, with {threshold} names from the recipe's criterion
    measure: Callable[[dict[str, Path], dict, Path], Outcome]


def _need(runs: dict[str, Path], step: str) -> Path:
    if step not in runs:
        raise MissingRun(step)
    return runs[step]


def _metrics(path: Path) -> dict:
    return read_metrics(path)


def _grade(value: float, crit: dict, what: str) -> tuple[str, str]:
    """reproduced when value >= crit['reproduced'], partly when value > crit['partly']."""
    if value >= crit["reproduced"]:
        return REPRODUCED, f"{what} = {value:.3f} >= {crit['reproduced']:g}"
    if value > crit["partly"]:
        return PARTLY, f"{what} = {value:.3f}: above {crit['partly']:g}, under {crit['reproduced']:g}"
    return NOT, f"{what} = {value:.3f} <= {crit['partly']:g}"


def _r(x, digits: int = 4):
    return round(float(x), digits) if isinstance(x, (int, float)) else x


# ----------------------------------------------------------------------------- 1. MLM


def _mlm(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    from bertctl.report import bar_chart

    labels = {"world": "World, 80/10/10", "world_mask_only": "World, [MASK] only", "english": "real English, 80/10/10"}
    _need(runs, "world")
    rows = []
    for step, label in labels.items():
        if step not in runs:
            continue
        m = _metrics(runs[step])
        acc, uni = m.get("mlm_accuracy"), m.get("unigram_accuracy")
        if not isinstance(acc, (int, float)) or not uni:
            raise BertctlError(f"{runs[step]}/metrics.json holds no mlm_accuracy and unigram_accuracy",
                               fix="rerun that step (delete its folder)")
        rows.append({"run": label, "step": step, "masked-token accuracy": _r(acc), "unigram baseline": _r(uni),
                     "ratio": _r(acc / uni, 2), "steps": m.get("steps")})
    worst = min(rows, key=lambda r: r["ratio"])
    verdict, why = _grade(worst["ratio"], crit, f"lowest accuracy / unigram ratio ({worst['run']})")
    fig = bar_chart(figs / "mlm.png", [r["run"] for r in rows],
                    {"masked-token accuracy": [r["masked-token accuracy"] for r in rows],
                     "unigram baseline": [r["unigram baseline"] for r in rows]},
                    "held-out accuracy", "Masked-token accuracy vs the unigram baseline")
    figures = [("held-out masked-token accuracy against the unigram baseline", fig)]
    figures += [(f"training loss: {r['run']}", runs[r["step"]] / "loss.png") for r in rows
                if (runs[r["step"]] / "loss.png").is_file()]
    notes = ["Each run is evaluated with its own masking (the [MASK]-only run on [MASK]-only inputs), so the two "
             "World accuracies answer 'does it learn', not 'which is better'; BERT's comparison is downstream."]
    return Outcome(verdict, why, {r["step"]: {k: v for k, v in r.items() if k not in ("run", "step")} for r in rows},
                   rows, ["run", "masked-token accuracy", "unigram baseline", "ratio", "steps"], figures, notes)


# ----------------------------------------------------------------------- 2. NSP vs SOP


def _nsp_sop(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    from bertctl.report import bar_chart

    nsp, sop = _metrics(_need(runs, "world")), _metrics(_need(runs, "world_sop"))
    down_nsp = _metrics(_need(runs, "nli_nsp")).get("main_value")
    down_sop = _metrics(_need(runs, "nli_sop")).get("main_value")
    rows = [{"objective": "MLM + NSP", "pair task accuracy": _r(nsp.get("nsp_accuracy")),
             "majority baseline": _r(nsp.get("nsp_majority_accuracy")), "masked-token accuracy": _r(nsp.get("mlm_accuracy")),
             "NLI dev accuracy (fine-tuned)": _r(down_nsp)},
            {"objective": "MLM + SOP", "pair task accuracy": _r(sop.get("sop_accuracy")),
             "majority baseline": _r(sop.get("sop_majority_accuracy")), "masked-token accuracy": _r(sop.get("mlm_accuracy")),
             "NLI dev accuracy (fine-tuned)": _r(down_sop)}]
    harder = rows[1]["pair task accuracy"] < rows[0]["pair task accuracy"]
    downstream = down_sop >= down_nsp - crit["tolerance"]
    held = harder + downstream
    verdict = REPRODUCED if held == 2 else PARTLY if held == 1 else NOT
    why = (f"SOP accuracy {rows[1]['pair task accuracy']:.3f} {'<' if harder else '>='} NSP accuracy "
           f"{rows[0]['pair task accuracy']:.3f} (SOP {'is' if harder else 'is not'} the harder task); NLI from SOP "
           f"{down_sop:.3f} {'>=' if downstream else '<'} NLI from NSP {down_nsp:.3f} - {crit['tolerance']:g}")
    fig = bar_chart(figs / "nsp_sop.png", [r["objective"] for r in rows],
                    {"pair task (held-out)": [r["pair task accuracy"] for r in rows],
                     "NLI after fine-tuning (dev)": [r["NLI dev accuracy (fine-tuned)"] for r in rows]},
                    "accuracy", "NSP vs SOP: the pretraining task and what it gives downstream")
    return Outcome(verdict, why, {"nsp": rows[0], "sop": rows[1]}, rows,
                   list(rows[0]), [("pair-task accuracy and downstream NLI", fig)])


# ---------------------------------------------------------- 3. pretraining helps (and 9. DNA)


def _compare_init(runs: dict[str, Path], step: str, crit: dict, what: str) -> Outcome:
    m = _metrics(_need(runs, step))
    both = m.get("compare_init")
    if not isinstance(both, dict) or "random" not in both:
        raise BertctlError(f"{runs[step]}/metrics.json has no compare_init results",
                           fix="run that step with compare_init=true")
    main = m.get("main_metric") or "accuracy"
    pre, rnd = both["pretrained"][main], both["random"][main]
    rows = [{"init": "pretrained", main: _r(pre), "epochs": len(both.get("epochs", {}).get("pretrained", []))},
            {"init": "random", main: _r(rnd), "epochs": len(both.get("epochs", {}).get("random", []))}]
    # the learning curve, epoch by epoch
    curve = {init: [_r(e.get(main)) for e in both.get("epochs", {}).get(init, [])] for init in ("pretrained", "random")}
    for row in rows:
        row[f"{main} by epoch"] = ", ".join(f"{v:.3f}" for v in curve[row["init"]] if v is not None)
    verdict, why = _grade(pre - rnd, crit, f"{what} dev {main}, pretrained minus random init")
    figures = [(f"{what}: pretrained vs random init, dev {main} and loss by epoch", runs[step] / "comparison.png")]
    return Outcome(verdict, why, {"metric": main, "pretrained": pre, "random": rnd, "difference": _r(pre - rnd),
                                  "curves": curve}, rows, list(rows[0]), figures)


def _helps(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    return _compare_init(runs, "nli_nsp", crit, "NLI")


def _dna(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    out = _compare_init(runs, "dna", crit, "DNA")
    out.notes.append("The pretrained model saw only (World) English; each DNA base is spelled as a fixed word of "
                     "its vocabulary (finetune_dna's dna.map_to_words).")
    return out


# ----------------------------------------------------------------------------- 4. GLUE


def _glue(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    from bertctl.glue.score import glue_score, reference_scores
    from bertctl.glue.tasks import REFERENCES

    res = read_json(_need(runs, "glue") / "results.json")
    names = [n for n in res.get("results", {})]
    refs = {label: reference_scores(ref, names) for label, ref in REFERENCES.items()}
    rows = [{"task": n, res.get("model") or "model": _r(res["results"][n]["score"], 1),
             **{label: _r(refs[label].get(n), 1) for label in REFERENCES},
             "train rows": res["results"][n].get("train_rows")} for n in names]
    ours, bert = res["glue_score"], glue_score(refs["BERT-base dev"])
    rows.append({"task": f"GLUE score ({len(names)} tasks)", res.get("model") or "model": _r(ours, 1),
                 **{label: _r(glue_score(refs[label]), 1) for label in REFERENCES}})
    verdict, why = _grade(ours / bert, crit, f"GLUE score over {', '.join(names)} as a share of BERT-base's")
    notes = [f"skipped {n}: {w}" for n, w in (res.get("skipped") or {}).items()] + list(res.get("notes") or [])
    return Outcome(verdict, why, {"glue_score": ours, "references": {k: glue_score(v) for k, v in refs.items()},
                                  "tasks": {n: res["results"][n]["score"] for n in names}},
                   rows, list(dict.fromkeys(k for r in rows for k in r)),
                   [("GLUE dev scores with the human baseline and BERT-base", runs["glue"] / "glue.png")], notes)


# ------------------------------------------------------------------------ 5. the four ways

FOUR = [  # (way, task, steps: real data first, then the World's), published BERT-base where there is one
    ("one sequence -> a class", "sentiment", ("four_sst2", "four_sentiment"),
     "SST-2 dev accuracy 92.3 (BERT-base, transformers run_glue)"),
    ("a label per word", "POS (UPOS)", ("four_ewt_pos", "four_pos"), ""),
    ("a pair -> a class", "NLI", ("four_snli", "nli_nsp"), ""),
    ("a span of the text", "extractive QA", ("four_squad", "four_qa"),
     "SQuAD v1.1 dev F1 88.5, EM 80.8 (BERT-base, Devlin et al. 2019)"),
]


def _baseline(run: Path, metric: str) -> float:
    """The trivial score of a run's dev set: the majority label (or tag) share; for QA, F1 of
    always answering "no answer" (the share of unanswerable questions)."""
    from collections import Counter

    from bertctl.jsonl import read_jsonl

    rows = read_jsonl(run / "predictions_dev.jsonl")
    if metric in ("f1", "exact_match"):
        return sum(1 for r in rows if not r.get("gold")) / max(1, len(rows))
    gold = [g for r in rows for g in (r["gold"] if isinstance(r.get("gold"), list) else [r.get("gold")])]
    return Counter(gold).most_common(1)[0][1] / max(1, len(gold)) if gold else 0.0


def _examples(run: Path, n: int = 2) -> list[str]:
    from bertctl.jsonl import read_jsonl

    out = []
    for r in read_jsonl(run / "predictions_dev.jsonl")[:n]:
        if "tokens" in r:
            shown = " ".join(f"{w}/{t}" for w, t in zip(r["tokens"], r["prediction"]))
            gold = " ".join(r.get("gold") or [])
        elif "question" in r:
            shown, gold = f"{r['question']} -> \"{r['prediction']}\"", " | ".join(r.get("gold") or []) or "(no answer)"
        else:
            text = r.get("text", "") + (f" || {r['text_pair']}" if r.get("text_pair") else "")
            shown, gold = f"{text[:160]} -> {r['prediction']}", r.get("gold")
        out.append(f"{shown} (gold: {gold})")
    return out


def _four_ways(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    rows, figures, notes = [], [], []
    for way, task, steps, reference in FOUR:
        step = next((s for s in steps if s in runs), None)
        if step is None:
            raise MissingRun(steps[-1])
        m = _metrics(runs[step])
        main = m.get("main_metric") or "accuracy"
        value = m["main_value"] / (100 if main in ("f1", "exact_match") else 1)
        base = _baseline(runs[step], main)
        real = step == steps[0]
        rows.append({"way": way, "task": task, "data": "real" if real else "World", "model": read_record_model(runs[step]),
                     "metric": main, "dev": _r(value), "trivial baseline": _r(base), "gain": _r(value - base),
                     "published": reference if real else ""})
        if (runs[step] / "curve.png").is_file():
            figures.append((f"{task}: training curve ({step})", runs[step] / "curve.png"))
        notes += [f"{task}: {e}" for e in _examples(runs[step])]
    held = [r for r in rows if r["gain"] >= crit["margin"]]
    verdict = REPRODUCED if len(held) == len(rows) else PARTLY if held else NOT
    why = (f"{len(held)} of {len(rows)} heads beat their trivial baseline by at least {crit['margin']:g} ("
           + ", ".join(f"{r['task']} {r['gain']:+.3f}" for r in rows) + ")")
    return Outcome(verdict, why, {r["task"]: r for r in rows}, rows, list(rows[0]), figures, notes)


# -------------------------------------------------------------------- 6. probes over checkpoints


def _half_way(steps: list, values: list) -> tuple[float, float, int | None]:
    """Gain of the last value over the first, and the first step at which half of it was reached."""
    gain = values[-1] - values[0]
    half = next((s for s, v in zip(steps, values) if v >= values[0] + gain / 2), None) if gain > 0 else None
    return gain, (half / steps[-1] if half is not None and steps[-1] else float("nan")), half


def _pos_probe(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    rows, figures, numbers = [], [], {}
    for probe, pre, label in (("probe_world", "world", "World"), ("probe_english", "english", "real English (UD EWT)")):
        if probe not in runs:
            continue
        data = read_json(runs[probe] / "checkpoints.json")
        curve = data["curves"]["pos"]
        steps, values = curve["steps"], curve["value"]
        gain, frac, half = _half_way(steps, values)
        mlm = [(r["step"], r["mlm_accuracy"]) for r in _evals(runs.get(pre))]
        row = {"data": label, "checkpoints": len(steps), "POS at init": _r(values[0]), "POS final": _r(values[-1]),
               "gain": _r(gain), "half the gain by step": half, "of training": _r(frac, 2),
               "majority tag": _r(data.get("baselines", {}).get("pos"))}
        if mlm:
            row["MLM accuracy then"] = _r(min(mlm, key=lambda sm: abs(sm[0] - (half or 0)))[1]) if half else None
            row["MLM accuracy final"] = _r(mlm[-1][1])
        rows.append(row)
        numbers[label] = {**row, "steps": steps, "pos": values}
        figures.append((f"probes over the checkpoints ({label})", runs[probe] / "checkpoints.png"))
    if not rows:
        raise MissingRun("probe_world")
    first = rows[0]
    early = first["of training"] == first["of training"] and first["of training"] <= crit["half_by"]
    if first["gain"] >= crit["min_gain"] and early:
        verdict = REPRODUCED
    elif first["gain"] > 0:
        verdict = PARTLY
    else:
        verdict = NOT
    why = (f"{first['data']}: the POS probe gained {first['gain']:.3f} over the random init (needs >= {crit['min_gain']:g}) "
           f"and reached half of that at {first['of training']:.2f} of training (needs <= {crit['half_by']:g})")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return Outcome(verdict, why, numbers, rows, columns, figures)


def _evals(run: Path | None) -> list[dict]:
    """A pretrain run's held-out evaluations along training (metrics.jsonl rows with mlm_accuracy)."""
    if run is None:
        return []
    from bertctl.jsonl import read_jsonl

    return [r for r in read_jsonl(run / "metrics.jsonl") if isinstance(r.get("mlm_accuracy"), (int, float))]


# ------------------------------------------------------------------------ 7. masking methods


def _masking(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    from bertctl.report import bar_chart

    rows = []
    for pre, tuned, label in (("world", "nli_nsp", "token"), ("world_whole_word", "nli_whole_word", "whole word"),
                              ("world_span", "nli_span", "span")):
        m, down = _metrics(_need(runs, pre)), _metrics(_need(runs, tuned))
        rows.append({"masking": label, "masked-token accuracy (own masking)": _r(m.get("mlm_accuracy")),
                     "NLI dev accuracy (fine-tuned)": _r(down.get("main_value"))})
    token = rows[0]["NLI dev accuracy (fine-tuned)"]
    held = [r for r in rows[1:] if r["NLI dev accuracy (fine-tuned)"] >= token - crit["tolerance"]]
    verdict = REPRODUCED if len(held) == 2 else PARTLY if held else NOT
    why = "; ".join(f"NLI from {r['masking']} masking {r['NLI dev accuracy (fine-tuned)']:.3f} "
                    f"{'>=' if r in held else '<'} token's {token:.3f} - {crit['tolerance']:g}" for r in rows[1:])
    fig = bar_chart(figs / "masking.png", [r["masking"] for r in rows],
                    {"NLI after fine-tuning (dev)": [r["NLI dev accuracy (fine-tuned)"] for r in rows],
                     "masked accuracy (own masking)": [r["masked-token accuracy (own masking)"] for r in rows]},
                    "accuracy", "Token, whole-word and span masking")
    notes = ["Each pretraining run is the same recipe (MLM + NSP, same steps and data) but for objective.masking; "
             "its held-out accuracy is measured under its own masking, a harder test for spans, so the comparison "
             "is the fine-tuned one."]
    return Outcome(verdict, why, {r["masking"]: r for r in rows}, rows, list(rows[0]),
                   [("NLI accuracy after fine-tuning, by pretraining masking", fig)], notes)


# ------------------------------------------------------------------------ 8. "apple"


def _apple(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    m = _metrics(_need(runs, "apple"))
    gap, static, rnd = m["gap"], m.get("static_gap", 0.0), m.get("random_init_gap")
    controls = {"static input embedding": static, **({"random init": rnd} if rnd is not None else {})}
    best = max(controls.values())
    rows = [{"vectors": "model (contextual, position-centred)", "within-sense": _r(m.get("within")),
             "between-sense": _r(m.get("between")), "gap": _r(gap)}]
    rows += [{"vectors": f"{k} (control)", "gap": _r(v)} for k, v in controls.items()]
    verdict, why = _grade(gap - best, crit, "sense gap of the model minus the best control's")
    record = read_record_model(runs["apple"])
    return Outcome(verdict, why, {"gap": gap, "controls": controls, "model": record}, rows,
                   ["vectors", "within-sense", "between-sense", "gap"],
                   [(f"cosine similarity of 'apple' across 5 fruit and 5 company sentences ({record})",
                     runs["apple"] / "similarity.png")])


def read_record_model(path: Path) -> str:
    from bertctl.runs import read_record

    record = read_record(path)
    return record.model if record else ""


# ------------------------------------------------------------------------ 10. zero-shot transfer

MBERT_NER = {"esp.testa": ("es", 74.96), "ned.testa": ("nl", 77.57)}  # Wu and Dredze 2019, Table 2
# bert-base-multilingual-cased fine-tuned on English SQuAD v1.1, zero-shot XQuAD F1 (model card
# salti/bert-base-multilingual-cased-finetuned-squad, as ../shared/data/README.md quotes it)
MBERT_XQUAD = {"en": 85.0, "es": 76.4, "de": 72.6, "ru": 71.6, "vi": 68.1, "el": 62.2, "zh": 58.9, "ar": 57.8,
               "hi": 55.3, "tr": 51.1, "th": 40.0}


def _qa_language(file: str) -> str:
    """xquad.de -> de; DRCD_dev -> zh-Hant (DRCD is Traditional Chinese Wikipedia)."""
    if file.lower().startswith("drcd"):
        return "zh-Hant"
    parts = file.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "xquad" else "?"


def _qa_rows(runs: dict[str, Path], figs: Path) -> tuple[list[dict], list[str], tuple[str, Path]]:
    """QA trained on English SQuAD and scored on each XQuAD / DRCD file, beside mBERT's row,
    and their figure. The multi-file evaluation's metrics.json holds a row per file (its F1
    and [UNK] share): read once, not per sub-folder."""
    from bertctl.report import bar_chart

    qa, own = _metrics(runs["qa_zero"]), _metrics(_need(runs, "four_squad"))
    rows = [{"task": "QA (SQuAD), F1", "trained on": "en", "scored on": "SQuAD held-out articles (in-language)",
             "F1": _r(own["main_value"], 1)}]
    files = qa.get("rows") or []
    for f in files:
        lang = _qa_language(f["file"])
        rows.append({"task": "QA (SQuAD), F1", "trained on": "en",
                     "scored on": f"{lang} ({f['file']}{', zero-shot' if lang != 'en' else ''})",
                     "F1": _r(f.get("f1", float("nan")), 1), "[UNK] share": _r(f.get("unk_rate")),
                     "mBERT (published)": MBERT_XQUAD.get(lang)})
    notes = [f"QA model: {read_record_model(runs['four_squad'])}, fine-tuned on English SQuAD questions (four_squad); "
             f"scored on {len(files)} files as the step's command line says (data.max_eval_samples caps the questions "
             "per file on cpu; the published mBERT rows use all 1,013 XQuAD questions and the full SQuAD training set). "
             "An English-only model (the cpu profile's minilm: most Chinese characters are [UNK] to it) is the lower "
             "bound of these rows; the gpu profile fine-tunes bert-base-multilingual-cased, the published rows' model."]
    scored = rows[1:]
    figure = ("QA fine-tuned on English SQuAD, F1 by evaluation file (mBERT: published)", bar_chart(
        figs / "zero_shot_qa.png", [r["scored on"].split(" (")[0] for r in scored],
        {"this model": [r["F1"] for r in scored],
         "mBERT (published)": [r["mBERT (published)"] or float("nan") for r in scored]}, "F1",
        "QA zero-shot transfer"))
    return rows, notes, figure


def _zero_shot(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    from bertctl.report import bar_chart

    en, xx = _metrics(_need(runs, "xling_en")), _metrics(_need(runs, "xling_xx"))
    main = en.get("main_metric") or "accuracy"
    chance = 1 / max(1, len(en.get("labels") or [0, 1]))
    acc_en, acc_xx = en["main_value"], xx["main_value"]
    share = (acc_xx - chance) / (acc_en - chance) if acc_en > chance else 0.0
    rows = [{"task": "World sentiment", "trained on": "en", "scored on": "en (in-language)", main: _r(acc_en),
             "chance": _r(chance)},
            {"task": "World sentiment", "trained on": "en", "scored on": "xx (zero-shot)", main: _r(acc_xx),
             "chance": _r(chance), "[UNK] share": _r(xx.get("unk_rate"))}]
    notes = ["The World model was pretrained on en and xx text together (no parallel text); xx has its own "
             "lexicon and SOV word order."]
    if "ner_zero" in runs:
        ner, own = _metrics(runs["ner_zero"]), _metrics(_need(runs, "ner_en"))
        key = "F1"  # seqeval's entity F1, as Wu and Dredze report it
        dev = own["scores"].get("dev", {})
        rows.append({"task": "NER (CoNLL), entity F1", "trained on": "en", "scored on": "en (eng.testa)",
                     key: _r(100 * dev.get("f1", float("nan")), 2)})
        for file, scores in (ner.get("scores") or {}).items():
            lang, ref = next(((v for k, v in MBERT_NER.items() if k in file)), ("?", None))
            rows.append({"task": "NER (CoNLL), entity F1", "trained on": "en", "scored on": f"{lang} ({file}, zero-shot)",
                         key: _r(100 * scores.get("f1", float("nan")), 2), "mBERT (published)": ref})
        notes.append(f"NER model: {read_record_model(runs['ner_en'])}. An English-only model is the lower bound "
                     "of these rows; the gpu profile fine-tunes bert-base-multilingual-cased, the published row's model.")
    figures = []
    if "qa_zero" in runs:
        qa_rows, qa_notes, qa_figure = _qa_rows(runs, figs)
        rows += qa_rows
        notes += qa_notes
        figures.append(qa_figure)
    verdict, why = _grade(share, crit, f"World xx {main} over chance as a share of en's ({acc_xx:.3f} vs {acc_en:.3f}, "
                                       f"chance {chance:.2f})")
    fig = bar_chart(figs / "zero_shot.png", ["en (in-language)", "xx (zero-shot)"],
                    {main: [acc_en, acc_xx], "chance": [chance, chance]}, main,
                    "Fine-tuned in en, scored in xx")
    figures.insert(0, ("zero-shot transfer on the World", fig))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return Outcome(verdict, why, {"world": {"en": acc_en, "xx": acc_xx, "chance": chance, "share": share},
                                  "rows": rows}, rows, columns, figures, notes)


# ------------------------------------------------------------------------ 11. alignment


def _alignment(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    from bertctl.report import bar_chart
    from bertctl.runs import read_recipe

    rows = []
    for pre, probe, label in (("bilingual_small", "align_small", "less text"),
                              ("bilingual_large", "align_large", "more text")):
        m, a = _metrics(_need(runs, pre)), _metrics(_need(runs, probe))
        world = (read_recipe(runs[pre])[1].get("data") or {}).get("world") or {}
        rows.append({"pretraining": label, "documents (en + xx)": world.get("n_docs"),
                     "masked-token accuracy": _r(m.get("mlm_accuracy")), "top-1": _r(a.get("top1")),
                     "top-1, mean shift": _r(a.get("top1_shifted")), "top-5, mean shift": _r(a.get("top5_shifted")),
                     "chance top-1": _r(a.get("chance_top1"))})
    small, large = rows
    verdict, why = _grade(large["top-1, mean shift"] - small["top-1, mean shift"], crit,
                          "xx -> en top-1 translation with the mean shift, more text minus less")
    fig = bar_chart(figs / "alignment.png", [f"{r['pretraining']} ({r['documents (en + xx)']} docs)" for r in rows],
                    {"top-1": [r["top-1"] for r in rows], "top-1, mean shift": [r["top-1, mean shift"] for r in rows],
                     "chance": [r["chance top-1"] for r in rows]},
                    "word translation accuracy", "Cross-lingual alignment against bilingual text")
    figures = [("xx -> en word translation by nearest contextual vector", fig)]
    figures += [(f"alignment by layer ({r['pretraining']})", runs[p] / "align.png")
                for r, p in zip(rows, ("align_small", "align_large")) if (runs[p] / "align.png").is_file()]
    notes = ["xx is the World's invented second language (own lexicon, SOV order); a word is translated by the "
             "nearest en vector after adding mean(en) - mean(xx), the lecture's mean-difference vector."]
    return Outcome(verdict, why, {r["pretraining"]: r for r in rows}, rows, list(rows[0]), figures, notes)


# ------------------------------------------------------------------------ 12. in-context learning


def _in_context(runs: dict[str, Path], crit: dict, figs: Path) -> Outcome:
    rows, figures, numbers = [], [], {}
    for step in ("icl", "icl_sst2"):
        if step not in runs:
            continue
        m = _metrics(runs[step])
        label = f"{m.get('task', step)} ({'World' if step == 'icl' else 'real data'})"
        by_model: dict[str, dict[int, float]] = {}
        for r in m.get("rows", []):
            by_model.setdefault(str(r["model"]), {})[int(r["shots"])] = r["accuracy"]
        for model, acc in by_model.items():
            rows.append({"task": label, "model": model,
                         **{f"{k}-shot": _r(acc[k], 3) for k in sorted(acc)},
                         "majority class": _r((m.get("majority") or {}).get("accuracy"), 3)})
        numbers[label] = by_model
        if (runs[step] / "accuracy_vs_shots.png").is_file():
            figures.append((f"{label}: accuracy against the number of demonstrations", runs[step] / "accuracy_vs_shots.png"))
    if "icl" not in runs:
        raise MissingRun("icl")
    world = next(iter(numbers))
    models = list(numbers[world])
    largest, acc = models[-1], numbers[world][models[-1]]
    shots = sorted(acc)
    verdict, why = _grade(acc[shots[-1]] - acc[shots[0]], crit,
                          f"{largest} on {world}: accuracy at {shots[-1]} shots minus {shots[0]} shots")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    notes = ["The models are listed smallest first; the verdict reads the last (largest) one."]
    return Outcome(verdict, why, numbers, rows, columns, figures, notes)


# ----------------------------------------------------------------------------- the table

EXPERIMENTS: list[Experiment] = [
    Experiment(
        "mlm", 1, "Masked-token prediction learns from unlabelled text",
        "A Transformer trained only to fill in masked words from unlabelled text learns to predict them far "
        "better than any guess that ignores the context.",
        "Devlin et al. 2019 (BERT), Table 8: 80/10/10 masking gives MNLI dev 84.2 and NER (fine-tuned) 95.4; "
        "[MASK] only 84.3 and 94.9: the mix matters little for fine-tuning, more for feature-based use "
        "(94.9 vs 94.0).",
        "reproduced when every run's held-out masked-token accuracy is at least {reproduced}x the unigram "
        "baseline (always the most frequent token), partly when every run is above {partly}x, else not reproduced",
        _mlm),
    Experiment(
        "nsp_sop", 2, "NSP vs SOP",
        "Next-sentence prediction can be solved from topic alone, so sentence-order prediction is the harder "
        "task, and it serves sentence-pair fine-tuning at least as well.",
        "Lan et al. 2020 (ALBERT), Table 5: trained with NSP, NSP 90.5 / SOP 52.0 accuracy; trained with SOP, "
        "NSP 78.9 / SOP 86.5, and the better downstream average. RoBERTa (Liu et al. 2019) drops NSP altogether.",
        "reproduced when SOP's held-out accuracy is below NSP's and NLI fine-tuned from the SOP model is within "
        "{tolerance} of NLI from the NSP model (or better); partly when one of the two holds",
        _nsp_sop),
    Experiment(
        "pretraining_helps", 3, "Pretraining helps fine-tuning",
        "Fine-tuning from pretrained weights learns faster and ends better than the same network trained from "
        "random initialisation.",
        "Hao et al. 2019 (Visualizing and Understanding the Effectiveness of BERT, EMNLP): pretrained "
        "fine-tuning reaches wider, flatter optima and converges faster than training from scratch (curves, no "
        "single number).",
        "reproduced when the pretrained model's dev accuracy is at least {reproduced} above the random init's, "
        "partly when above by more than {partly}",
        _helps),
    Experiment(
        "glue", 4, "GLUE",
        "A pretrained encoder fine-tuned on each task comes close to BERT-base on the GLUE benchmark, and BERT-base "
        "itself to the human baseline.",
        "Wang et al. 2019 (GLUE, ICLR) human baseline and Devlin et al. 2019 (BERT) BERT-base dev results, per "
        "task in the table (bertctl/glue/tasks.py).",
        "reproduced when the GLUE score over the tasks run is at least {reproduced} of BERT-base's over the same "
        "tasks, partly when above {partly} of it",
        _glue),
    Experiment(
        "four_ways", 5, "The four ways to use BERT",
        "One pretrained encoder with a small head does all four shapes of task: a class for a sequence, a label "
        "per word, a class for a pair, and a span of the text as the answer.",
        "Devlin et al. 2019 (BERT), Figure 4 (the four fine-tuning set-ups): SST-2 dev accuracy 92.3 for "
        "BERT-base (transformers run_glue), SQuAD v1.1 dev F1 88.5 / EM 80.8.",
        "reproduced when every head beats its trivial baseline (majority label or tag; for QA always answering "
        "'no answer') by at least {margin}, partly when some do",
        _four_ways),
    Experiment(
        "pos_probe", 6, "When does BERT know parts of speech",
        "Parts of speech are learnt early in pretraining: a linear probe on the hidden states gets most of its "
        "final accuracy long before training ends.",
        "Chiang, Huang and Lee 2020 (Pretrained Language Model Embryology: The Birth of ALBERT, EMNLP): POS "
        "probing accuracy rises fast in the first part of pretraining, function words before content words.",
        "reproduced when the POS probe (tested on unseen words) gains at least {min_gain} over the random init "
        "and reaches half of that gain within the first {half_by} of training; partly when it gains anything",
        _pos_probe),
    Experiment(
        "masking", 7, "Masking methods: token, whole word, span",
        "Masking whole words or contiguous spans instead of single sub-word tokens makes pretraining at least as "
        "useful for fine-tuning.",
        "Joshi et al. 2020 (SpanBERT, TACL), Table 6: random geometric spans beat sub-word token and whole-word "
        "masking in its ablation (SQuAD 2.0, NER, coreference); Raffel et al. 2020 (T5, JMLR), Section 3.3: "
        "span corruption does about as well as i.i.d. token corruption and trains faster.",
        "reproduced when NLI fine-tuned from the whole-word and from the span model are each within {tolerance} "
        "of NLI from the token model (or better); partly when one of them is",
        _masking),
    Experiment(
        "apple", 8, "Contextual embeddings: the \"apple\" heatmap",
        "The same word gets a different vector in each context, close within a sense (the fruit) and farther "
        "across senses (the company), which a static embedding cannot do.",
        "",
        "reproduced when the within- minus between-sense cosine gap of the model exceeds the best control's "
        "(static embedding, random init) by at least {reproduced}; partly when by more than {partly}",
        _apple),
    Experiment(
        "dna", 9, "BERT beyond language: DNA",
        "A model pretrained on English helps even on DNA classification, compared with the same model trained "
        "from random weights.",
        "Kao and Lee 2021 (Is BERT a Cross-Disciplinary Knowledge Learner? A Surprising Finding of Pre-trained "
        "Models' Transferability, Findings of EMNLP): English-pretrained BERT beats random init on DNA and "
        "protein classification.",
        "reproduced when the pretrained model's dev accuracy is at least {reproduced} above the random init's, "
        "partly when above by more than {partly}",
        _dna),
    Experiment(
        "zero_shot", 10, "Multi-BERT zero-shot transfer",
        "A model pretrained on several languages and fine-tuned on a task in one of them does the task in the "
        "others without a single labelled example there.",
        "Wu and Dredze 2019 (Beto, Bentz, Becas: The Surprising Cross-Lingual Effectiveness of BERT): mBERT "
        "fine-tuned on CoNLL-2003 English scores NER F1 74.96 on Spanish and 77.57 on Dutch (CoNLL-2002), "
        "zero-shot; Artetxe et al. 2020 (XQuAD) for QA.",
        "reproduced when the zero-shot accuracy in the other language is above chance by at least {reproduced} "
        "of the in-language gain over chance, partly when by more than {partly} of it",
        _zero_shot),
    Experiment(
        "alignment", 11, "Cross-lingual alignment needs enough bilingual text",
        "A BERT pretrained on two languages without any parallel text aligns them (a word's vector plus the "
        "mean-difference vector lands near its translation), and better with more text.",
        "The lecture (multi-BERT): 200k sentences of pretraining text were not enough for the languages to align, "
        "1,000k were. Method: Pires et al. 2019 (How multilingual is Multilingual BERT?); Libovicky et al. 2020 "
        "(On the Language Neutrality of Pre-trained Multilingual Representations: subtracting each language's "
        "mean vector).",
        "reproduced when top-1 translation (with the mean shift) from the model pretrained on more text is at "
        "least {reproduced} above the one from less text, partly when above by more than {partly}",
        _alignment),
    Experiment(
        "in_context", 12, "GPT in-context learning",
        "A causal language model answers better when the prompt holds a few solved examples, and larger models "
        "gain more from them.",
        "Brown et al. 2020 (GPT-3), Figure 1.2: accuracy rises with the number of demonstrations, steeply for "
        "175B and little for the smallest models.",
        "reproduced when the largest model's accuracy with the most demonstrations is at least {reproduced} above "
        "its zero-shot accuracy, partly when above by more than {partly}",
        _in_context),
]

BY_NAME = {e.name: e for e in EXPERIMENTS}


def criterion_text(experiment: Experiment, crit: dict) -> str:
    try:
        return experiment.criterion.format(**{k: f"{v:g}" for k, v in crit.items()})
    except KeyError as e:
        raise BertctlError(f"experiments.{experiment.name}.criterion has no {e.args[0]}",
                           fix=f"give it {e.args[0]}: (see the shipped recipe reproduce)") from None
