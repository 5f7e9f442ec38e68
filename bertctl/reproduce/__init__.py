"""`bertctl reproduce`: the lecture's experiments as a data table, run through the other
commands (one process per step, so the report can quote the exact command lines), read
back from their run folders, graded against criteria in the recipe, rendered as one page."""
