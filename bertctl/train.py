"""The training loop, shared by `pretrain` and `finetune` (where they truly agree).

One loop on `accelerate` (which brings DDP/FSDP/DeepSpeed through `accelerate launch` or
`torchrun`). What the loop needs from a caller is a `Job`:

    batches(epoch) -> list of lists of example indices (the *global* batches, in order)
    collate(examples, epoch) -> dict of tensors (CPU)
    units(batch) -> {loss name: count}      e.g. {"mlm": masked tokens, "nsp": pairs}; called
                                            on the CPU batch, before it moves to the device
    losses(model, batch) -> ({loss name: summed loss}, {extra scalars to log: numbers or
                                            0-dim tensors, read at logging steps only})
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
uninterrupted run.

On a GPU the step never waits for the device: batches are copied from pinned memory
without blocking, loss counts come from the CPU batch, the non-finite-loss check and the
logged numbers are read only at logging, evaluation and checkpoint steps (with several
processes the step's one all-reduce, which carries the stop flag, is the exception).

What goes into a checkpoint, and how a sharded (FSDP, DeepSpeed) model is gathered to
write it and the final model, lives in bertctl.checkpoints; the loop decides when.
"""

from __future__ import annotations

import math
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bertctl.checkpoints import PLAIN, full_state_dict, load_checkpoint, save_checkpoint, sharding, trainable_names
from bertctl.config import TrainSettings
from bertctl.distributed import process_state
from bertctl.errors import BertctlError
from bertctl.precision import ResolvedPrecision, report, resolve
from bertctl.runs import Run


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
    # Under FSDP/DeepSpeed: every weight of the trained model, gathered (CPU tensors, names as
    # in model.state_dict()), for rank 0 to pass to save_pretrained(state_dict=) (other ranks: ignore).
    # None for one process or DDP, where the model itself holds everything.
    state_dict: dict | None = None
    precision: ResolvedPrecision | None = None  # what train.precision resolved to on this hardware

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


# ------------------------------------------------------------------------- helpers


