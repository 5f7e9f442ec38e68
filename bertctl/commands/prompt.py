"""`bertctl prompt` (placeholder until its issue lands)."""

from bertctl.errors import BertctlError


def prompt() -> None:
    """Not built yet."""
    raise BertctlError("`bertctl prompt` is not built yet", fix="see the README for what works today")
