"""Causal LMs for prompting: loaded once per process, and streamed generation.

Any model `bertctl.models.resolve` understands works: an embedded name ("smollm2", a GGUF
file that transformers dequantises on load), a .gguf path, a local Hugging Face folder, a
`bertctl pretrain` run folder (GPT-2 with a WordPiece tokenizer) or a hub id.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.prompting.config import GenerationSection, ModelSection

_LOADED: dict[tuple, "LM"] = {}  # (path, gguf file, precision, device, remote code) -> LM
_CAUSAL = re.compile(r"(CausalLM|LMHeadModel|ForConditionalGeneration)$")


@dataclass
class LM:
    name: str  # short name for tables and plots
    label: str  # long description (where it came from)
    model: object
    tokenizer: object
    load_seconds: float
    precision: object  # the bertctl.precision.ResolvedPrecision its weights were loaded in

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
            if candidate is not None:
                return candidate
        return 0


def short_name(name: str) -> str:
    path = Path(name)
    return path.stem if path.suffix == ".gguf" else (path.name or name)


def _device_and_precision(settings: ModelSection):
    import torch

    from bertctl.precision import resolve

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # None (older recipes) = auto; the weights themselves are cast, so auto never picks fp16
    precision = resolve(settings.precision, device, cast_weights=True)
    return device, precision


def _check_causal(folder: str, label: str) -> None:
    """Refuse encoder-only checkpoints (BERT) early: AutoModelForCausalLM would load them
    with an untrained decoder head and the scores would be noise."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, json.JSONDecodeError):
        return
    if archs and not any(_CAUSAL.search(a) for a in archs):
        raise BertctlError(f"{label} is a {archs[0]}, not a causal (next-token) language model",
                           fix="prompt a causal LM: smollm2, a GPT-style folder, or a `bertctl pretrain` run "
                               "trained with objective.kind=causal")


def load_lm(name: str, settings: ModelSection) -> LM:
    """Load (or reuse from this process) a causal LM and its tokenizer, in eval mode."""
    from transformers import AutoModelForCausalLM

    from bertctl.models import load_model, load_tokenizer, resolve

    source = resolve(name, allow_pickle=settings.allow_pickle)
    device, precision = _device_and_precision(settings)
    key = (source.path, source.gguf_file, precision.name, device, settings.trust_remote_code)
    if key in _LOADED:
        return _LOADED[key]
    if source.kind != "gguf":
        _check_causal(source.path, source.label)
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(source, trust_remote_code=settings.trust_remote_code)
    model = load_model(AutoModelForCausalLM, source, trust_remote_code=settings.trust_remote_code,
                       allow_pickle=settings.allow_pickle, dtype=precision.dtype)
    model.to(device).eval()
    lm = LM(short_name(name), source.label, model, tokenizer, time.perf_counter() - t0, precision)
    _LOADED[key] = lm
    return lm


def generate(lm: LM, prompt: str, settings: GenerationSection, seed: int = 0) -> str:
    """Continue `prompt` (streamed to stdout if settings.stream) until `settings.stop`.

    Returns the continuation up to (not including) the stop text.
    """
    import torch
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList, TextStreamer

    from bertctl.prompting.scoring import encode_prompt

    tok, model = lm.tokenizer, lm.model
    device = next(model.parameters()).device
    ids = torch.tensor([encode_prompt(tok, prompt)], device=device)
    start = ids.shape[1]

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = settings.stop != "" and settings.stop in tok.decode(input_ids[0, start:], skip_special_tokens=True)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    config = GenerationConfig(max_new_tokens=settings.max_new_tokens, do_sample=settings.temperature > 0,
                              temperature=settings.temperature if settings.temperature > 0 else None,
                              top_k=None, top_p=None, pad_token_id=lm.pad_id, eos_token_id=tok.eos_token_id)
    streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True) if settings.stream else None
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config,
                             stopping_criteria=StoppingCriteriaList([StopOnText()]), streamer=streamer)
    text = tok.decode(out[0, start:], skip_special_tokens=True)
    if settings.stream and not text.endswith("\n"):
        print(flush=True)
    return text.split(settings.stop)[0] if settings.stop else text
