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
uninterrupted run. Checkpoints hold only trainable parameters (safetensors), the
optimizer state (safetensors + JSON) and the loop position.

On a GPU the step never waits for the device: batches are copied from pinned memory
without blocking, loss counts come from the CPU batch, the non-finite-loss check and the
logged numbers are read only at logging, evaluation and checkpoint steps (with several
processes the step's one all-reduce, which carries the stop flag, is the exception).

Sharded training (FSDP through `accelerate launch`, or `fully_shard` applied by hand;
DeepSpeed ZeRO): no rank holds the whole model or optimizer state, so checkpoints and the
final model are gathered first (torch.distributed.checkpoint.state_dict with
full_state_dict=True: a collective every rank joins; rank 0 writes). An FSDP checkpoint
has the same files and names as a single-process one, so either loads into the other.
Under DeepSpeed checkpoints keep the weights only (see `save_checkpoint`).
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
    # Under FSDP/DeepSpeed: every weight of the trained model, gathered (CPU tensors, names as
    # in model.state_dict()), for rank 0 to pass to save_pretrained(state_dict=) (other ranks: ignore).
    # None for one process or DDP, where the model itself holds everything.
    state_dict: dict | None = None

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


def make_accelerator(precision: str, **extra):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one process-wide state and refuses a second Accelerator with another
    # precision; forget the previous one (the process group in PartialState is kept) so
    # several fits in one process (tests, benchmarks) may use different precisions.
    AcceleratorState._reset_state()
    state = process_state()
    # fp16 needs a grad scaler (accelerate's); bf16 and fp32 are plain autocast / no-ops.
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, split_batches=False,
                       cpu=state.device.type == "cpu" and state.num_processes > 1, **extra)  # extra: trackers


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


# How the model's state is laid out over the processes:
PLAIN = "plain"          # one process, or DDP: rank 0 holds everything
FSDP = "fsdp"            # FSDP2 (DTensor parameters) or FSDP1 (FullyShardedDataParallel)
DEEPSPEED = "deepspeed"  # DeepSpeed ZeRO (through accelerate)

# wrapper modules that insert a level into parameter names (FSDP1, activation checkpointing, torch.compile)
_WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def _clean(name: str) -> str:
    for w in _WRAPPERS:
        name = name.replace(w, "")
    return name


def trainable_names(model: torch.nn.Module) -> list[str]:
    """Names of the trainable parameters, as in the unwrapped model (the checkpoint's keys)."""
    return [_clean(n) for n, p in model.named_parameters() if p.requires_grad]


def _is_dtensor(t) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch without distributed support
        return False
    return isinstance(t, DTensor)


def _fsdp1_modules(model: torch.nn.Module) -> list:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, FullyShardedDataParallel)]


