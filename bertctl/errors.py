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
        self.message = _one_line(message).rstrip(".")
        self.fix = _one_line(fix) if fix else fix
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.message}. {self.fix}" if self.fix else f"{self.message}."


def _one_line(text: str) -> str:
    """Messages quote what the user gave (an override, a cell, a key), which may hold line
    breaks: shown escaped, so the error stays one line whatever the input."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")
