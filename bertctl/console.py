"""The terminal: the one place bertctl makes a rich Console.

rich is imported when a line is printed, not when this module is, so `bertctl --help`
stays fast. Library code prints nothing on its own: it returns results, and takes a
`say` callback (or a Console) from the command for the lines that must stream while it works.
"""

from __future__ import annotations


def console(stderr: bool = False, **options):
    """A rich Console on stdout (or stderr) that highlights nothing it was not told to;
    `options` go to rich (soft_wrap=True: long lines are not wrapped; quiet=True: prints nothing)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, **options)


def say(text: str, stderr: bool = False, soft_wrap: bool = False) -> None:
    """One dim progress line (rich markup allowed), e.g. "probing step 40 (checkpoint-40)"."""
    console(stderr, soft_wrap=soft_wrap).print(f"[dim]{text}[/]")
