"""Log-probabilities of answer options given a prompt, three ways that give the same numbers.

For a prompt (context) c and an option o = o_1..o_n (token ids), the score is

    log p(o | c) = sum_j log softmax(logits(c, o_<j))[o_j]

exactly as lm-evaluation-harness computes `loglikelihood`. Three implementations:

- `naive`:   one forward over c + o per option, full logits. The reference.
- `batched`: all (c + o) rows of several prompts right-padded into one forward; logits
             only at the option positions (`logits_to_keep`).
- `prefix`:  per batch of prompts, the longest token prefix they share is run once; each
             prompt's remaining tokens are run once, left-padded against that prefix's
             KV cache, with logits only at the last position, which already scores the
             first token of every option. Options of two or more tokens then run as short
             continuations batched against the prompt's cache, repeated once per option.
             A prompt is encoded once however many options it has.

Tokenisation follows the harness: the context is encoded alone, each option as the tail
of encode(context + option), and trailing whitespace of the context moves to the options
(so "Sentiment: " + "positive" tokenises like "Sentiment:" + " positive").
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Callable

from bertctl.errors import BertctlError


@dataclass
class Request:
    context: list[int]  # token ids of the prompt (with a leading BOS/[CLS] if the tokenizer adds one)
    options: list[list[int]]  # token ids of every option's continuation


Scores = list[list[tuple[float, int]]]  # per request, per option: (summed log-prob, number of tokens)


# -------------------------------------------------------------------- tokenising


def leading_special(tokenizer) -> list[int]:
    """The token the tokenizer puts before text (BOS, [CLS]), if any, never the trailing ones.

    The model saw text after it in training (a bertctl causal model reads "[CLS] doc [SEP]"),
    so prompts start with it too; an end-of-text token would end the prompt, so it is dropped.
    """
    from bertctl.models import special_tokens_around

    return special_tokens_around(tokenizer)[0][:1]


def encode_prompt(tokenizer, text: str, start: list[int] | None = None) -> list[int]:
    start = leading_special(tokenizer) if start is None else start
    return start + tokenizer(text, add_special_tokens=False)["input_ids"]


def _split_trailing_space(context: str) -> tuple[str, str]:
    stripped = context.rstrip()
    return stripped, context[len(stripped):]


def encode(tokenizer, prompts: list[str], options: list[str]) -> list[Request]:
    """Token ids of every prompt and of every option as its continuation."""
    start = leading_special(tokenizer)
    requests = []
    for prompt in prompts:
        context, space = _split_trailing_space(prompt)
        conts = [space + o for o in options]
        ctx_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        wholes = tokenizer([context + c for c in conts], add_special_tokens=False)["input_ids"]
        opt_ids = []
        for cont, whole in zip(conts, wholes):
            if whole[:len(ctx_ids)] == ctx_ids and len(whole) > len(ctx_ids):
                opt_ids.append(whole[len(ctx_ids):])
            else:  # the option merged with the context's last token: encode it alone
                opt_ids.append(tokenizer(cont, add_special_tokens=False)["input_ids"])
            if not opt_ids[-1]:
                raise BertctlError(f"the option {cont!r} encodes to no tokens", fix="give every label a word")
        if not start + ctx_ids:
            raise BertctlError("a prompt encodes to no tokens", fix="check template.input and the data")
        requests.append(Request(start + ctx_ids, opt_ids))
    return requests


def context_limit(model) -> int | None:
    cfg = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_lengths(requests: list[Request], model, what: str) -> None:
    """Fail before any work if a prompt + option does not fit the model's context."""
    limit = context_limit(model)
    if limit is None or not requests:
        return
    longest = max(len(r.context) + max(len(o) for o in r.options) for r in requests)
    if longest > limit:
        raise BertctlError(f"{what}: a prompt with its answer is {longest} tokens, longer than the model's "
                           f"context of {limit}", fix="use fewer shots, shorter templates, or a model with a "
                                                      "longer context")


# ---------------------------------------------------------------- model plumbing


@dataclass
class _Signature:
    cache: str | None  # name of the KV-cache argument ("cache" in transformers >= 5.2x, else past_key_values)
    logits_to_keep: bool


def _signature(model) -> _Signature:
    params = inspect.signature(model.forward).parameters
    cache = "cache" if "cache" in params else ("past_key_values" if "past_key_values" in params else None)
    return _Signature(cache, "logits_to_keep" in params)


