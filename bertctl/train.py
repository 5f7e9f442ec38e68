"""The training loop, shared by `pretrain` and `finetune` (where they truly agree).

One loop on `accelerate` (which brings DDP/FSDP/DeepSpeed through `accelerate launch` or
`torchrun`). What the loop needs from a caller is a `Job`:

    batches(epoch) -> list of lists of example indices (the *global* batches, in order)
    collate(examples, epoch) -> dict of tensors (CPU)
    units(batch) -> {loss name: count}      e.g. {"mlm": masked tokens, "nsp": pairs}
    losses(model, batch) -> ({loss name: summed loss}, {extra scalars to log})
    evaluate(model) -> {metric: value}      called at eval points, on every rank
    state: dict of JSON values (optional)   the caller's running sums (e.g. training loss
                                            since the last evaluation): saved with every
                                            checkpoint and restored in place on resume

Why sums and counts instead of mean losses: with several processes, or with gradient
accumulation, the number of masked tokens differs between micro-batches. Dividing each
summed loss by the *global* count makes one step's gradient exactly the mean over the
global batch, so 2 processes give the same loss curve as 1 with the same global batch.

Randomness is a pure function of (seed, epoch, example) in the collators and the batch
plan, and the torch RNG (dropout) is saved in checkpoints, so `--resume` reproduces an
uninterrupted run. Checkpoints hold only trainable parameters (safetensors), the
optimizer state (safetensors + JSON) and the loop position.
"""

from __future__ import annotations

import json
import math
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bertctl.config import TrainSettings
from bertctl.errors import BertctlError
from bertctl.runs import Run, write_json


class Interrupted(BertctlError):
    exit_code = 130


@dataclass
class Job:
    batches: Callable[[int], list[list[int]]]
    dataset: Any  # indexable: dataset[i] -> example
    collate: Callable[[list, int], dict]
    units: Callable[[dict], dict[str, int]]
    losses: Callable[[torch.nn.Module, dict], tuple[dict[str, torch.Tensor], dict[str, float]]]
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None
    state: dict | None = None  # see the module docstring: checkpointed with the loop position


@dataclass
class FitResult:
    steps: int
    seconds: float
    tokens: int
    samples: int
    evals: list[dict] = field(default_factory=list)  # one dict per evaluation, with "step"/"epoch"
    final: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    @property
    def samples_per_s(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


# ------------------------------------------------------------------------- helpers


def process_state():
    """accelerate's PartialState (rank, world size, barriers), made the same way everywhere.

    Why `cpu=`: on a machine without a GPU, accelerate runs every process started by
    torchrun as a separate single-process job unless told it is a CPU job; the first
    PartialState made in a process decides for the whole process, so everyone makes it here."""
    import os

    from accelerate import PartialState

    many = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=many and not torch.cuda.is_available())


def make_accelerator(precision: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one process-wide state and refuses a second Accelerator with another
    # precision; forget the previous one (the process group in PartialState is kept) so
    # several fits in one process (tests, benchmarks) may use different precisions.
    AcceleratorState._reset_state()
    state = process_state()
    # fp16 needs a grad scaler (accelerate's); bf16 and fp32 are plain autocast / no-ops.
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, split_batches=False,
                       cpu=state.device.type == "cpu" and state.num_processes > 1)


