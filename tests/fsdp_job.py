"""The checkpoint helpers of bertctl.checkpoints on sharded models; run by test_fsdp.py under
`torchrun --nproc_per_node 2` (gloo, CPU).

accelerate enables FSDP only on GPUs, so this applies torch's FSDP2 (`fully_shard`, per
layer and at the root, as accelerate's fsdp_version 2 does) and FSDP1
(FullyShardedDataParallel, use_orig_params) by hand to a tiny BERT wrapped in the
pretraining `Pretrainer` (tied decoder, the `head` alias), trains it next to an unsharded
copy, and checks that:

- a checkpoint saved from the sharded model holds the full weights and optimizer state,
  in the same files and keys as the unsharded copy's checkpoint (and the same values);
- it loads into a fresh sharded model (then one more step equals the original's exactly),
  into a plain model, and a plain checkpoint loads into a sharded model;
- the final `model/` written from the gathered state dict holds full weights that
  AutoModel / AutoModelForMaskedLM load.

Rank 0 writes a summary to <out>/summary.json; any failed check is a traceback (exit 1).
"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from bertctl.checkpoints import (FSDP, PLAIN, _full_optimizer_state, full_state_dict, load_checkpoint,  # noqa: E402
                                 save_checkpoint, sharding, trainable_state)
from bertctl.config import TrainSettings  # noqa: E402
from bertctl.distributed import process_state  # noqa: E402
from bertctl.pretraining.model import Pretrainer  # noqa: E402
from bertctl.pretraining.run import _save_final  # noqa: E402
from bertctl.runs import Run  # noqa: E402
from bertctl.finetune.methods import save_model  # noqa: E402
from bertctl.train import lr_lambda, make_optimizer  # noqa: E402

OUT = Path(sys.argv[1])
STATE = process_state()  # the gloo process group (as bertctl makes it under torchrun on CPU)
RANK, MAIN = STATE.process_index, STATE.process_index == 0
S = TrainSettings(max_steps=10, lr=1e-3, warmup=0.0, precision="fp32")
VOCAB, LEN, B = 64, 12, 8
summary: dict = {"world": STATE.num_processes}


def tiny(seed: int = 0) -> Pretrainer:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=LEN, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return Pretrainer(BertForMaskedLM(cfg), SimpleNamespace(kind="mlm", pairs="none"))


def fsdp2(m: Pretrainer) -> Pretrainer:
    from torch.distributed.fsdp import fully_shard

    for layer in m.model.bert.encoder.layer:
        fully_shard(layer)
    fully_shard(m)
    return m


def fsdp1(m: Pretrainer):
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.bert.modeling_bert import BertLayer

    return FullyShardedDataParallel(m, use_orig_params=True, device_id=torch.device("cpu"),
                                    auto_wrap_policy=ModuleWrapPolicy({BertLayer}))


def batch(i: int) -> dict:
    g = torch.Generator().manual_seed(100 + i)
    ids = torch.randint(5, VOCAB, (B, LEN), generator=g)
    positions = torch.randperm(B * LEN, generator=g)[:20]
    targets = ids.flatten()[positions].clone()
    ids.view(-1)[positions] = 4  # [MASK]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
            "mlm_positions": positions, "mlm_targets": targets}


class Trained:
    """A model with its optimizer and scheduler, as fit() makes them. `wrap`: shard after
    making the optimizer (FSDP1 keeps the parameter objects; accelerate makes the optimizer
    first too: after wrapping, an empty shard would look 1-D and land in the no-decay group)."""

    def __init__(self, model, wrap=None):
        self.opt = make_optimizer(model, S)
        self.model = wrap(model) if wrap else model
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(S, S.max_steps))

    def step(self, i: int) -> None:
        # every rank the whole batch: FSDP averages identical gradients, so the update equals one process's
        self.model.train()
        out = self.model(batch(i))
        (out["mlm"] / 20).backward()
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)

    @property
    def kind(self) -> str:
        return sharding(self.model)

    def full(self) -> dict:
        """Trainable weights, full (gathered on rank 0 when sharded)."""
        if self.kind == PLAIN:
            return trainable_state(self.model)
        gathered = full_state_dict(self.model, FSDP)  # collective
        return {n: gathered[n] for n in NAMES} if MAIN else {}

    def optimizer(self) -> dict | None:
        return self.opt.state_dict() if self.kind == PLAIN else _full_optimizer_state(self.model, self.opt)


def run(name: str) -> Run:
    r = Run(OUT / name, name, main=MAIN)
    if MAIN:
        r.path.mkdir(parents=True, exist_ok=True)
    return r


def same(a: dict, b: dict, exact: bool, what: str) -> float:
    """Compare two dicts of tensors on rank 0; returns the largest difference."""
    if not MAIN:
        return 0.0
    assert a.keys() == b.keys(), f"{what}: keys differ: {sorted(set(a) ^ set(b))[:5]}"
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    if exact:
        assert all(torch.equal(a[k], b[k]) for k in a), f"{what}: not identical (max diff {worst})"
    else:
        assert worst < 1e-4, f"{what}: max diff {worst}"  # summation order differs between sharded and not
    return worst


def same_optimizer(a: dict, b: dict, exact: bool, what: str) -> None:
    if not MAIN:
        return
    ga, gb = (json.loads(json.dumps(x["param_groups"])) for x in (a, b))  # tuples (betas) as lists
    assert ga == gb, f"{what}: param_groups {ga} != {gb}"
    assert a["state"].keys() == b["state"].keys(), what
    for idx in a["state"]:
        same({f"{idx}.{k}": v for k, v in a["state"][idx].items()},
             {f"{idx}.{k}": v for k, v in b["state"][idx].items()}, exact, f"{what} state {idx}")


def files(ckpt: Path) -> dict:
    return {name: load_file(str(ckpt / name)) for name in ("model.safetensors", "optimizer.safetensors")}


def tokenizer():
    from transformers import BertTokenizer

    vocab = OUT / "vocab.txt"
    if MAIN:
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB - 5)]) + "\n")
    dist.barrier()
    return BertTokenizer(str(vocab))


# ---------------------------------------------------------------- train side by side
ref, sharded = Trained(tiny()), Trained(fsdp2(tiny()))
NAMES = list(trainable_state(ref.model))  # the trainable parameters' names, as the loop sees them
assert ref.kind == PLAIN and sharded.kind == FSDP
word = sharded.model.model.bert.embeddings.word_embeddings.weight
summary["rank0_shard_rows"] = word.to_local().shape[0] if RANK == 0 else None  # really sharded: 32 of 64 rows
for i in range(2):
    ref.step(i)
    sharded.step(i)
summary["trained_diff"] = same(ref.full(), sharded.full(), exact=False, what="FSDP2 vs plain training")

# ---------------------------------------------------------------- save from the sharded model
position = {"epoch": 0, "batch": 2, "evals": [], "job_state": {}}
ckpt_f = save_checkpoint(run("fsdp2"), 2, sharded.model, sharded.opt, sharded.sched, position, None, FSDP)
ckpt_p = save_checkpoint(run("plain"), 2, ref.model, ref.opt, ref.sched, position, None, PLAIN)
dist.barrier()  # rank 0 has written both
if MAIN:
    assert sorted(p.name for p in ckpt_f.iterdir()) == sorted(p.name for p in ckpt_p.iterdir())
    f, p = files(ckpt_f), files(ckpt_p)
    summary["checkpoint_weights"] = len(f["model.safetensors"])
    summary["checkpoint_weights_diff"] = same(f["model.safetensors"], p["model.safetensors"], False, "checkpoint weights")
    assert f["model.safetensors"]["model.bert.embeddings.word_embeddings.weight"].shape == (VOCAB, 32)  # full, not a shard
    summary["checkpoint_optimizer_diff"] = same(f["optimizer.safetensors"], p["optimizer.safetensors"], False,
                                                "checkpoint optimizer state")
    sf, sp = (json.loads((c / "state.json").read_text()) for c in (ckpt_f, ckpt_p))
    assert sf == sp, "state.json differs between the FSDP and the plain checkpoint"

# ---------------------------------------------------------------- load into a fresh sharded model
fresh = Trained(fsdp2(tiny(seed=1)))
load_checkpoint(ckpt_f, fresh.model, fresh.opt, fresh.sched, FSDP)
if MAIN:
    saved = files(ckpt_f)
same(fresh.full(), saved["model.safetensors"] if MAIN else {}, exact=True, what="weights after loading (FSDP2)")
same_optimizer(fresh.optimizer(), sharded.optimizer(), exact=True, what="optimizer after loading (FSDP2)")
assert fresh.sched.state_dict() == sharded.sched.state_dict()

# ---------------------------------------------------------------- ... into a plain model, and plain -> sharded
plain = Trained(tiny(seed=2))
load_checkpoint(ckpt_f, plain.model, plain.opt, plain.sched, PLAIN)
from_plain = Trained(fsdp2(tiny(seed=3)))
load_checkpoint(ckpt_p, from_plain.model, from_plain.opt, from_plain.sched, FSDP)
same(from_plain.full(), files(ckpt_p)["model.safetensors"] if MAIN else {}, exact=True, what="plain checkpoint -> FSDP2")

# one more step everywhere: the restored optimizer state must act like the original
for t in (ref, sharded, fresh, plain, from_plain):
    t.step(2)
after = sharded.full()
summary["resumed_sharded_diff"] = same(fresh.full(), after, exact=True, what="step 3 after FSDP2 resume")
summary["resumed_plain_diff"] = same(plain.full(), after, exact=False, what="step 3 of a plain model resumed from FSDP2")
summary["plain_to_sharded_diff"] = same(from_plain.full(), ref.full(), exact=False, what="step 3 of FSDP2 resumed from plain")

# ---------------------------------------------------------------- FSDP1 (FullyShardedDataParallel)
v1 = Trained(tiny(), wrap=fsdp1)
assert v1.kind == FSDP
for i in range(2):
    v1.step(i)
ckpt_1 = save_checkpoint(run("fsdp1"), 2, v1.model, v1.opt, v1.sched, position, None, FSDP)
dist.barrier()
if MAIN:
    f1, p = files(ckpt_1), files(ckpt_p)
    summary["fsdp1_weights_diff"] = same(f1["model.safetensors"], p["model.safetensors"], False, "FSDP1 checkpoint weights")
    same(f1["optimizer.safetensors"], p["optimizer.safetensors"], False, "FSDP1 checkpoint optimizer")
v1_fresh = Trained(tiny(seed=4), wrap=fsdp1)
load_checkpoint(ckpt_1, v1_fresh.model, v1_fresh.opt, v1_fresh.sched, FSDP)
for t in (v1, v1_fresh):
    t.step(2)
summary["fsdp1_resumed_diff"] = same(v1_fresh.full(), v1.full(), exact=True, what="step 3 after FSDP1 resume")

# ---------------------------------------------------------------- the final model/ folders
tok = tokenizer()
gathered = full_state_dict(sharded.model, FSDP)  # every rank takes part
final_run = run("fsdp2")
folder = _save_final(sharded.model.model, tok, final_run, gathered)  # what pretrain does after fit
inner = {k[len("model."):]: v for k, v in gathered.items() if k.startswith("model.")}
if MAIN:
    save_model(sharded.model.model, tok, OUT / "finetune-model", None, state_dict=inner)  # what finetune does
    from transformers import AutoModel, AutoModelForMaskedLM

    for where in (folder, OUT / "finetune-model"):
        encoder = AutoModel.from_pretrained(str(where)).state_dict()
        mlm = AutoModelForMaskedLM.from_pretrained(str(where))
        shared = [k[5:] for k in inner if k.startswith("bert.")]
        assert set(encoder) - set(shared) <= {"pooler.dense.weight", "pooler.dense.bias"}, set(encoder) - set(shared)  # the MLM model has no pooler
        same({k: inner["bert." + k] for k in shared}, {k: encoder[k] for k in shared},
             exact=True, what=f"AutoModel from {where.name}")
        mlm_sd = mlm.state_dict()
        same({k: inner[k] for k in inner if k in mlm_sd}, {k: mlm_sd[k] for k in inner if k in mlm_sd},
             exact=True, what=f"AutoModelForMaskedLM from {where.name}")
        assert mlm.cls.predictions.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()
        assert encoder["embeddings.word_embeddings.weight"].shape == (VOCAB, 32)
    # the same files as an unsharded model's save (the tied decoder stored once), the same values
    from bertctl.pretraining.model import save_pretrained

    save_pretrained(ref.model.model, tok, OUT / "plain-model")
    final, plain_final = (load_file(str(d / "model.safetensors")) for d in (folder, OUT / "plain-model"))
    summary["final_tensors"] = len(final)
    summary["final_vs_plain_diff"] = same(final, plain_final, exact=False, what="model/ vs an unsharded save")
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
dist.barrier()
dist.destroy_process_group()
