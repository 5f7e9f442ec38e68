"""The `bertctl probe` recipe: one schema, one block per subcommand (pure pydantic, no torch).

    bertctl probe similarity [RECIPE] key=value --model M --out DIR
    bertctl probe layers     [RECIPE] ...
    bertctl probe checkpoints [RECIPE] ...
    bertctl probe align      [RECIPE] ...

A recipe may name the subcommand it is written for (`subcommand: similarity`); running it
with another subcommand is then an error instead of silently using that block's defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bertctl.recipe import ModelName, OptionalPath, Precision, Section

Subcommand = Literal["similarity", "layers", "checkpoints", "align"]


class ModelRef(Section):
    """Which encoder to probe. null = the newest finished `bertctl pretrain` run in runs/,
    else the embedded all-MiniLM-L6-v2 ("minilm")."""

    name_or_path: ModelName | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False


class Sentence(Section):
    """One sentence of `probe similarity`, with an optional group (sense) label."""

    text: str
    group: str | None = None


class SimilarityBlock(Section):
    word: str = Field("apple", min_length=1, description="the target word (several sub-tokens are averaged)")
    sentences: list[Sentence | str] | None = Field(
        None, description="sentences holding the word; default: World(seed).sense_sentences(word, n_per_sense)")
    file: OptionalPath = Field(None, description="text file: one sentence per line, optionally 'sentence<TAB>group'; "
                                                 "or .jsonl with text/group")
    layer: int = Field(-1, description="hidden_states index: 0 = embeddings output, -1 = last layer")
    center: Literal["position", "none"] = Field(
        "position", description="position: subtract each position's mean vector before the cosine (raw cosines are "
                                "reported too); none: raw vectors only")
    reference: OptionalPath = Field(None, description="sentences (one per line) for the position means; default: the "
                                                      "World's stories for World data, else the probe sentences")
    n_per_sense: int = Field(5, gt=0)
    world_seed: int = 0
    language: Literal["en", "xx"] = "en"


class LayersBlock(Section):
    """Linear probes on frozen features of every layer, next to two controls."""

    data: str = Field("world", description="world (UPOS of World.tagged_sentences), world-topic, world-sentiment, "
                                           "world-order (sentence pairs in order vs swapped), or a file (relative "
                                           "to the working directory): .conllu (word labels) / .jsonl .tsv .csv "
                                           "with text[,text_pair],label")
    tag_column: Literal["upos", "xpos"] = "upos"
    text_column: str = "text"
    pair_column: str | None = None
    label_column: str = "label"
    word_pool: Literal["first", "mean"] = "mean"
    sentence_pool: Literal["mean", "cls"] = "mean"
    n_train: int = Field(600, gt=0, description="training sentences (word level) or examples")
    n_test: int = Field(300, gt=0)
    max_iter: int = Field(300, gt=0, le=5000)
    C: float = Field(1.0, gt=0, description="inverse L2 strength of the logistic regression")
    unseen_words: float = Field(0.0, ge=0, lt=1, description="word level: hold out this fraction of word types; "
                                "the probe trains on the others and is tested on these only (0 = plain split)")
    world_seed: int = 0
    language: Literal["en", "xx"] = Field("en", description="World data: which language")


class CheckpointsBlock(Section):
    """Probes over the checkpoints of one `bertctl pretrain` run (x-axis: training step)."""

    properties: list[Literal["pos", "order", "sense", "masked_pos"]] = Field(
        ["pos", "order", "sense"], description="pos: UPOS probe; order: sentence-order probe; sense: two-sense "
                                               "cosine gap; masked_pos: the MLM's own masked-word accuracy per tag")
    data: str = Field("world", description="pos and masked_pos: 'world' (World.tagged_sentences) or a .conllu "
                                           "file (relative to the working directory), e.g. UD English EWT")
    tag_column: Literal["upos", "xpos"] = "upos"
    n_masked: int = Field(400, gt=0, description="masked_pos: tagged sentences scored (every word masked once)")
    layer: int | Literal["best"] = Field("best", description="layer whose probe accuracy is plotted "
                                                             "(all layers go to the JSON)")
    n_train: int = Field(300, gt=0)
    n_test: int = Field(150, gt=0)
    max_iter: int = Field(300, gt=0, le=5000)
    unseen_words: float = Field(0.3, ge=0, lt=1, description="pos: test on this fraction of word types, unseen in "
                                "training (World words have one tag each: a plain split is solved by word identity)")
    word: str = Field("apple", description="two-sense word for the 'sense' curve")
    n_per_sense: int = Field(8, gt=0)
    include_init: bool = Field(True, description="add step 0: a seeded random init of the same shape")
    every: int = Field(1, gt=0, description="probe every Nth checkpoint (the last one always)")
    world_seed: int = 0
    language: Literal["en", "xx"] = "en"

    @model_validator(mode="after")
    def _data(self):
        if self.data != "world" and not self.data.lower().endswith(".conllu"):
            raise ValueError(f"checkpoints.data must be 'world' or a .conllu file, not {self.data!r}")
        return self


class AlignBlock(Section):
    """Translation by nearest neighbour between two languages, with and without the mean shift."""

    lexicon: OptionalPath = Field(None, description="TSV 'word_a<TAB>word_b' per line; default: World.bilingual_lexicon()")
    language_a: str = Field("en", min_length=1, description="a name for language A (World data: en or xx)")
    language_b: str = Field("xx", min_length=1, description="a name for language B (World data: en or xx)")
    corpus_a: OptionalPath = Field(None, description="sentences of language A, one per line (default: World documents)")
    corpus_b: OptionalPath = None
    vectors: Literal["contextual", "isolated", "static"] = Field(
        "contextual", description="contextual: mean over occurrences in sentences; isolated: the word alone; "
                                  "static: input embeddings")
    layer: int | Literal["best"] = Field(-1, description="layer for the headline numbers (all go to the JSON)")
    n_sentences: int = Field(2000, gt=0, description="sentences per language read or generated")
    max_occurrences: int = Field(20, gt=0, description="occurrences averaged per word at most")
    world_seed: int = 0


class ProbeRecipe(Section):
    command: Literal["probe"] = "probe"
    subcommand: Subcommand | None = None
    model: ModelRef = ModelRef()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Precision = Field("auto", description="auto: bf16 where the hardware computes it natively, else fp32")
    batch_size: int = Field(32, gt=0)
    max_length: int = Field(128, gt=8)
    seed: int = 0
    random_control: bool = Field(True, description="also probe a seeded random init of the same shape")
    similarity: SimilarityBlock = SimilarityBlock()
    layers: LayersBlock = LayersBlock()
    checkpoints: CheckpointsBlock = CheckpointsBlock()
    align: AlignBlock = AlignBlock()

    @model_validator(mode="after")
    def _languages(self):
        if self.align.language_a == self.align.language_b and self.align.lexicon is None:
            raise ValueError("align.language_a and align.language_b must differ")
        return self