def sharding(model: torch.nn.Module, acc=None) -> str:
    """PLAIN, FSDP or DEEPSPEED: from accelerate's distributed type when there is an
    Accelerator, else from the parameters themselves (fully_shard applied by hand)."""
    if acc is not None:
        from accelerate.utils import DistributedType

        if acc.distributed_type == DistributedType.DEEPSPEED:
            return DEEPSPEED
        if acc.distributed_type == DistributedType.FSDP:
            return FSDP
    if any(_is_dtensor(p) for p in model.parameters()) or _fsdp1_modules(model):
        return FSDP
    return PLAIN


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _full_options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def _gather_options(model):
    """Gather to rank 0's CPU memory. Except FSDP1 on a CPU model, where offloading to the
    CPU crashed rank 0 (segfault, torch 2.13 with gloo): there every rank gets the full
    state (it is in CPU memory anyway) and only rank 0 writes it."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return _full_options(cpu_offload=not (on_cpu and _fsdp1_modules(model)))


def _torch_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one


def full_state_dict(model: torch.nn.Module, kind: str, acc=None) -> dict[str, torch.Tensor] | None:
    """Every weight and buffer of a sharded model, gathered as CPU tensors on rank 0 (the
    other ranks get {} or a copy: use it on rank 0 only), names as in the unwrapped model's
    state_dict(). A collective under FSDP/DeepSpeed: every rank must call it. None for
    PLAIN (the model is complete as is)."""
    if kind == FSDP:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return _retie(get_model_state_dict(model, options=_gather_options(model)), model)
    if kind == DEEPSPEED:
        try:
            state = acc.get_state_dict(model)  # ZeRO-3: gathered (16-bit) on rank 0; ZeRO-1/2: the full copy
        except ValueError as e:  # ZeRO-3 without stage3_gather_16bit_weights_on_model_save
            raise BertctlError(f"cannot gather the model's weights under DeepSpeed ZeRO-3 ({str(e).splitlines()[0][:160]})",
                               fix="set zero3_save_16bit_model: true (stage3_gather_16bit_weights_on_model_save) "
                                   "in the accelerate config") from None
        return _retie({k: v.detach().cpu() for k, v in state.items()}, acc.unwrap_model(model)) if _rank() == 0 else {}
    return None


def _retie(state: dict, model: torch.nn.Module) -> dict:
    """Gathered copies of one shared parameter (a decoder tied to the word embeddings) are
    separate tensors; make them one again, so save_pretrained drops the alias as it does
    for an unsharded model."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(_clean(name))
    for group in names.values():
        present = [n for n in group if n in state]
        for n in present[1:]:
            state[n] = state[present[0]]
    return state


