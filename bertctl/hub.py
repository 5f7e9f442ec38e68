"""Uploading a run's model to the Hugging Face Hub (`bertctl push`, `finetune --push-to-hub`)."""

from __future__ import annotations

import os
from pathlib import Path

from bertctl.errors import BertctlError


def check_online() -> None:
    """One clear line instead of retries and a traceback when the Hub cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise BertctlError("cannot push to the Hub: HF_HUB_OFFLINE is set",
                           fix="unset HF_HUB_OFFLINE on a machine with a connection (and `hf auth login` or HF_TOKEN)")


def model_folder(run_dir: Path, merged: bool = False) -> Path:
    """model/ (or merged/) of a finished run, with its model card."""
    run_dir = Path(run_dir)
    folder = run_dir / ("merged" if merged else "model")
    if not (folder / "config.json").exists() and not (folder / "adapter_config.json").exists():
        what = "merged/ (train with --merge)" if merged else "model/ (the run did not finish)"
        raise BertctlError(f"{run_dir} has no {what}", fix="pass the folder of a finished bertctl run")
    return folder


def push(run_dir: Path, repo: str, private: bool = False, merged: bool = False) -> str:
    """Upload model, tokenizer and README.md; returns the repository's URL."""
    folder = model_folder(run_dir, merged)
    check_online()
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        url = api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message=f"bertctl push {Path(run_dir).name}",
                          ignore_patterns=[".*"])
    except HfHubHTTPError as e:
        first = str(e).splitlines()[0][:200]
        raise BertctlError(f"cannot push to {repo}: {first}",
                           fix="check the repository name and your token (`hf auth login` or HF_TOKEN)") from None
    except (OSError, ConnectionError) as e:  # no network, DNS, proxy
        raise BertctlError(f"cannot reach the Hub to push {repo}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
                           fix="check your connection, or push later with `bertctl push RUN_DIR REPO`") from None
    return str(url)
