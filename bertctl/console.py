"""The terminal: the one place bertctl makes a rich Console, and the one progress channel.

Results (tables, "Wrote RUN", predictions) go to stdout; progress and notes (what the
command is doing, the resolved precision, training lines and bars) go to stderr, so
`bertctl finetune ... > out.txt` captures results only. `--quiet` (every command that
trains or scores) hides progress; errors and warnings are still shown.

rich is imported when a line is printed, not when this module is, so `bertctl --help`
stays fast. Library code prints nothing on its own: it returns results, and takes a
`say` callback (or a Console) from the command for the lines that must stream while it works.
"""

from __future__ import annotations

_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    """--quiet: progress lines and bars print nothing until the next command (cli.py resets it)."""
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"]


def console(stderr: bool = False, **options):
    """A rich Console on stdout (or stderr) that highlights nothing it was not told to;
    `options` go to rich (soft_wrap=True: long lines are not wrapped; quiet=True: prints nothing)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, **options)


def progress_console(**options):
    """The progress channel as a Console: stderr, silent under --quiet (bars, streamed lines)."""
    return console(stderr=True, **{"quiet": is_quiet(), **options})


def say(text: str, stderr: bool = True, soft_wrap: bool = False, markup: bool = True) -> None:
    """One progress line on stderr, dim (rich markup allowed), e.g. "probing step 40
    (checkpoint-40)"; markup=False prints the text as it is. Hidden by --quiet, except a
    line that is a warning."""
    if is_quiet() and "warning:" not in text[:40].lower():  # "warning: ..." or "[yellow]warning:[/] ..."
        return
    out = console(stderr, soft_wrap=soft_wrap)
    if markup:
        out.print(f"[dim]{text}[/]")
    else:
        out.print(text, markup=False)


def warn(text: str) -> None:
    """A warning on stderr: shown even under --quiet."""
    from rich.markup import escape

    console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {escape(text)}")
