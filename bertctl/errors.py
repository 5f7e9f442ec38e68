"""The one error type users see.

Library code raises `BertctlError("what is wrong", fix="what to do")`; the CLI turns it
into a single red line and exit code 2 (see `bertctl.cli.main`). Nothing else should
print tracebacks at users unless they pass `--debug`.
"""

from __future__ import annotations


class BertctlError(Exception):
    """A problem the user can fix: bad input, missing file, impossible setting."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None):
        self.message = message.rstrip(".")
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.message}. {self.fix}" if self.fix else f"{self.message}."
