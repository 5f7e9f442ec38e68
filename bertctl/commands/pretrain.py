"""`bertctl pretrain` (placeholder until its module lands)."""

from bertctl.errors import BertctlError


def pretrain() -> None:
    """Not built yet."""
    raise BertctlError("`bertctl pretrain` is not built yet")
