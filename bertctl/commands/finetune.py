"""`bertctl finetune` (placeholder until its issue lands)."""

from bertctl.errors import BertctlError


def finetune() -> None:
    """Not built yet."""
    raise BertctlError("`bertctl finetune` is not built yet", fix="see the README for what works today")
