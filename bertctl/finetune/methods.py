"""Which model to start from, and how to fine-tune it: full, LoRA, or QLoRA.

- full: every weight trains; the run folder's model/ is a plain Hugging Face model.
- lora: the encoder is frozen and low-rank adapters (peft) are trained in the chosen
  modules; the newly initialised head stays fully trainable (peft `modules_to_save`).
  model/ holds the adapter in peft format; `merge` writes merged/, a plain model.
- qlora: as lora, on a base quantised by bitsandbytes to 4 or 8 bits.

Two traps of bitsandbytes on CPU, handled here:
1. The new head must stay unquantised (`llm_int8_skip_modules`): a freshly initialised
   4-bit head cannot be trained (its weights are frozen integers).
2. An eval-mode forward without gradients makes `Linear4bit` repack its weights for a
   faster AVX512-BF16 CPU kernel, after which training crashes ("a view of a leaf
   Variable that requires grad is being used in an in-place operation"). The repack
   is gated on the module's `support_avx512bf16_for_cpu` flag; clearing it keeps the
   training layout through evaluation (see `keep_training_layout`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.models import ModelSource, load_model, recipe_model, resolve

# Head modules of the usual *For{SequenceClassification,TokenClassification,QuestionAnswering}
# classes (and the pooler feeding them), kept out of quantisation. Matched as suffixes.
HEAD_MODULES = ["classifier", "score", "qa_outputs", "pooler.dense", "pre_classifier",
                "classifier.dense", "classifier.out_proj"]


def quiet_transformers() -> None:
    """No load reports or progress bars from transformers: bertctl prints its own lines."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # peft still calls this renamed property; the warning is for peft's authors, not users
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated", category=FutureWarning)


# ---------------------------------------------------------------------------- source


def pick_model(name_or_path: str | None, allow_pickle: bool = False) -> tuple[ModelSource, str]:
    """The model to fine-tune and a line saying which and why.

    Empty name: the newest finished `bertctl pretrain` run under ./runs, else the
    embedded all-MiniLM-L6-v2 ("minilm"): see `models.recipe_model`."""
    name, why = recipe_model(name_or_path)
    source = resolve(name, allow_pickle)
    if not why:
        return source, f"model: {source.label}"
    if name == "minilm":
        return source, f"model: minilm, the embedded all-MiniLM-L6-v2 ({why})"
    return source, f"model: {source.label} ({why})"


# ---------------------------------------------------------------------------- build


def build_model(recipe, task, source: ModelSource):
    """The model to train, ready for the loop. Returns (model, info) where info has
    the newly initialised modules and the trainable / total parameter counts."""
    import torch

    quiet_transformers()
    auto = task.auto_model_class()
    m = recipe.model
    if m.init == "random" and recipe.method != "full":
        raise BertctlError(f"model.init=random with method={recipe.method}: adapters on a frozen random encoder "
                           "cannot be saved or compared meaningfully",
                           fix="use method=full for random-init (compare_init) runs")
    torch.manual_seed(recipe.train.seed)  # the new head's initialisation is part of the run's seed
    if m.init == "random":
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(source.path, trust_remote_code=m.trust_remote_code, **task.config_kwargs())
        except (OSError, ValueError) as e:
            raise BertctlError(f"cannot read the config of {source.label} ({str(e).splitlines()[0][:160]})",
                               fix="pass a model folder with config.json") from None
        model = auto.from_config(config, trust_remote_code=m.trust_remote_code)
        new = sorted({name for name, _ in model.named_children()})
    else:
        extra = {}
        if recipe.method == "qlora":
            extra["quantization_config"] = quant_config(recipe)
        try:
            model, loading = load_model(auto, source, m.trust_remote_code, m.allow_pickle, output_loading_info=True,
                                        ignore_mismatched_sizes=True, **extra, **task.config_kwargs())
        except (ImportError, RuntimeError, AssertionError) as e:
            if recipe.method == "qlora":
                raise _quant_error(recipe, e) from None
            raise
        new = new_modules(loading)
    if recipe.method in ("lora", "qlora"):
        model = add_lora(model, recipe, task, new)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return model, {"new_modules": new, "trainable_params": trainable, "total_params": total}


def new_modules(loading: dict) -> list[str]:
    """Modules whose weights were not in the checkpoint (the task head, maybe a pooler):
    they are freshly initialised and must train whatever the method."""
    keys = set(loading.get("missing_keys", ())) | {k[0] if isinstance(k, tuple) else k
                                                   for k in loading.get("mismatched_keys", ())}
    return sorted({k.rsplit(".", 1)[0] for k in keys})


def quant_config(recipe):
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise _quant_error(recipe, e) from None
    from transformers import BitsAndBytesConfig

    from bertctl.precision import resolve

    q = recipe.quant
    compute = resolve(q.compute_dtype).dtype  # auto: bf16 where native, fp16 on an older GPU, else fp32
    return BitsAndBytesConfig(load_in_4bit=q.bits == 4, load_in_8bit=q.bits == 8, bnb_4bit_quant_type=q.quant_type,
                              bnb_4bit_use_double_quant=q.double_quant, bnb_4bit_compute_dtype=compute,
                              llm_int8_skip_modules=HEAD_MODULES)


