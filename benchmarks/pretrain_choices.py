"""Which pretraining choices matter? Masking (token / whole-word / span) and the sentence
objective (NSP / SOP / none), at the same token budget on real English, each followed by
the same fine-tuning.

Each variant is the `pretrain_english` recipe with one or two overrides and a shorter
budget (--steps, the same for all), then fine-tuned on SST-2 (2,000 rows) and UD EWT POS
with --seeds seeds (the rows of pretrain_helps.TASKS). Every command is printed before it
runs; runs that finished are reused. Writes results.json and prints one table.

    python benchmarks/pretrain_choices.py                      # 5 variants x 1,000 steps: ~30 min on 2 cores
    python benchmarks/pretrain_choices.py --steps 200 --seeds 1 --variants token+nsp,token+sop

Published points of comparison: T5 (Raffel et al. 2020) found corruption variants within
about a point of each other on GLUE; RoBERTa (Liu et al. 2019) found NSP unhelpful; ALBERT
(Lan et al. 2020) that SOP is harder than NSP and that NSP is solved largely by topic.
MLM accuracy is not comparable across masking schemes (a span is harder to fill than a
token), so the table reads the downstream columns.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_helps import TASKS, bertctl, finetune, mean_std, study_folder  # noqa: E402

VARIANTS = {  # name: pretrain overrides
    "token+nsp": ["objective.masking=token", "objective.pairs=nsp"],
    "whole_word+nsp": ["objective.masking=whole_word", "objective.pairs=nsp"],
    "span+nsp": ["objective.masking=span", "objective.pairs=nsp"],
    "token+sop": ["objective.masking=token", "objective.pairs=sop"],
    "token+none": ["objective.masking=token", "objective.pairs=none"],
}


def pretrain(overrides: list[str], out: Path) -> dict:
    return bertctl("pretrain", "pretrain_english", overrides, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=1000, help="pretraining steps (of the recipe's 64 x 64 tokens), every variant")
    p.add_argument("--tasks", default="sst2,ewt_pos")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="runs/pretrain-choices")
    args = p.parse_args(argv)
    out = study_folder(args.out)
    if out is None:
        return 0
    t0, results = time.time(), {"steps": args.steps, "variants": {}}
    for name in args.variants.split(","):
        run = out / f"pretrain-{name}"
        m = pretrain([*VARIANTS[name], f"train.max_steps={args.steps}", f"train.eval_every={args.steps}",
                      f"train.save_every={args.steps}", "eval.fill_mask=0"], run)
        row = {"mlm_accuracy": m.get("mlm_accuracy"), "unigram_accuracy": m.get("unigram_accuracy"),
               "pair_accuracy": m.get("nsp_accuracy", m.get("sop_accuracy")), "seconds": m.get("train_seconds")}
        for task in args.tasks.split(","):
            recipe, overrides = TASKS[task]
            scores = [finetune(recipe, [f"model.name_or_path={run}", f"train.seed={s}", *overrides],
                               out / f"{name}-{task}-seed{s}") for s in range(args.seeds)]
            values = [float(x["dev"][x["main_metric"]]) for x in scores]
            row[task] = {"values": values, "mean": mean_std(values)[0], "std": mean_std(values)[1],
                         "metric": scores[0]["main_metric"]}
        results["variants"][name] = row
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    results["seconds"] = round(time.time() - t0)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tasks = args.tasks.split(",")
    print(f"{'variant':<16} {'MLM acc':>8} {'pair acc':>9} " + " ".join(f"{t:>17}" for t in tasks))
    for name, r in results["variants"].items():
        pair = f"{r['pair_accuracy']:.3f}" if r["pair_accuracy"] is not None else "-"
        print(f"{name:<16} {r['mlm_accuracy']:>8.4f} {pair:>9} "
              + " ".join(f"{r[t]['mean']:>9.4f} ± {r[t]['std']:.4f}" for t in tasks))
    print(f"RESULT pretrain_choices variants={len(results['variants'])} steps={args.steps} "
          f"seconds={results['seconds']} out={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
