"""Few-shot prompting of causal language models (`bertctl prompt`).

    config.py   the recipe schema (pure pydantic: the CLI validates recipes without torch)
    tasks.py    what a task is: rows (World data or a CSV/TSV/JSONL file), template, label words
    prompts.py  prompt assembly and the seeded, label-balanced demonstration draws
    scoring.py  log-probabilities of answer options: naive, batched and prefix-cached
    lm.py       loading causal LMs once per process, streaming generation
    run.py      `run_prompt`: the K sweep, metrics, run folder, table and plot
"""
