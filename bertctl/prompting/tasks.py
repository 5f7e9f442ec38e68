"""Tasks for `bertctl prompt`: rows to evaluate, a pool to draw demonstrations from, a
template that turns a row into text, and the label words the options are made of.

Built-in tasks generate small labelled sets with `bertctl.data.world.World` (no
download, so `bertctl prompt` works offline); any CSV/TSV/JSONL file becomes a task when
the recipe gives a template whose placeholders name its columns.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.prompting.config import BUILTIN_TASKS, PromptRecipe

SEPARATOR = "\n\n"
ANSWER = " {answer}"
WORLD_EVAL_SIZE = 200  # a built-in task with data.limit=null


def _builtin_spec(name: str) -> dict:
    """Template and label words of a built-in task (World data, English side)."""
    from bertctl.data.world import TOPIC_NAMES

    if name == "sentiment":
        return {"description": "Classify the sentiment of each review as positive or negative.",
                "input": "Review: {text}\nSentiment:", "words": {"positive": "positive", "negative": "negative"}}
    if name == "nli":
        return {"description": "Does the premise imply the hypothesis? Answer True, False or Neither.",
                "input": "Premise: {premise}\nHypothesis: {hypothesis}\nAnswer:",
                "words": {"entailment": "True", "neutral": "Neither", "contradiction": "False"}}
    if name == "topic":
        return {"description": f"Classify each text by its topic: {', '.join(TOPIC_NAMES)}.",
                "input": "Text: {text}\nTopic:", "words": {t: t for t in TOPIC_NAMES}}
    if name == "translate":
        # The options are every Xx word of the lexicon; Xx is an invented language, so a
        # model that never read Xx text can only guess (chance = 1 / number of words).
        return {"description": "Translate English words into Xx.", "input": "English: {en}\nXx:", "words": None}
    raise AssertionError(name)


@dataclass
class Task:
    name: str
    description: str
    input: str  # template of a query/demo, placeholders = column names
    answer: str  # template of the answer after the input, placeholder {answer} = label word
    separator: str
    words: dict[str, str]  # label value -> label word (the options, in this order); {} = free text
    eval_rows: list[dict]
    pool_rows: list[dict]
    label_column: str = "label"
    labelled: bool = True  # eval rows have gold labels
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(self.words)

    def label_of(self, row: dict) -> str | None:
        value = row.get(self.label_column)
        return None if value is None else str(value)

    def input_fields(self) -> list[str]:
        return template_fields(self.input)


# --------------------------------------------------------------------- templates


def template_fields(template: str) -> list[str]:
    """Placeholder names in a str.format template ('{text} {x}' -> ['text', 'x'])."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise BertctlError(f"template {template!r} is malformed ({e})",
                           fix="write placeholders like {text}; use {{ and }} for literal braces") from None


def render(template: str, values: dict, what: str = "template.input") -> str:
    try:
        return template.format_map(values)
    except KeyError as e:
        raise BertctlError(f"{what} {template!r} uses the placeholder {{{e.args[0]}}}, which the data lacks "
                           f"(columns: {', '.join(sorted(map(str, values)))})",
                           fix="use the data's column names as placeholders") from None
    except (ValueError, IndexError) as e:
        raise BertctlError(f"{what} {template!r} is malformed ({e})",
                           fix="write placeholders like {text}; use {{ and }} for literal braces") from None


# ------------------------------------------------------------------------- data


def _world_rows(name: str, n: int, seed: int) -> list[dict]:
    from bertctl.data.world import World

    world = World(seed)
    if name == "translate":
        pairs = world.bilingual_lexicon()
        random.Random(f"bertctl-prompt:{seed}:translate").shuffle(pairs)
        return [{"en": en, "xx": xx, "label": xx} for en, xx in pairs[:n]]
    return getattr(world, name)(n)


def _read_rows(path: str, fmt: str | None) -> list[dict]:
    from bertctl.data.readers import read_table

    return read_table(path, fmt=fmt)


