"""What a checkpoint holds, and gathering a sharded model to write it.

A checkpoint folder (made and committed atomically by runs.Run) holds only the trainable
parameters (model.safetensors), the optimizer state (optimizer.safetensors, its
non-tensor values in state.json), the torch RNG (rng.safetensors) and the loop position
(state.json, written last: its presence marks the checkpoint complete). No pickle.

Sharded training (FSDP through `accelerate launch`, or `fully_shard` applied by hand;
DeepSpeed ZeRO): no rank holds the whole model or optimizer state, so checkpoints and the
final model are gathered first (torch.distributed.checkpoint.state_dict with
full_state_dict=True: a collective every rank joins; rank 0 writes). An FSDP checkpoint
has the same files and names as a single-process one, so either loads into the other.
Under DeepSpeed checkpoints keep the weights only (see `save_checkpoint`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bertctl.distributed import group_rank
from bertctl.errors import BertctlError
from bertctl.runs import Run, write_json


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
        if group_rank() != 0:
            return {}
        return _retie({k: v.detach().cpu() for k, v in state.items()}, acc.unwrap_model(model))
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
    if not osd or group_rank() != 0:
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
    reader = group_rank() == 0 or not broadcast
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
