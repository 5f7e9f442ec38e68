"""Prompt assembly and demonstration draws.

A prompt is the description, K demonstrations and the query, joined by the separator:

    Classify the sentiment of each review as positive or negative.   <- description
                                                                       <- separator ("\\n\\n")
    Review: the melon was not bad .                                    <- demo: input
    Sentiment: positive                                                <-       + answer
    <separator>
    Review: the laptop was noisy .                                     <- query: input only
    Sentiment:

and every option is the answer template with a label word (" positive", " negative").

Demonstrations are drawn per query from the pool, seeded by (seed, query index): the
labels are visited round-robin in a shuffled order, each label's rows in a shuffled
order, so any K is balanced over labels (counts differ by at most one) and the draw for
K is the first K of the draw for a larger K (a sweep over K adds demonstrations instead
of replacing them). The chosen rows are then shuffled, so the order of labels in the
prompt carries no pattern. The query itself never appears: the pool holds no row whose
input equals an eval row's (see tasks._drop_leaks) and the caller may exclude more.
"""

from __future__ import annotations

import random

from bertctl.errors import BertctlError
from bertctl.prompting.tasks import Task, render

FIXED = -1  # query index of the one shared draw when recipe.demos == "fixed"


def demo_order(labels: list[str | None], seed: int, index: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """Pool indices in draw order for one query (the first K are its K demonstrations).

    labels: the pool rows' labels (None for unlabelled rows, which are drawn as one group).
    """
    rng = random.Random(f"bertctl-prompt-demos:{seed}:{index}")
    groups: dict[str | None, list[int]] = {}
    for i, label in enumerate(labels):
        if i not in exclude:
            groups.setdefault(label, []).append(i)
    keys = sorted(groups, key=lambda k: (k is None, str(k)))  # a stable start before shuffling
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(groups[key])
    longest = max((len(g) for g in groups.values()), default=0)
    return [groups[k][r] for r in range(longest) for k in keys if r < len(groups[k])]


def sample_demos(labels: list[str | None], k: int, seed: int, index: int,
                 exclude: frozenset[int] = frozenset()) -> list[int]:
    """K pool indices for query `index`: label-balanced, seeded, nested in K, shuffled."""
    if k == 0:
        return []
    chosen = demo_order(labels, seed, index, exclude)[:k]
    if len(chosen) < k:
        raise BertctlError(f"the demonstration pool has only {len(chosen)} usable rows, fewer than {k} shots",
                           fix="use fewer shots or a bigger pool (data.pool_size or data.pool)")
    random.Random(f"bertctl-prompt-order:{seed}:{index}:{k}").shuffle(chosen)
    return chosen


def demo_text(task: Task, row: dict) -> str:
    label = task.label_of(row)
    if label is None:
        raise BertctlError(f"a demonstration needs an answer, but a pool row has no '{task.label_column}' column",
                           fix="give a pool with answers (data.pool) or use --shots 0")
    word = task.words.get(label, label)  # free-text answers (generation) are their own word
    return render(task.input, row) + render(task.answer, {"answer": word}, "template.answer")


def build_prompt(task: Task, demos: list[dict], query: dict) -> str:
    """The exact prompt text: description, demonstrations, query (see module docstring)."""
    parts = ([task.description] if task.description else []) + [demo_text(task, d) for d in demos]
    return task.separator.join(parts + [render(task.input, query)])


def option_texts(task: Task) -> list[str]:
    """The continuations scored for every query, in label order (" positive", " negative")."""
    return [render(task.answer, {"answer": task.words[label]}, "template.answer") for label in task.labels]


def prompts_for(task: Task, k: int, seed: int, fixed: bool = False) -> tuple[list[str], list[list[int]]]:
    """Every eval row's prompt with K demonstrations, and the pool indices used."""
    labels = [task.label_of(r) for r in task.pool_rows]
    prompts, used = [], []
    for i, row in enumerate(task.eval_rows):
        idx = sample_demos(labels, k, seed, FIXED if fixed else i)
        prompts.append(build_prompt(task, [task.pool_rows[j] for j in idx], row))
        used.append(idx)
    return prompts, used


def content_free_prompts(task: Task, demos: list[list[int]], text: str = "N/A") -> list[str]:
    """The prompts of `prompts_for` with every input placeholder of the query set to `text`
    (same demonstrations), for contextual calibration."""
    query = {f: text for f in task.input_fields()}
    return [build_prompt(task, [task.pool_rows[j] for j in idx], query) for idx in demos]
