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


def check_repo(repo: str) -> None:
    """A repository id the Hub would refuse (`bad name!`, `a/b/c`): one line, before any upload or training."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        why = str(e).split(". ")[0].split(":")[0]
        raise BertctlError(f"'{repo}' is not a Hub repository id ({why})",
                           fix="write it as NAME or OWNER/NAME, e.g. you/minilm-sst2") from None


# what the HTTP clients under huggingface_hub raise when the Hub cannot be reached:
# requests' errors are OSErrors; httpx's (and its forks') are not, and share these bases
_NETWORK_ERRORS = ("TransportError", "RequestError", "ConnectionError", "Timeout", "TimeoutException")


def unreachable(e: BaseException) -> bool:
    """Whether e says the network failed (no connection, DNS, proxy, time-out)."""
    return isinstance(e, (OSError, ConnectionError)) or any(c.__name__ in _NETWORK_ERRORS for c in type(e).__mro__)


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
    check_repo(repo)
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
    except Exception as e:  # no network, DNS, proxy, time-out (whatever the HTTP client's error types)
        if not unreachable(e):
            raise
        raise BertctlError(f"cannot reach the Hub to push {repo}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
                           fix="check your connection, or push later with `bertctl push RUN_DIR REPO`") from None
    return str(url)
