"""The `bertctl pretrain` recipe (pure pydantic: importing it never imports torch).

A recipe says what to read (`data`), how to cut it into tokens (`tokenizer`), what to
build or continue (`model`), what to learn (`objective`), how long (`train`) and how to
measure it (`eval`). Every block has defaults, so `bertctl pretrain` with no recipe at
all runs the small MLM+NSP job on the generated World corpus.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bertctl.config import TrainSettings
from bertctl.recipe import ModelName, OptionalPath, PathStr, Section


class WorldCorpus(Section):
    """The corpus bertctl generates itself (offline, seeded): used when data.source is unset."""

    n_docs: int = Field(3000, gt=1, description="documents per language (5-7 sentences each)")
    seed: int = 0
    languages: list[Literal["en", "xx"]] = Field(default_factory=lambda: ["en"], min_length=1)


class DataSection(Section):
    source: PathStr | list[PathStr] | None = Field(
        None, description="text file/folder (blank line between documents), .jsonl, a saved dataset folder, "
                          "or a Hugging Face dataset id; unset = the generated World corpus")
    root: str | None = Field(None, description="folder for a relative data.source, resolved against the current "
                                               "directory at run time (built-in recipes: ../shared/data)")
    format: Literal["auto", "text", "jsonl", "hf"] = "auto"
    text_field: str = Field("text", description="the column holding a document (jsonl / datasets)")
    hf_config: str | None = Field(None, description="dataset configuration name (hf)")
    hf_split: str = "train"
    world: WorldCorpus = Field(default_factory=WorldCorpus)
    heldout: float = Field(0.05, gt=0, lt=0.5, description="fraction of documents held out for evaluation")
    max_docs: int | None = Field(None, gt=1, description="read at most this many documents")
    cache_dir: OptionalPath = Field(None, description="token cache (default $BERTCTL_CACHE or ~/.cache/bertctl)")


class TokenizerSection(Section):
    source: ModelName = Field("auto", description="'train' (WordPiece on the corpus), a checkpoint/hub id/run folder "
                                            "whose tokenizer to reuse, or 'auto' (train from scratch, else reuse)")
    vocab_size: int = Field(3000, ge=100)
    lowercase: bool = True
    min_frequency: int = Field(2, ge=1)
    max_docs: int = Field(200_000, gt=0, description="train the tokenizer on at most this many documents")


class ModelSection(Section):
    init: ModelName = Field("scratch", description="'scratch', or a checkpoint to continue: run folder, HF folder, hub id, 'minilm'")
    layers: int = Field(2, gt=0)
    hidden: int = Field(128, gt=0)
    heads: int = Field(2, gt=0)
    intermediate: int = Field(512, gt=0)
    max_length: int = Field(128, ge=16, description="tokens per sequence (also the position-embedding size from scratch)")
    dropout: float = Field(0.1, ge=0, lt=1)
    allow_pickle: bool = False
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _heads(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        return self


class ObjectiveSection(Section):
    kind: Literal["mlm", "causal"] = Field("mlm", description="masked LM (BERT) or next-token LM (GPT)")
    pairs: Literal["none", "nsp", "sop"] = Field("nsp", description="sentence-pair task next to MLM")
    masking: Literal["token", "whole_word", "span"] = "token"
    mask_rate: float = Field(0.15, gt=0, lt=1)
    mask_token: float = Field(0.8, ge=0, le=1, description="share of chosen tokens replaced by [MASK]")
    random_token: float = Field(0.1, ge=0, le=1, description="share replaced by a random token (rest kept)")
    span_p: float = Field(0.2, gt=0, le=1, description="geometric parameter of span lengths (SpanBERT: 0.2)")
    span_max: int = Field(10, gt=0, description="longest span, in words")
    short_seq_prob: float = Field(0.1, ge=0, le=1, description="pairs: chance of a shorter target length (BERT)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.mask_token + self.random_token > 1 + 1e-9:
            raise ValueError("mask_token + random_token must be at most 1 (the rest is kept unchanged)")
        if self.kind == "causal" and self.pairs != "none":
            raise ValueError("a causal LM has no sentence-pair head: set objective.pairs=none")
        return self


class EvalSection(Section):
    max_sequences: int = Field(1000, gt=0, description="held-out sequences evaluated at each evaluation")
    batch_size: int = Field(64, gt=0)
    fill_mask: int = Field(5, ge=0, description="MLM: blank a word in this many held-out passages and keep the "
                                                "final model's top 3 (metrics.json fill_mask; 0 = none)")


def _default_train() -> TrainSettings:
    return TrainSettings(max_steps=300, batch_size=32, lr=1e-3, warmup=0.06, log_every=10, save_every=100)


class PretrainRecipe(Section):
    command: Literal["pretrain"] = "pretrain"
    data: DataSection = Field(default_factory=DataSection)
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    model: ModelSection = Field(default_factory=ModelSection)
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    train: TrainSettings = Field(default_factory=_default_train)
    eval: EvalSection = Field(default_factory=EvalSection)

    @property
    def from_scratch(self) -> bool:
        return self.model.init == "scratch"

    @property
    def tokenizer_source(self) -> str | None:
        """None: train a WordPiece tokenizer; else where to load one from."""
        src = self.tokenizer.source
        if src == "auto":
            return None if self.from_scratch else self.model.init
        return None if src == "train" else src


def unused_settings(recipe: PretrainRecipe) -> list[tuple[list[str], str]]:
    """Settings the combination makes dead (see recipe.refuse_unused)."""
    from bertctl.recipe import changed

    o, default = recipe.objective, ObjectiveSection()
    groups = []
    if o.kind == "causal":
        groups.append(([k for k in ("masking", "mask_rate", "mask_token", "random_token", "span_p", "span_max",
                                    "short_seq_prob") if getattr(o, k) != getattr(default, k)],
                       "objective.", "a causal LM masks nothing and has no sentence pairs"))
    else:
        if o.masking != "span":
            groups.append(([k for k in ("span_p", "span_max") if getattr(o, k) != getattr(default, k)],
                           "objective.", f"only masking=span draws spans (masking={o.masking})"))
        if o.pairs == "none":
            groups.append(([k for k in ("short_seq_prob",) if getattr(o, k) != getattr(default, k)],
                           "objective.", "pairs=none makes no sentence pairs"))
    if recipe.data.source is not None:
        groups.append((changed(recipe.data.world, WorldCorpus()), "data.world.",
                       "data.source is set, so the World corpus is not generated"))
    elif recipe.data.root is not None:
        groups.append((["root"], "data.", "data.source is unset: the World corpus is generated, no files are read"))
    if recipe.tokenizer_source is not None:
        groups.append(([k for k in changed(recipe.tokenizer, TokenizerSection()) if k != "source"], "tokenizer.",
                       f"the tokenizer of {recipe.tokenizer_source} is reused, not trained"))
    return [([prefix + k for k in keys], why) for keys, prefix, why in groups if keys]