def make_optimizer(model: torch.nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm weights (as in BERT).

    The fused kernel (one pass over each tensor) when every trainable tensor is a float
    on CPU or CUDA: Trainer uses it by default, and on 2 shared CPU cores the default
    multi-tensor step of a 22M-parameter model measured several times slower."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in decay + no_decay)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=s.lr, betas=(0.9, 0.999), eps=1e-6, fused=fused)


def lr_lambda(s: TrainSettings, total: int) -> Callable[[int], float]:
    warm = int(s.warmup * total)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if s.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        if s.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return max(0.0, 1.0 - progress)

    return f


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run: Run, step: int, model, optimizer, scheduler, position: dict, keep: int | None) -> Path:
    """Write a complete checkpoint into a temp folder, then rename it into place (atomic)."""
    from safetensors.torch import save_file

    tmp = run.new_checkpoint_dir(step)
    if run.main:
        save_file(trainable_state(model), str(tmp / "model.safetensors"))
        opt = optimizer.state_dict()
        tensors, layout = {}, {}
        for idx, st in opt["state"].items():
            layout[str(idx)] = {}
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"{idx}.{k}"] = v.contiguous().cpu()
                else:
                    layout[str(idx)][k] = v
        save_file(tensors or {"_empty": torch.zeros(1)}, str(tmp / "optimizer.safetensors"))
        save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        state = {"step": step, **position, "scheduler": scheduler.state_dict(),
                 "param_groups": opt["param_groups"], "optimizer_layout": layout}
        write_json(tmp / "state.json", state)  # written last: its presence marks completeness
    return run.commit_checkpoint(tmp, step, keep)


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        weights = load_file(str(path / "model.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
        rng = load_file(str(path / "rng.safetensors"))["torch_rng"]
    except (OSError, ValueError, SafetensorError, KeyError) as e:
        raise BertctlError(f"checkpoint {path} is damaged ({str(e).splitlines()[0][:120]})",
                           fix=f"delete {path} to resume from the previous checkpoint") from None
    missing = set(trainable_state(model)) - set(weights)
    if missing:
        raise BertctlError(f"checkpoint {path} does not match this model ({len(missing)} parameters missing, e.g. {sorted(missing)[0]})",
                           fix="resume with the same recipe the run was started with")
    model.load_state_dict(weights, strict=False)
    opt_state: dict = {"state": {}, "param_groups": state["param_groups"]}
    for idx, extra in state["optimizer_layout"].items():
        entry = dict(extra)
        for key, value in opt_tensors.items():
            i, _, name = key.partition(".")
            if i == idx:
                entry[name] = value
        opt_state["state"][int(idx)] = entry
    optimizer.load_state_dict(opt_state)
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(rng)
    return state


class _StopFlag:
    """First Ctrl-C asks the loop to stop at the next step boundary (after a checkpoint);
    a second one interrupts at once. Stopping mid-step could leave half-updated weights."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (e.g. some test runners)
            self._old = None
        return self

    def _handle(self, *_):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def resume_command(run: Run) -> str:
    args = [a for a in sys.argv[1:] if a != "--resume"]
    if "--out" not in args and "-o" not in args:
        args += ["--out", str(run.path)]
    return "bertctl " + shlex.join(args) + " --resume"  # quoted: paste-able even with spaces in paths


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# ------------------------------------------------------------------------ the loop


def fit(model: torch.nn.Module, job: Job, s: TrainSettings, run: Run, resume: bool = False,
        describe: str = "training") -> FitResult:
    torch.manual_seed(s.seed)
    acc = make_accelerator(s.precision)
    rank, world = acc.process_index, acc.num_processes
    if s.batch_size % world:
        raise BertctlError(f"train.batch_size={s.batch_size} does not split over {world} processes",
                           fix=f"use a multiple of {world}")
    if world > 1:
        run.log(f"{world} processes ({acc.distributed_type.value}), {s.batch_size // world} examples each per batch")

    # plan: how many optimizer steps in all, and where evaluations/checkpoints happen
    steps_per_epoch = max(1, len(job.batches(0)) // s.grad_accum)
    total = s.max_steps or max(1, math.ceil(s.epochs * steps_per_epoch))
    n_epochs = math.ceil(total / steps_per_epoch)

    optimizer = make_optimizer(model, s)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(s, total))
    model, optimizer = acc.prepare(model, optimizer)
    raw_model = acc.unwrap_model(model)

    step, start_epoch, skip_batches, evals = 0, 0, 0, []
    if resume:
        ckpt = run.latest_checkpoint()
        if ckpt is None:  # stopped before its first checkpoint: nothing is lost by starting over
            run.truncate_metrics(0)
            run.log("no complete checkpoint yet: starting from step 0")
        else:
            state = load_checkpoint(ckpt, raw_model, optimizer, scheduler)
            step, start_epoch, skip_batches, evals = state["step"], state["epoch"], state["batch"], state.get("evals", [])
            if job.state is not None:
                job.state.update(state.get("job_state", {}))
            run.truncate_metrics(step)
            run.log(f"resumed from {ckpt.name}")

    def evaluate(epoch: int) -> dict:
        if job.evaluate is None:
            return {}
        model.eval()
        with torch.no_grad(), acc.autocast():
            metrics = job.evaluate(raw_model)
        model.train()
        row = {"step": step, "epoch": epoch, **{f"eval_{k}": v for k, v in metrics.items()}}
        evals.append(row)
        run.log_metrics(row)
        return metrics

    def checkpoint(epoch: int, batch: int) -> None:
        save_checkpoint(run, step, raw_model, optimizer, scheduler,
                        {"epoch": epoch, "batch": batch, "evals": evals, "job_state": job.state or {}}, s.keep_checkpoints)

    progress = _progress(run.main, describe, total, step)
    seen_tokens = seen_samples = 0
    t0 = time.perf_counter()
    model.train()
    with _StopFlag() as stop, progress:
        for epoch in range(start_epoch, n_epochs):
            plan = job.batches(epoch)
            usable = len(plan) // s.grad_accum * s.grad_accum
            b = skip_batches if epoch == start_epoch else 0
            while b < usable and step < total:
                # ---- one optimizer step over grad_accum micro-batches
                micro = []
                for idx in plan[b:b + s.grad_accum]:
                    mine = idx[rank * len(idx) // world:(rank + 1) * len(idx) // world]  # this rank's slice
                    micro.append(_to(job.collate([job.dataset[i] for i in mine], epoch), acc.device))
                counts = _global_counts([job.units(mb) for mb in micro], acc)
                step_loss, extras = torch.zeros((), device=acc.device), {}
                for i, mb in enumerate(micro):
                    sync = acc.no_sync(model) if i < len(micro) - 1 else _nullcontext()
                    with sync, acc.autocast():
                        sums, extras = job.losses(model, mb)
                        loss = sum(sums[k] / max(counts[k], 1) for k in sums)
                    acc.backward(loss * world)  # DDP averages gradients over ranks; undo that
                    step_loss += loss.detach().float()
                    seen_tokens += int(mb["attention_mask"].sum()) if "attention_mask" in mb else mb["input_ids"].numel()
                    seen_samples += len(mb["input_ids"])
                if s.max_grad_norm:
                    acc.clip_grad_norm_(model.parameters(), s.max_grad_norm)
                step_loss = acc.reduce(step_loss, reduction="sum")
                if not torch.isfinite(step_loss):
                    last = run.latest_checkpoint()
                    raise BertctlError(
                        f"loss became {step_loss.item()} at step {step + 1}; stopped without saving it"
                        + (f" (last good checkpoint: {last})" if last else ""),
                        # not "--resume": a resumed run keeps the recipe (and learning rate) it started with
                        fix="start a new run (another --out) with a lower train.lr or a larger train.warmup"
                            + (" or train.precision=fp32" if s.precision != "fp32" else ""))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                b += s.grad_accum

                # ---- bookkeeping: log, evaluate, checkpoint, honour Ctrl-C
                if step % s.log_every == 0 or step == total:
                    now = time.perf_counter()
                    row = {"step": step, "epoch": epoch, "loss": round(step_loss.item(), 5),
                           "lr": scheduler.get_last_lr()[0], "tokens_per_s": round(seen_tokens * world / max(now - t0, 1e-9), 1),
                           **{k: round(v, 5) for k, v in extras.items()}}
                    run.log_metrics(row)
                    progress.update(step, row["loss"])
                epoch_done = b >= usable
                if (s.eval_every and step % s.eval_every == 0) or (not s.eval_every and epoch_done) or step == total:
                    evaluate(epoch)
                save_now = (s.save_every and step % s.save_every == 0) or (not s.save_every and epoch_done) or step == total
                if save_now or stop.requested:
                    nxt = (epoch + 1, 0) if epoch_done else (epoch, b)
                    checkpoint(*nxt)
                if stop.requested:
                    raise Interrupted(f"interrupted at step {step}/{total}; checkpoint saved in {run.path}",
                                      fix=f"resume with: {resume_command(run)}")
            if step >= total:
                break
    seconds = time.perf_counter() - t0
    final = evals[-1] if evals else {}
    return FitResult(step, seconds, seen_tokens * world, seen_samples * world, evals, final)


def _global_counts(per_micro: list[dict[str, int]], acc) -> dict[str, float]:
    """Loss units summed over micro-batches and ranks (the denominators of the mean)."""
    keys = sorted({k for d in per_micro for k in d})
    local = torch.tensor([float(sum(d.get(k, 0) for d in per_micro)) for k in keys], device=acc.device)
    total = acc.reduce(local, reduction="sum") if acc.num_processes > 1 else local
    return dict(zip(keys, total.tolist()))


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _progress:
    """A rich progress bar with ETA on the main process; silent elsewhere."""

    def __init__(self, enabled: bool, describe: str, total: int, start: int):
        self.enabled, self.total, self.start, self.describe = enabled, total, start, describe

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.describe, total=self.total, completed=self.start, loss="-")
        return self

    def update(self, step: int, loss: float) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=step, loss=f"{loss:.4f}")

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False