def _subset(rows: list[dict], limit: int | None, rng: random.Random) -> list[dict]:
    """A seeded random subset kept in file order (so the first rows are not favoured)."""
    if limit is None or len(rows) <= limit:
        return rows
    keep = sorted(rng.sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def _labelled(rows: list[dict], column: str) -> bool:
    return bool(rows) and all(r.get(column) not in (None, "", "-") for r in rows)


# column names that hold gold labels in common files: a file with one of them but not
# data.label_column has a misnamed setting, not "no labels"
LABEL_LIKE = {"label", "labels", "gold", "gold_label", "class", "category", "target", "answer", "y", "sentiment"}


def _file_labelled(rows: list[dict], column: str, where, recipe, notes: list[str]) -> bool:
    """Whether an eval file is labelled. Free generation only for a file that truly has no
    label column (and the run says so); a misnamed or half-filled label column is an error."""
    columns = list(dict.fromkeys(str(c) for r in rows for c in r))
    having = [i for i, r in enumerate(rows, 1) if r.get(column) not in (None, "", "-")]
    if len(having) == len(rows):
        return True
    if having:
        missing = next(i for i in range(1, len(rows) + 1) if i not in set(having))
        raise BertctlError(f"{where}: eval row {missing} has no label in column '{column}' "
                           f"({len(rows) - len(having)} of {len(rows)} rows lack one)",
                           fix="give every row a label, or remove the column for free generation")
    like = [c for c in columns if c.lower() in LABEL_LIKE]
    if column != "label" or like or recipe.labels:
        hint = f"data.label_column={like[0]}" if like else "data.label_column to the label column"
        raise BertctlError(f"{where} has no column '{column}' (data.label_column); columns: {', '.join(columns)}",
                           fix=f"set {hint}" + (", or drop data.label_column/labels for free generation"
                                                if column != "label" or recipe.labels else ""))
    notes.append(f"{Path(str(where)).name} has no label column: free generation, nothing is scored")
    return False


def load_task(recipe: PromptRecipe) -> Task:
    """Build the task a recipe describes: rows, pool, template and label words."""
    name, data = recipe.task, recipe.data
    spec = _builtin_spec(name) if name in BUILTIN_TASKS else None
    if spec is None and data.eval is None:
        raise BertctlError(f"unknown task '{name}'", fix=f"use a built-in task ({', '.join(BUILTIN_TASKS)}) or "
                                                         "give a file with data.eval=PATH and a template")
    rng = random.Random(f"bertctl-prompt:{data.seed}:split")
    notes: list[str] = []
    if data.eval is None:  # built-in: one World draw split into eval rows and the pool
        n_eval = data.limit or WORLD_EVAL_SIZE
        rows = _world_rows(name, n_eval + data.pool_size, data.seed)
        eval_rows, pool_rows = rows[:n_eval], rows[n_eval:]
        source = f"World(seed={data.seed}).{'bilingual_lexicon()' if name == 'translate' else name}"
    else:
        eval_rows = _read_rows(data.eval, data.format)
        source = str(data.eval)
        if data.pool is not None:
            pool_rows = _read_rows(data.pool, data.format)
        else:  # hold out a seeded pool so demonstrations never come from the rows scored
            if len(eval_rows) <= data.pool_size:
                raise BertctlError(f"{data.eval} has {len(eval_rows)} rows, too few to hold out a pool of "
                                   f"{data.pool_size} demonstrations", fix="give data.pool=FILE or a smaller "
                                                                           "data.pool_size")
            order = list(range(len(eval_rows)))
            rng.shuffle(order)
            held = set(order[:data.pool_size])
            pool_rows = [r for i, r in enumerate(eval_rows) if i in held]
            eval_rows = [r for i, r in enumerate(eval_rows) if i not in held]
            notes.append(f"{len(pool_rows)} rows of {Path(data.eval).name} held out as the demonstration pool")
        total = len(eval_rows)
        eval_rows = _subset(eval_rows, data.limit, rng)
        if len(eval_rows) < total:
            notes.append(f"evaluating a seeded subset of {len(eval_rows)} of {total} rows (data.limit)")

    t = recipe.template
    spec = spec or {}
    description = t.description if t.description is not None else spec.get("description", "")
    template = t.input if t.input is not None else spec.get("input")
    if template is None:
        columns = ", ".join(str(c) for c in eval_rows[0]) if eval_rows else "?"
        raise BertctlError(f"task '{name}' reads {source} and needs template.input",
                           fix=f"set e.g. template.input='Review: {{sentence}}\\nSentiment:' using the columns "
                               f"({columns})")
    answer = t.answer if t.answer is not None else ANSWER
    if set(template_fields(answer)) - {"answer"}:
        raise BertctlError(f"template.answer {answer!r} may only use the placeholder {{answer}}",
                           fix="write e.g. template.answer=' {answer}' (other columns would leak the gold label)")
    task = Task(name=name, description=description, input=template, answer=answer,
                separator=t.separator if t.separator is not None else SEPARATOR, words={},
                eval_rows=eval_rows, pool_rows=pool_rows, label_column=data.label_column,
                labelled=(_labelled(eval_rows, data.label_column) if data.eval is None else
                          _file_labelled(eval_rows, data.label_column, data.eval, recipe, notes)),
                source=source, notes=notes)
    _check_columns(task, data.eval or source)
    task.words = _label_words(task, recipe.labels, spec.get("words"))
    _drop_leaks(task)
    return task


def _check_columns(task: Task, where) -> None:
    for rows, what in ((task.eval_rows, "eval"), (task.pool_rows, "pool")):
        for i, row in enumerate(rows):
            missing = [f for f in task.input_fields() if f not in row]
            if missing:
                raise BertctlError(f"{where}: {what} row {i + 1} lacks column(s) {', '.join(missing)} used by "
                                   f"template.input (columns: {', '.join(map(str, row))})",
                                   fix="use the data's column names as placeholders")


def _label_words(task: Task, given: dict[str, str] | None, builtin: dict[str, str] | None) -> dict[str, str]:
    """label value -> word. Every gold label must have a word, and words must differ."""
    pool_labels = [task.label_of(r) for r in task.pool_rows if task.label_of(r) not in (None, "", "-")]
    eval_labels = [task.label_of(r) for r in task.eval_rows] if task.labelled else []
    if given is not None:
        words = dict(given)
    elif builtin is not None:
        words = dict(builtin)
    elif task.name == "translate":
        from bertctl.data.world import World

        words = {xx: xx for _, xx in sorted(World(0).bilingual_lexicon(), key=lambda p: p[1])}
    else:
        from bertctl.data.readers import _label_order

        words = {v: v for v in sorted(set(pool_labels) | set(eval_labels), key=_label_order)}
    if not words:
        return {}
    unknown = sorted(set(pool_labels + eval_labels) - set(words))
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise BertctlError(f"label(s) {shown} in the data have no label word (labels: {', '.join(map(repr, words))})",
                           fix="add them to `labels` in the recipe, e.g. labels={0: negative, 1: positive}")
    empty = [k for k, w in words.items() if not str(w).strip()]
    if empty:
        raise BertctlError(f"the label word of {empty[0]!r} is empty", fix="give every label a word")
    seen: dict[str, str] = {}
    for label, word in words.items():
        if word in seen:
            raise BertctlError(f"labels {seen[word]!r} and {label!r} have the same word {word!r}",
                               fix="give every label its own word, or the options cannot be told apart")
        seen[word] = label
    return {k: str(w) for k, w in words.items()}


def _drop_leaks(task: Task) -> None:
    """No demonstration may be a query: drop pool rows whose input equals an eval row's."""
    fields = task.input_fields()

    def key(row):
        return tuple(str(row.get(f)) for f in fields)

    queries = {key(r) for r in task.eval_rows}
    kept = [r for r in task.pool_rows if key(r) not in queries]
    if len(kept) < len(task.pool_rows):
        task.notes.append(f"dropped {len(task.pool_rows) - len(kept)} pool rows identical to an eval query")
    task.pool_rows = kept