def _forward(model, ids, mask=None, pos=None, cache=None, keep=0, use_cache=False):
    """model(...) -> (float32 logits at the kept positions, the cache after this step).

    keep: 0 = all positions, int n = the last n, or a (batch, k) tensor of positions.
    """
    import torch

    sig = _signature(model)
    kwargs = {"input_ids": ids, "use_cache": use_cache}
    if mask is not None:
        kwargs["attention_mask"] = mask
    if pos is not None:
        kwargs["position_ids"] = pos
    if cache is not None:
        kwargs[sig.cache] = cache
    if sig.logits_to_keep:
        kwargs["logits_to_keep"] = keep
    out = model(**kwargs)
    logits = out.logits
    if not sig.logits_to_keep:  # slice afterwards (same numbers, more work)
        if isinstance(keep, torch.Tensor):
            logits = torch.take_along_dim(logits, keep[..., None], dim=1)
        elif keep:
            logits = logits[:, -keep:]
    new_cache = out.get(sig.cache) if use_cache else None
    return logits.float(), new_cache


def _select_cache(cache, idx):
    """A new cache holding rows `idx` of `cache` (repeats allowed); `cache` is untouched."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if type(cache) is DynamicCache and layers and all(type(layer) is DynamicLayer for layer in layers):
        return DynamicCache(ddp_cache_data=[(layer.keys.index_select(0, idx), layer.values.index_select(0, idx))
                                            for layer in layers])
    picked = copy.deepcopy(cache)  # other cache types: copy, then select in place
    picked.batch_select_indices(idx)
    return picked


def _device(model):
    return next(model.parameters()).device


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ---------------------------------------------------------------------- scorers


def score_naive(model, requests: list[Request], progress: Callable[[int], None] | None = None) -> Scores:
    """One forward over prompt + option for every option; log-softmax of the full logits."""
    import torch

    device, out = _device(model), []
    with torch.inference_mode():
        for req in requests:
            row = []
            for opt in req.options:
                ids = torch.tensor([req.context + opt], device=device)
                logp = _forward(model, ids)[0][0].log_softmax(-1)  # (len, vocab)
                n = len(req.context)
                row.append((sum(logp[n - 1 + j, t].item() for j, t in enumerate(opt)), len(opt)))
            out.append(row)
            if progress:
                progress(1)
    return out


def score_batched(model, requests: list[Request], rows_per_batch: int = 16, pad_id: int = 0,
                  progress: Callable[[int], None] | None = None) -> Scores:
    """Every prompt+option as its own row, right-padded into batches (no cache)."""
    import torch

    device = _device(model)
    rows = [(r, j) for r, req in enumerate(requests) for j in range(len(req.options))]
    rows.sort(key=lambda rj: -(len(requests[rj[0]].context) + len(requests[rj[0]].options[rj[1]])))
    out: Scores = [[(0.0, 0)] * len(req.options) for req in requests]
    left = [len(req.options) for req in requests]
    with torch.inference_mode():
        for chunk in _chunks(rows, rows_per_batch):
            seqs = [requests[r].context + requests[r].options[j] for r, j in chunk]
            width, span = max(map(len, seqs)), max(len(requests[r].options[j]) for r, j in chunk)
            ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            keep = torch.zeros((len(seqs), span), dtype=torch.long)  # positions whose logits we need
            for b, ((r, j), seq) in enumerate(zip(chunk, seqs)):
                ids[b, :len(seq)], mask[b, :len(seq)] = torch.tensor(seq), 1
                n, m = len(requests[r].context), len(requests[r].options[j])
                keep[b] = torch.tensor([n - 1 + min(k, m - 1) for k in range(span)])
            logp = _forward(model, ids.to(device), mask.to(device), keep=keep.to(device))[0].log_softmax(-1)
            for b, (r, j) in enumerate(chunk):
                opt = requests[r].options[j]
                out[r][j] = (sum(logp[b, k, t].item() for k, t in enumerate(opt)), len(opt))
                left[r] -= 1
                if progress and left[r] == 0:
                    progress(1)
    return out


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(map(len, seqs))
    for i in range(n):
        token = seqs[0][i]
        if any(s[i] != token for s in seqs):
            return i
    return n


def score_prefix(model, requests: list[Request], batch_size: int = 8, option_batch: int = 64, pad_id: int = 0,
                 progress: Callable[[int], None] | None = None) -> Scores:
    """Each prompt run once (sharing the batch's common prefix), options as cached continuations."""
    import torch

    device = _device(model)
    out: Scores = [[] for _ in requests]
    order = sorted(range(len(requests)), key=lambda i: len(requests[i].context))  # little padding
    with torch.inference_mode():
        for chunk in _chunks(order, batch_size):
            ctxs = [requests[i].context for i in chunk]
            # 1. the shared prefix, once (at least one token of every prompt stays to run below,
            #    since its last position's logits are what score the options' first tokens)
            p = min(_common_prefix(ctxs), min(map(len, ctxs)) - 1)
            cache = None
            if p > 0:
                _, cache = _forward(model, torch.tensor([ctxs[0][:p]], device=device), keep=1, use_cache=True)
                cache = _select_cache(cache, torch.zeros(len(chunk), dtype=torch.long, device=device))
            # 2. the rest of every prompt, left-padded so all end at the same (last) position
            rest = [c[p:] for c in ctxs]
            width = max(map(len, rest))
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            own = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, r in enumerate(rest):
                ids[b, width - len(r):], own[b, width - len(r):] = torch.tensor(r), 1
            mask = torch.cat([torch.ones((len(chunk), p), dtype=torch.long), own], 1)  # (B, p + width)
            pos = p + (own.cumsum(1) - 1).clamp(min=0)  # real positions; pads get p (masked anyway)
            logits, cache = _forward(model, ids.to(device), mask.to(device), pos.to(device), cache, keep=1,
                                     use_cache=True)
            first = logits[:, -1].log_softmax(-1)  # (B, vocab): scores every option's first token
            for b, i in enumerate(chunk):
                out[i] = [(first[b, opt[0]].item(), len(opt)) for opt in requests[i].options]
            # 3. options of 2+ tokens: feed o_1..o_{n-1} after the prompt, rows = (prompt, option)
            long = [(b, j) for b, i in enumerate(chunk) for j, opt in enumerate(requests[i].options) if len(opt) > 1]
            next_pos = pos[:, -1] + 1  # (B,)
            for part in _chunks(long, option_batch):
                rows = torch.tensor([b for b, _ in part], device=device)
                feeds = [requests[chunk[b]].options[j][:-1] for b, j in part]
                span = max(map(len, feeds))
                o_ids = torch.full((len(part), span), pad_id, dtype=torch.long)
                o_own = torch.zeros((len(part), span), dtype=torch.long)
                for r, f in enumerate(feeds):
                    o_ids[r, :len(f)], o_own[r, :len(f)] = torch.tensor(f), 1
                o_mask = torch.cat([mask.to(device).index_select(0, rows), o_own.to(device)], 1)
                o_pos = next_pos.to(device).index_select(0, rows)[:, None] + torch.arange(span, device=device)
                o_logits, _ = _forward(model, o_ids.to(device), o_mask, o_pos, _select_cache(cache, rows),
                                       use_cache=True)
                logp = o_logits.log_softmax(-1)  # (rows, span, vocab): position k predicts option token k+1
                for r, (b, j) in enumerate(part):
                    opt = requests[chunk[b]].options[j]
                    total, n = out[chunk[b]][j]
                    out[chunk[b]][j] = (total + sum(logp[r, k - 1, opt[k]].item() for k in range(1, len(opt))), n)
            if progress:
                progress(len(chunk))
    return out


def score(model, requests: list[Request], method: str = "prefix", batch_size: int = 8, option_batch: int = 64,
          pad_id: int = 0, progress: Callable[[int], None] | None = None) -> Scores:
    if method == "naive":
        return score_naive(model, requests, progress)
    if method == "batched":
        n_opts = max((len(r.options) for r in requests), default=1)
        return score_batched(model, requests, max(1, min(option_batch, batch_size * n_opts)), pad_id, progress)
    if method == "prefix":
        return score_prefix(model, requests, batch_size, option_batch, pad_id, progress)
    raise BertctlError(f"unknown scoring method {method!r}", fix="use prefix, batched or naive")


def normalized(scores: list[tuple[float, int]], texts: list[str], normalize: str) -> list[float]:
    """Length normalisation: none (sum), tokens (mean per token), chars (per character)."""
    if normalize == "none":
        return [lp for lp, _ in scores]
    if normalize == "tokens":
        return [lp / n for lp, n in scores]
    if normalize == "chars":
        return [lp / max(1, len(t)) for (lp, _), t in zip(scores, texts)]
    raise BertctlError(f"unknown normalisation {normalize!r}", fix="use none, tokens or chars")


def choose(values: list[float]) -> int:
    """The best option (the first one on a tie)."""
    return max(range(len(values)), key=lambda j: (values[j], -j))