def _full_optimizer_state(model, optimizer) -> dict | None:
    """The FSDP optimizer state gathered on rank 0 (collective), in the layout of a
    single-process `optimizer.state_dict()`: parameters numbered 0, 1, ... in param_groups
    order. None on the other ranks."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    osd = get_optimizer_state_dict(model, _torch_optimizer(optimizer), options=_gather_options(model))
    if not osd or _rank() != 0:
        return None
    index: dict[str, int] = {}
    groups = []
    for g in osd["param_groups"]:
        ids = []
        for fqn in g["params"]:
            index[fqn] = len(index)
            ids.append(index[fqn])
        groups.append({**g, "params": ids})
    return {"state": {index[fqn]: st for fqn, st in osd["state"].items()}, "param_groups": groups}


def save_checkpoint(run: Run, step: int, model, optimizer, scheduler, position: dict, keep: int | None,
                    kind: str = PLAIN, names: list[str] | None = None, acc=None) -> Path:
    """Write a complete checkpoint into a temp folder, then rename it into place (atomic).

    PLAIN: `model` is the unwrapped model and only rank 0 does anything. FSDP/DeepSpeed:
    `model` is the sharded (prepared) model, every rank must call this (the weights and
    optimizer state are gathered to rank 0, which writes), and `names` are the trainable
    parameters' names (default: from the model). An FSDP checkpoint has exactly the files
    and keys of a PLAIN one. Under DeepSpeed the optimizer state is not saved (it lives in
    DeepSpeed's own partitioned format): such checkpoints hold the weights and position but
    cannot be resumed (`load_checkpoint` says so)."""
    from safetensors.torch import save_file

    tmp = run.new_checkpoint_dir(step)
    extra: dict = {}
    if kind == PLAIN:
        weights = trainable_state(model) if run.main else None
        opt = optimizer.state_dict() if run.main else None
    else:
        full = full_state_dict(model, kind, acc)  # collective
        keys = names if names is not None else trainable_names(model)
        weights = {n: full[n].contiguous() for n in keys} if run.main else None
        opt = _full_optimizer_state(model, optimizer) if kind == FSDP else None  # collective
        if kind == DEEPSPEED:
            extra = {"optimizer_saved": False, "saved_under": DEEPSPEED}
    if run.main:
        save_file(weights, str(tmp / "model.safetensors"))
        tensors, layout, groups = {}, {}, []
        if opt is not None:
            for idx, st in opt["state"].items():
                layout[str(idx)] = {}
                for k, v in st.items():
                    if torch.is_tensor(v):
                        tensors[f"{idx}.{k}"] = v.contiguous().cpu()
                    else:
                        layout[str(idx)][k] = v
            groups = opt["param_groups"]
            save_file(tensors or {"_empty": torch.zeros(1)}, str(tmp / "optimizer.safetensors"))
        save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        state = {"step": step, **position, "scheduler": scheduler.state_dict(),
                 "param_groups": groups, "optimizer_layout": layout, **extra}
        write_json(tmp / "state.json", state)  # written last: its presence marks completeness
    return run.commit_checkpoint(tmp, step, keep)


def _damaged(path: Path, e: Exception) -> BertctlError:
    return BertctlError(f"checkpoint {path} is damaged ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})",
                        fix=f"delete {path} to resume from the previous checkpoint")


def _optimizer_entries(layout: dict, opt_tensors: dict) -> dict[int, dict]:
    entries: dict[int, dict] = {}
    for idx, extra in layout.items():
        entry = dict(extra)
        for key, value in opt_tensors.items():
            i, _, name = key.partition(".")
            if i == idx:
                entry[name] = value
        entries[int(idx)] = entry
    return entries


def load_checkpoint(path: Path, model, optimizer, scheduler, kind: str = PLAIN, names: list[str] | None = None) -> dict:
    """Restore weights, optimizer, scheduler and RNG from a checkpoint; returns its state.json.

    PLAIN: `model` is the unwrapped model. FSDP: `model` is the sharded one and every rank
    must call this: rank 0 reads the files and the tensors are broadcast and sharded
    (FSDP2; under FSDP1 every rank reads them). Checkpoints of either kind load into
    either. DeepSpeed: refused (no optimizer state to continue from)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise _damaged(path, e) from None
    if kind == DEEPSPEED or state.get("optimizer_saved") is False:
        why = ("under DeepSpeed bertctl's checkpoints keep the weights but not the optimizer state"
               if kind == DEEPSPEED else f"checkpoint {path} was written under DeepSpeed and holds no optimizer state")
        raise BertctlError(f"cannot resume {path.parent.parent}: {why}, so the run cannot continue exactly",
                           fix="start a new run (another --out); to be able to resume, train with DDP (torchrun, "
                               "docs/accelerate/ddp.yaml) or FSDP (docs/accelerate/fsdp.yaml), see docs/scaling.md")
    if kind == FSDP:
        return _load_sharded(path, state, model, optimizer, scheduler, names)
    try:
        weights = load_file(str(path / "model.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
        rng = load_file(str(path / "rng.safetensors"))["torch_rng"]
    except (OSError, ValueError, SafetensorError, KeyError) as e:
        raise _damaged(path, e) from None
    own = trainable_state(model)
    missing = set(own) - set(weights)
    if missing:
        raise _mismatch(path, missing)
    _check_shapes(path, {n: own[n].shape for n in own}, weights)
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict({"state": _optimizer_entries(state["optimizer_layout"], opt_tensors),
                               "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(rng)
    return state


def _mismatch(path: Path, missing: set) -> BertctlError:
    return BertctlError(f"checkpoint {path} does not match this model ({len(missing)} parameters missing, e.g. {sorted(missing)[0]})",
                        fix="resume with the same recipe the run was started with")


def _check_shapes(path: Path, shapes: dict, weights: dict) -> None:
    """A checkpoint of a model of another size (hidden, vocabulary, positions) has the
    same parameter names but other shapes: say so, instead of load_state_dict's RuntimeError."""
    wrong = [n for n, shape in shapes.items() if n in weights and tuple(weights[n].shape) != tuple(shape)]
    if wrong:
        n = wrong[0]
        raise BertctlError(f"checkpoint {path} holds a model of another shape ({len(wrong)} parameters differ, e.g. "
                           f"{n}: {list(weights[n].shape)} in the checkpoint, {list(shapes[n])} in this model)",
                           fix="resume with the recipe the run was started with (its recipe.yaml), "
                               "or start a new run with another --out")


def _load_sharded(path: Path, state: dict, model, optimizer, scheduler, names: list[str] | None) -> dict:
    import torch.distributed as dist
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    optimizer = _torch_optimizer(optimizer)
    broadcast = not _fsdp1_modules(model)  # FSDP2 (DTensor): rank 0 reads, then broadcasts; FSDP1: everyone reads
    reader = _rank() == 0 or not broadcast
    weights, opt_tensors, error = {}, {}, None
    try:
        rng = load_file(str(path / "rng.safetensors"))["torch_rng"]  # small: every rank reads it
        if reader:
            weights = load_file(str(path / "model.safetensors"))
            opt_tensors = load_file(str(path / "optimizer.safetensors"))
    except (OSError, ValueError, SafetensorError, KeyError) as e:
        error = _damaged(path, e)
    osd: dict = {}
    if error is None and reader:
        missing = set(names if names is not None else trainable_names(model)) - set(weights)
        # the checkpoint numbers parameters in param_groups order: map the numbers to this model's names
        by_id = {id(p): _clean(n) for n, p in model.named_parameters()}
        order = [by_id.get(id(p)) for g in optimizer.param_groups for p in g["params"]]
        if missing:
            error = _mismatch(path, missing)
        elif broadcast:  # FSDP2: a DTensor's shape is the full one (FSDP1 holds flat shards: not comparable)
            try:
                _check_shapes(path, {_clean(n): p.shape for n, p in model.named_parameters()}, weights)
            except BertctlError as e:
                error = e
        if error is not None:
            pass
        elif None in order or len(order) != sum(len(g["params"]) for g in state["param_groups"]):
            error = _mismatch(path, {"(optimizer parameters)"})
        else:
            entries = _optimizer_entries(state["optimizer_layout"], opt_tensors)
            osd = {"state": {order[i]: entry for i, entry in entries.items()},
                   "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in state["param_groups"]]}
    # every rank raises the same error (else the others would wait forever in the next collective)
    errors = [None] * dist.get_world_size()
    dist.all_gather_object(errors, (error.message, error.fix) if error else None)
    first = next((e for e in errors if e), None)
    if first:
        raise BertctlError(*first)

    set_model_state_dict(model, weights, options=_full_options(broadcast_from_rank0=broadcast, strict=False))
    set_optimizer_state_dict(model, optimizer, osd, options=_full_options(broadcast_from_rank0=broadcast))
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(rng)
    return state


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
    acc = make_accelerator(s.precision, **tracking.accelerator_kwargs(s.report_to, run))
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
            run.truncate_metrics(0)
            run.log("no complete checkpoint yet: starting from step 0")
        else:
            state = load_checkpoint(ckpt, held, optimizer, scheduler, kind, names)
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
                    + (" or train.precision=fp32" if s.precision != "fp32" else ""))

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
                step_loss, extras = torch.zeros((), device=acc.device), {}
                for i, mb in enumerate(micro):
                    sync = acc.no_sync(model) if i < len(micro) - 1 else _nullcontext()
                    with sync, acc.autocast():
                        sums, extras = job.losses(model, mb)
                        loss = sum(sums[k] / counts[k] for k in sums)
                    acc.backward(loss * world)  # DDP averages gradients over ranks; undo that
                    step_loss += loss.detach().float()
                if s.max_grad_norm:
                    acc.clip_grad_norm_(model.parameters(), s.max_grad_norm)
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
    return FitResult(step, seconds, seen_tokens * world, seen_samples * world, evals, final, gathered)


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


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _progress:
    """A rich progress bar with ETA on the main process; silent elsewhere. When stdout is
    not a terminal (a batch job's log), one line per logging step instead (tracking.Lines)."""

    def __init__(self, enabled: bool, describe: str, total: int, start: int):
        from bertctl.tracking import Lines, wants_lines

        self.lines = Lines(describe, total, start) if enabled and wants_lines() else None
        self.enabled = enabled and self.lines is None
        self.total, self.start, self.describe = total, start, describe

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), transient=False)
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