class _Stderr:
    """sys.stderr as it is when written to (a CliRunner swaps it per command)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _deepspeed_logs_to_stderr() -> None:
    """DeepSpeed (which accelerate imports when it is installed) logs to stdout, and on a
    machine without a GPU warns there on every run: imported here with stdout pointing to
    stderr, its logger then writing to stderr, with the progress (stdout holds results)."""
    import importlib.util
    import logging
    from contextlib import redirect_stdout

    if "deepspeed" in sys.modules or importlib.util.find_spec("deepspeed") is None:
        return
    try:
        with redirect_stdout(sys.stderr):
            import deepspeed  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install: accelerate reports it when it needs DeepSpeed
        return
    for handler in logging.getLogger("DeepSpeed").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(_Stderr())


def make_accelerator(precision: str, **extra):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    _deepspeed_logs_to_stderr()

    # accelerate keeps one process-wide state and refuses a second Accelerator with another
    # precision; forget the previous one (the process group in PartialState is kept) so
    # several fits in one process (tests, benchmarks) may use different precisions.
    AcceleratorState._reset_state()
    state = process_state()
    # fp16 needs a grad scaler (accelerate's); bf16 and fp32 are plain autocast / no-ops.
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, split_batches=False,
                       cpu=state.device.type == "cpu" and state.num_processes > 1, **extra)  # extra: trackers


def resolved_precision(requested: str, run: Run) -> ResolvedPrecision:
    """train.precision on the device this process trains on: said once on stderr, kept in
    log.txt and run.json (see bertctl.precision)."""
    from bertctl.console import say

    precision = resolve(requested, process_state().device)
    report(precision, run, lambda text: say(text, soft_wrap=True))
    return precision


def configure_deepspeed(acc, s: TrainSettings, world: int, run: Run) -> None:
    """DeepSpeed sizes its batches from a DataLoader passed to prepare(), and bertctl builds
    its own batches: give it the recipe's micro-batch per process, accumulation steps and
    clipping instead (the recipe wins over the accelerate config file's values, and says so)."""
    config = acc.state.deepspeed_plugin.deepspeed_config
    wanted = {"train_micro_batch_size_per_gpu": s.batch_size // world, "gradient_accumulation_steps": s.grad_accum,
              "train_batch_size": s.batch_size * s.grad_accum, "gradient_clipping": s.max_grad_norm or 0.0}
    overruled = [f"{k} {config[k]} -> {v}" for k, v in wanted.items()
                 if config.get(k, "auto") not in ("auto", v)]
    config.update(wanted)
    acc.gradient_accumulation_steps = s.grad_accum
    run.log("DeepSpeed: micro-batch {train_micro_batch_size_per_gpu} per process, {gradient_accumulation_steps} "
            "accumulation step(s), clipping {gradient_clipping}".format(**wanted)
            + (f" (from the recipe; the accelerate config said otherwise: {'; '.join(overruled)})" if overruled else ""))


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


class _StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM (what SLURM, Kubernetes and torchrun send before killing
    a job) asks the loop to stop at the next step boundary, after a checkpoint. Stopping
    mid-step could leave half-updated weights. A second Ctrl-C, more than a second after
    the first, interrupts at once. Copies arriving together do not: under torchrun each
    worker gets the terminal's Ctrl-C and torchrun's forwarded one, and under SLURM +
    torchrun a SIGTERM from each; nor do further SIGTERMs."""

    SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

    def __init__(self):
        self.requested = False
        self.reason = ""
        self._at = 0.0
        self._old: dict = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some test runners)
                pass
        return self

    def _handle(self, signum, _frame):
        if not self.requested:
            self.requested, self.reason, self._at = True, self.SIGNALS.get(signum, "signal"), time.monotonic()
        elif signum == signal.SIGINT and time.monotonic() - self._at > 1.0:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def resume_command(run: Run) -> str:
    args = [a for a in sys.argv[1:] if a != "--resume"]
    if "--out" not in args and "-o" not in args:
        args += ["--out", str(run.path)]
    return "bertctl " + shlex.join(args) + " --resume"  # quoted: paste-able even with spaces in paths


def _to(batch: dict, device) -> dict:
    """Move a CPU batch to the device. To a GPU through pinned (page-locked) memory: only
    then is `non_blocking` a real asynchronous copy (from pageable memory the host waits),
    so the CPU can collate the next batch while the GPU still runs this step."""
    pin = torch.device(device).type == "cuda"
    return {k: (v.pin_memory() if pin else v).to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _plain(values: dict) -> dict:
    """A dict whose values may be device tensors (accumulated without a host sync), as
    JSON values: .item() keeps ints ints and floats floats."""
    return {k: v.item() if torch.is_tensor(v) else v for k, v in values.items()}


def compile_model(model: torch.nn.Module) -> None:
    """`train.compile: true`: torch.compile, in place (nn.Module.compile), so parameter
    names, checkpoints and the wrappers accelerate put around the model stay as they are.
    A model may name the parts worth compiling (`compile_targets()`): the pretraining
    wrapper compiles the encoder only, because its masked-only head gathers a different
    number of positions every batch (a recompile each time)."""
    parts = model.compile_targets() if hasattr(model, "compile_targets") else [model]
    for part in parts:
        part.compile()  # calls torch.compile(part._call_impl)


# ------------------------------------------------------------------------ the loop


def fit(model: torch.nn.Module, job: Job, s: TrainSettings, run: Run, resume: bool = False,
        describe: str = "training") -> FitResult:
    from bertctl import tracking

    tracking.check_installed(s.report_to)
    torch.manual_seed(s.seed)
    precision = resolved_precision(s.precision, run)
    acc = make_accelerator(precision.name, **tracking.accelerator_kwargs(s.report_to, run))
    trackers = tracking.Trackers(acc, s.report_to, run)
    rank, world = acc.process_index, acc.num_processes
    if s.batch_size % world:
        raise BertctlError(f"train.batch_size={s.batch_size} does not split over {world} processes",
                           fix=f"use a multiple of {world}")
    if world > 1:
        run.log(f"{world} processes ({acc.distributed_type.value}), {s.batch_size // world} examples each per batch")
    # in log.txt only: which path actually ran (benchmarks/gpu.sh checks FSDP/DeepSpeed were used)
    run.log(f"accelerate: {acc.distributed_type.value}, device {acc.device}, mixed precision {acc.mixed_precision}"
            + (", torch.compile" if s.compile else ""))
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP and not getattr(acc, "is_fsdp2", True):
        # evaluation (and finetune's predictions) run the unwrapped model, which FSDP1 leaves
        # holding flat shards: the first evaluation would fail ("'weight' must be 2-D")
        raise BertctlError("FSDP1 (fsdp_version: 1) is not supported", fix="set fsdp_version: 2 in the accelerate config "
                           "(as docs/accelerate/fsdp.yaml does), or use DDP")
    deepspeed = acc.distributed_type == DistributedType.DEEPSPEED
    if deepspeed:
        configure_deepspeed(acc, s, world, run)

    # plan: how many optimizer steps in all, and where evaluations/checkpoints happen
    steps_per_epoch = max(1, len(job.batches(0)) // s.grad_accum)
    total = s.max_steps or max(1, math.ceil(s.epochs * steps_per_epoch))
    n_epochs = math.ceil(total / steps_per_epoch)

    optimizer = make_optimizer(model, s)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(s, total))
    names = trainable_names(model)  # before FSDP/DeepSpeed rename or flatten the parameters
    model, optimizer = acc.prepare(model, optimizer)
    raw_model = acc.unwrap_model(model)
    if s.compile:
        compile_model(raw_model)
    kind = sharding(raw_model, acc)
    held = raw_model if kind == PLAIN else model  # what the checkpoint helpers gather from

    step, start_epoch, skip_batches, evals = 0, 0, 0, []
    if resume:
        ckpt = run.latest_checkpoint()
        if ckpt is None:  # stopped before its first checkpoint: nothing is lost by starting over
            run.resumed()
            run.truncate_metrics(0)
            run.log("no complete checkpoint yet: starting from step 0")
        else:
            state = load_checkpoint(ckpt, held, optimizer, scheduler, kind, names)  # checks it (damage, shape)
            step, start_epoch, skip_batches, evals = state["step"], state["epoch"], state["batch"], state.get("evals", [])
            if job.state is not None:
                job.state.update(state.get("job_state", {}))
            run.resumed()  # the lines held since the command started go into log.txt now
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
        trackers.log(row, "eval")
        return metrics

    def checkpoint(epoch: int, batch: int) -> None:
        save_checkpoint(run, step, held, optimizer, scheduler,
                        {"epoch": epoch, "batch": batch, "evals": evals, "job_state": _plain(job.state or {})},
                        s.keep_checkpoints, kind, names, acc)

    # The first non-finite step loss, kept on the device: checking it with a Python `if`
    # every step would make the host wait for the GPU each step. It is read before
    # anything is logged, evaluated or saved, so a bad step never reaches a checkpoint.
    bad_step = torch.zeros((), dtype=torch.long, device=acc.device)
    bad_loss = torch.zeros((), device=acc.device)

    def stop_if_diverged() -> None:
        if bad_step.item():
            last = run.latest_checkpoint()
            raise BertctlError(
                f"loss became {bad_loss.item()} at step {bad_step.item()}; stopped without saving it"
                + (f" (last good checkpoint: {last})" if last else ""),
                # not "--resume": a resumed run keeps the recipe (and learning rate) it started with
                fix="start a new run (another --out) with a lower train.lr or a larger train.warmup"
                    + (" or train.precision=fp32" if precision.name != "fp32" else ""))

    progress = _progress(run.main, describe, total, step)
    seen_tokens = seen_samples = 0
    t0 = time.perf_counter()
    model.train()
    with _StopFlag() as stop, progress, trackers:
        for epoch in range(start_epoch, n_epochs):
            plan = job.batches(epoch)
            usable = len(plan) // s.grad_accum * s.grad_accum
            b = skip_batches if epoch == start_epoch else 0
            while b < usable and step < total:
                # ---- one optimizer step over grad_accum micro-batches
                # Counts (loss units, tokens) come from the CPU batches, before the copy to the
                # device: counting on the device would be a host sync per micro-batch.
                micro, units = [], []
                for idx in plan[b:b + s.grad_accum]:
                    mine = idx[rank * len(idx) // world:(rank + 1) * len(idx) // world]  # this rank's slice
                    cpu_batch = job.collate([job.dataset[i] for i in mine], epoch)
                    units.append(job.units(cpu_batch))
                    seen_tokens += (int(cpu_batch["attention_mask"].sum()) if "attention_mask" in cpu_batch
                                    else cpu_batch["input_ids"].numel())
                    seen_samples += len(cpu_batch["input_ids"])
                    micro.append(_to(cpu_batch, acc.device))
                counts = _global_counts(units, acc)
                step_loss, extras, grad_norm = torch.zeros((), device=acc.device), {}, None
                for i, mb in enumerate(micro):
                    last = i == len(micro) - 1
                    sync = acc.no_sync(model) if not last else _nullcontext()
                    if deepspeed:  # DeepSpeed's engine steps inside backward() unless told this is not the last
                        acc.gradient_state._set_sync_gradients(last)
                    with sync, acc.autocast():
                        sums, extras = job.losses(model, mb)
                        loss = sum(sums[k] / counts[k] for k in sums)
                    # DDP averages gradients over ranks, and DeepSpeed also divides by its accumulation
                    # steps: the loss is already the global batch's mean, so undo both
                    acc.backward(loss * world * (s.grad_accum if deepspeed else 1))
                    step_loss += loss.detach().float()
                if s.max_grad_norm:  # the norm before clipping, read at logging steps only (as the Trainer logs it)
                    grad_norm = acc.clip_grad_norm_(model.parameters(), s.max_grad_norm)
                if world > 1:  # one all-reduce: the loss, and whether any rank was asked to stop
                    both = acc.reduce(torch.stack([step_loss, torch.tensor(float(stop.requested), device=acc.device)]),
                                      reduction="sum")
                    step_loss, stopping = both[0], bool(both[1] > 0)  # every rank stops at the same step
                else:
                    step_loss = acc.reduce(step_loss, reduction="sum")
                    stopping = False
                first_bad = ~torch.isfinite(step_loss) & (bad_step == 0)
                bad_step = torch.where(first_bad, step + 1, bad_step)
                bad_loss = torch.where(first_bad, step_loss, bad_loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                b += s.grad_accum

                # ---- bookkeeping: log, evaluate, checkpoint, honour Ctrl-C (the only host syncs)
                epoch_done = b >= usable
                log_now = step % s.log_every == 0 or step == total
                eval_now = (s.eval_every and step % s.eval_every == 0) or (not s.eval_every and epoch_done) or step == total
                save_now = (s.save_every and step % s.save_every == 0) or (not s.save_every and epoch_done) or step == total
                stopping = stopping or (world == 1 and stop.requested)
                if log_now or eval_now or save_now or stopping:
                    stop_if_diverged()
                if log_now:
                    now = time.perf_counter()
                    row = {"step": step, "epoch": epoch, "loss": round(step_loss.item(), 5),
                           "lr": scheduler.get_last_lr()[0], "tokens_per_s": round(seen_tokens * world / max(now - t0, 1e-9), 1),
                           **({"grad_norm": round(_scalar(grad_norm), 5)} if grad_norm is not None else {}),
                           **{k: round(float(v), 5) for k, v in extras.items()}}  # extras may be device tensors
                    run.log_metrics(row)
                    trackers.log(row, "train")
                    progress.update(step, row)
                if eval_now:
                    evaluate(epoch)
                if save_now or stopping:
                    nxt = (epoch + 1, 0) if epoch_done else (epoch, b)
                    checkpoint(*nxt)
                if stopping:
                    if world > 1:  # rank 0 may still be writing the checkpoint: nobody leaves before it is done
                        acc.wait_for_everyone()
                    why = stop.reason or "another process was stopped"
                    raise Interrupted(f"interrupted at step {step}/{total} ({why}); checkpoint saved in {run.path}",
                                      fix=f"resume with: {resume_command(run)}")
            if step >= total:
                break
    seconds = time.perf_counter() - t0
    final = evals[-1] if evals else {}
    gathered = full_state_dict(held, kind, acc)  # collective under FSDP/DeepSpeed; None otherwise
    return FitResult(step, seconds, seen_tokens * world, seen_samples * world, evals, final, gathered, precision)


def _global_counts(per_micro: list[dict[str, int]], acc) -> dict:
    """Loss units summed over micro-batches and ranks (the denominators of the mean), at
    least 1 each. One process: Python floats. Several: the all-reduced counts stay on the
    device (0-dim tensors), so the step does not wait for them."""
    keys = sorted({k for d in per_micro for k in d})
    local = [float(sum(d.get(k, 0) for d in per_micro)) for k in keys]
    if acc.num_processes == 1:
        return {k: max(v, 1.0) for k, v in zip(keys, local)}
    total = acc.reduce(torch.tensor(local, device=acc.device), reduction="sum").clamp(min=1)
    return dict(zip(keys, total.unbind()))


def _scalar(x) -> float:
    """A logged number: a float, a tensor, or FSDP2's DTensor (its full value first)."""
    return float(x.full_tensor() if hasattr(x, "full_tensor") else x)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _progress:
    """A rich progress bar with ETA on stderr on the main process; silent elsewhere and under
    --quiet. When stderr is not a terminal (a batch job's log), one line per logging step
    instead (tracking.Lines)."""

    def __init__(self, enabled: bool, describe: str, total: int, start: int):
        from bertctl.console import is_quiet
        from bertctl.tracking import Lines, wants_lines

        enabled = enabled and not is_quiet()
        self.lines = Lines(describe, total, start) if enabled and wants_lines() else None
        self.enabled = enabled and self.lines is None
        self.total, self.start, self.describe = total, start, describe

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from bertctl.console import progress_console

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), transient=False,
                                console=progress_console())
            self.bar.__enter__()
            self.task = self.bar.add_task(self.describe, total=self.total, completed=self.start, loss="-")
        return self

    def update(self, step: int, row: dict) -> None:
        if self.lines is not None:
            self.lines.update(step, row)
        elif self.enabled:
            self.bar.update(self.task, completed=step, loss=f"{row['loss']:.4f}")

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False