def _quant_error(recipe, e: Exception) -> BertctlError:
    first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return BertctlError(f"QLoRA ({recipe.quant.bits}-bit) cannot run here: {first}",
                        fix="use method=lora (no quantisation), or another quant.bits")


def linear_module_names(model, exclude: list[str] = ()) -> list[str]:
    """Short names (last path parts) of the linear layers LoRA could adapt."""
    import torch

    kinds = (torch.nn.Linear,)
    try:
        import bitsandbytes as bnb

        kinds += (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    except ImportError:
        pass
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, kinds) and not any(name == e or name.startswith(e + ".") or name.endswith(e) for e in exclude):
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def default_targets(model) -> list[str]:
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    return list(DEFAULTS.get(getattr(model.config, "model_type", ""), [])) or ["all-linear"]


def check_targets(model, targets: list[str], exclude: list[str]) -> None:
    """An impossible target module is one error listing the names that exist."""
    if targets == ["all-linear"]:
        return
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise BertctlError(f"LoRA target module(s) {', '.join(missing)} not found in this "
                           f"{getattr(model.config, 'model_type', '')} model; available linear modules: "
                           f"{', '.join(linear_module_names(model, exclude))}",
                           fix="set lora.target_modules to some of these names")


def add_lora(model, recipe, task, new: list[str]):
    from peft import LoraConfig, get_peft_model

    targets = recipe.lora.target_modules or default_targets(model)
    check_targets(model, targets, new)
    if recipe.method == "qlora":
        from peft import prepare_model_for_kbit_training

        # no gradient checkpointing: small encoders on CPU gain nothing from it
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(task_type=task.peft_task_type, r=recipe.lora.r, lora_alpha=recipe.lora.alpha,
                        lora_dropout=recipe.lora.dropout,
                        target_modules=targets[0] if targets == ["all-linear"] else targets,
                        modules_to_save=list(new) or None)  # a copy: peft appends its own names to it
    try:
        model = get_peft_model(model, config)
    except ValueError as e:  # peft's own target checks
        raise BertctlError(f"LoRA setup failed: {str(e).splitlines()[0][:200]}",
                           fix=f"available linear modules: {', '.join(linear_module_names(model, new))}") from None
    keep_training_layout(model)
    return model


def keep_training_layout(model) -> None:
    """Stop bitsandbytes' CPU 4-bit layers from repacking their weights during an eval
    forward (trap 2 in the module docstring), so training can go on after evaluation."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


# ---------------------------------------------------------------------------- save / load


def save_model(model, tokenizer, folder: Path, recipe, state_dict: dict | None = None) -> Path:
    """model/ in the run folder: a full HF model, or a peft adapter (+ the tokenizer).
    `state_dict`: the full weights when the model itself holds only a shard (FSDP, DeepSpeed;
    fit's FitResult.state_dict); peft picks the adapter's weights out of it."""
    folder.mkdir(parents=True, exist_ok=True)
    # a copy: save_pretrained empties the dict it is given
    model.save_pretrained(str(folder), **({"state_dict": dict(state_dict)} if state_dict is not None else {}))
    tokenizer.save_pretrained(str(folder))
    return folder


def is_adapter(folder: Path) -> bool:
    return (Path(folder) / "adapter_config.json").exists()


def load_trained(folder: Path, recipe, task):
    """The fine-tuned model of a run folder, as it was trained (QLoRA base quantised again)."""
    quiet_transformers()
    auto = task.auto_model_class()
    m = recipe.model
    folder = Path(folder)
    if not is_adapter(folder):
        return load_model(auto, resolve(str(folder), m.allow_pickle), m.trust_remote_code, m.allow_pickle)
    from peft import PeftModel

    from bertctl.models import check_weights

    check_weights(folder, m.allow_pickle)  # the adapter obeys the safetensors-only rule too
    base = _adapter_base(folder)
    extra = {"quantization_config": quant_config(recipe)} if recipe.method == "qlora" else {}
    model = load_model(auto, base, m.trust_remote_code, m.allow_pickle, ignore_mismatched_sizes=True,
                       **extra, **task.config_kwargs())
    model = PeftModel.from_pretrained(model, str(folder))
    keep_training_layout(model)
    return model


def _adapter_base(folder: Path) -> ModelSource:
    base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise BertctlError(f"{folder}/adapter_config.json names no base model", fix="re-run the fine-tuning")
    if os.path.isabs(base) and not Path(base).exists():
        raise BertctlError(f"the base model of adapter {folder} is gone ({base})",
                           fix="restore that folder, or re-run the fine-tuning")
    return resolve(base)


def write_merged(adapter: Path, out: Path, recipe, task, tokenizer) -> Path:
    """merged/: the base in full precision with the adapter folded in, a plain HF model
    (loadable by `transformers.pipeline` without peft). For QLoRA the base is reloaded
    unquantised, so the merged weights are not rounded to 4 bits."""
    from peft import PeftModel

    quiet_transformers()
    m = recipe.model
    from bertctl.models import check_weights

    check_weights(Path(adapter), m.allow_pickle)
    base = load_model(task.auto_model_class(), _adapter_base(adapter), m.trust_remote_code, m.allow_pickle,
                      ignore_mismatched_sizes=True, **task.config_kwargs())
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
