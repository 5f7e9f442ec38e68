"""`bertctl push RUN_DIR REPO`: upload a run's model, tokenizer and model card to the Hub."""

from __future__ import annotations

from pathlib import Path

import typer

from bertctl.console import console


def push(
    run_dir: Path = typer.Argument(..., help="A finished finetune or pretrain run folder.", show_default=False),
    repo: str = typer.Argument(..., help="Hub repository, e.g. you/minilm-sst2.", show_default=False),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    merged: bool = typer.Option(False, "--merged", help="LoRA/QLoRA runs: push merged/ instead of the adapter."),
) -> None:
    """Upload model/ (or merged/) with its README.md model card to the Hugging Face Hub."""
    from bertctl.hub import push as push_run

    url = push_run(run_dir, repo, private, merged)
    console().print(f"[bold green]Pushed[/] {run_dir} to {url}")
