"""`bertctl eval-glue`: fine-tune and evaluate a model on every GLUE task, one table.

    tasks.py       the nine tasks as data (columns, labels, metrics, files, submission names)
    data.py        a local GLUE folder or nyu-mll/glue -> the same plain rows for every task
    suite.py       one `bertctl finetune` run per task and seed, resumable; the outputs
    score.py       official GLUE scoring, references, the table (terminal/Markdown/CSV), plot
    submission.py  leaderboard TSVs and submission.zip
    config.py      GlueRecipe (the recipe schema)

Importing this package imports only pydantic; torch comes in when a task trains.
"""

from bertctl.glue.config import GlueRecipe

__all__ = ["GlueRecipe"]
