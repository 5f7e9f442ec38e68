"""`bertctl eval-glue` (placeholder until its issue lands)."""

from bertctl.errors import BertctlError


def eval_glue() -> None:
    """Not built yet."""
    raise BertctlError("`bertctl eval-glue` is not built yet", fix="see the README for what works today")
