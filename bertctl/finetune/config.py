"""The `bertctl finetune` recipe (pure pydantic: importing this never imports torch).

One recipe describes one fine-tuning run: which task kind, which encoder, which data
(files, a Hugging Face dataset, or the project's own generator `World`), which method
(full fine-tuning, LoRA, QLoRA) and how to train. `bertctl eval-glue` builds these in
code, so every block has defaults that make sense on their own.

Where data paths are looked up (decided once, here):
- `data.root` is a plain string resolved against the *current directory* at run time
  (built-in real-data recipes use `../shared/data`, i.e. run them from the project root,
  or pass `data.root=/path/to/data`).
- `data.train/dev/test` follow the recipe rule of `bertctl.recipe.PathStr`: a path that
  starts with "." or exists next to the recipe file is made absolute against the recipe's
  folder; an override on the command line is resolved against the current directory.
  A path still relative after that is taken inside `data.root` when one is set, else
  inside the current directory.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from bertctl.config import TrainSettings
from bertctl.finetune.kinds import ALIASES, KINDS
from bertctl.recipe import IntPair, ModelName, OptionalPath, Section


class ModelSettings(Section):
    name_or_path: ModelName | None = Field(
        None, description="bertctl run folder, local HF folder, hub id, or 'minilm'; "
                          "empty = the latest `bertctl pretrain` run, else the embedded minilm")
    init: Literal["pretrained", "random"] = Field(
        "pretrained", description="'random' trains the same architecture from random weights")
    max_length: int = Field(128, ge=8, le=8192, description="tokens per example (pairs and QA windows included)")
    trust_remote_code: bool = False
    allow_pickle: bool = False


class Columns(Section):
    """Which column of the data plays which role. Empty = the task's default name."""

    text: str | None = Field(None, description="cls/nli/regression/dna: the (first) sequence")
    text_pair: str | None = Field(None, description="nli/regression: the second sequence")
    label: str | None = Field(None, description="class name, or number for regression")
    tokens: str | None = Field(None, description="tag: list of words")
    tags: str | None = Field(None, description="tag: list of labels, one per word")
    id: str | None = Field(None, description="qa: question id")
    question: str | None = None
    context: str | None = None
    answers: str | None = Field(None, description="qa: {text: [...], answer_start: [...]}")


class WorldData(Section):
    """The offline default: a labelled set from `bertctl.data.world.World`."""

    train: int = Field(1200, gt=0)
    dev: int = Field(300, gt=0)
    test: int = Field(0, ge=0)
    seed: int = 0
    language: Literal["en", "xx"] = "en"
    tags: Literal["upos", "bio"] | None = Field(
        None, description="tag task: UPOS, or BIO spans over proper nouns; empty = bio for task ner, else upos")


class HfData(Section):
    """A Hugging Face dataset: a hub id (needs a connection) or a local folder
    written by `save_to_disk` / a folder of data files `load_dataset` understands."""

    name: str
    config: str | None = None
    train: str = "train"
    dev: str | None = "validation"
    test: str | None = None


class DataSettings(Section):
    root: str | None = Field(None, description="folder for relative train/dev/test paths, resolved against the current directory")
    train: OptionalPath = None
    dev: OptionalPath = None
    test: OptionalPath = Field(None, description="optional; unlabelled is fine (predictions only)")
    format: Literal["auto", "glue", "tsv", "csv", "jsonl", "json", "conllu", "conll", "squad"] = "auto"
    tag_column: Literal["upos", "xpos"] = Field("upos", description="CoNLL-U column the tag task learns")
    conll_columns: IntPair = Field((0, -1), description="CoNLL: (token column, tag column)")
    columns: Columns = Columns()
    hf: HfData | None = None
    world: WorldData = WorldData()
    split: float | None = Field(None, gt=0, lt=1, description="keep this share of train for training; the rest is the dev set")
    split_by: str | None = Field(None, description="data.split keeps rows with the same value of this column "
                                                 "together (SQuAD files: title = article)")
    seed: int = Field(0, description="seed of data.split")
    on_bad_rows: Literal["error", "skip"] = Field(
        "error", description="QA answers not at their answer_start: stop with all of them listed, or skip them "
                             "(counted in the log and metrics.json)")
    max_train_samples: int | None = Field(None, gt=0, description="use the first N training rows")
    max_eval_samples: int | None = Field(None, gt=0, description="use the first N dev/test rows")

    @model_validator(mode="after")
    def _sources(self):
        if self.hf is not None and self.train:
            raise ValueError("set data.train (files) or data.hf (a dataset), not both")
        if self.split is not None and self.dev:
            raise ValueError("data.split makes the dev set from train; leave data.dev empty")
        if self.split_by is not None and self.split is None:
            raise ValueError("data.split_by only applies with data.split; set data.split (e.g. 0.9) or drop split_by")
        return self

    @property
    def source(self) -> str:
        return "hf" if self.hf is not None else "files" if (self.train or self.dev or self.test) else "world"


class LoraSettings(Section):
    r: int = Field(8, gt=0)
    alpha: int = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        None, description="module names (suffixes) to adapt; empty = the attention query/value projections")


class QuantSettings(Section):
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the hardware computes it natively, fp16 on an older GPU, else fp32")


class LongTextSettings(Section):
    """Texts longer than model.max_length (cls and dna, single texts; pairs are always cut at
    the end). Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?", found
    head+tail best on IMDb; recipe finetune_movie_reviews compares them on movie reviews."""

    strategy: Literal["head", "tail", "head_tail", "windows"] = Field(
        "windows", description="windows (measured best: movie reviews 89.5 % vs head 69.0 %): every window of "
                               "the text, trained on, its predictions averaged; head: the first tokens; tail: the "
                               "last; head_tail: the first head_tokens and the last rest")
    head_tokens: int | None = Field(None, ge=0, description="head_tail: tokens kept from the start, the rest from "
                                                           "the end; empty = a quarter (Sun et al.: 128 of 510)")
    window_overlap: int | None = Field(None, ge=0, description="windows: tokens shared by consecutive windows; "
                                                                "empty = a quarter of a window")


class QaSettings(Section):
    doc_stride: int = Field(64, gt=0, description="tokens shared by consecutive windows of a long context")
    max_answer_length: int = Field(30, gt=0)
    n_best: int = Field(20, gt=0)
    version_2: bool | None = Field(None, description="allow 'no answer'; empty = yes when the data has unanswerable questions")
    null_threshold: float = 0.0


class DnaSettings(Section):
    kmer: int = Field(1, ge=1, le=6, description="bases per input unit")
    map_to_words: bool = Field(True, description="spell each k-mer as one fixed, whole word of the model's vocabulary")
    stride: int | None = Field(None, gt=0, description="k-mer step (default: kmer, i.e. no overlap)")


class FinetuneRecipe(Section):
    command: Literal["finetune"] = "finetune"
    task: str = Field("cls", description=", ".join("|".join((t.kind, *t.aliases)) for t in KINDS.values()))
    model: ModelSettings = ModelSettings()
    data: DataSettings = DataSettings()
    method: Literal["full", "lora", "qlora"] = "full"
    lora: LoraSettings = LoraSettings()
    quant: QuantSettings = QuantSettings()
    train: TrainSettings = TrainSettings(epochs=3, batch_size=32, lr=5e-5, warmup=0.1, log_every=10)
    eval_batch_size: int = Field(128, gt=0)
    group_by_length: bool = Field(True, description="batch examples of similar length (seeded), so little is padding")
    compare_init: bool = Field(False, description="also train from random weights; write comparison.png and a table")
    merge: bool = Field(False, description="LoRA/QLoRA: also write merged/, a plain model without peft")
    qa: QaSettings = QaSettings()
    dna: DnaSettings = DnaSettings()
    long_text: LongTextSettings = LongTextSettings()

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if str(value).lower() not in ALIASES:
            raise ValueError(f"unknown task {value!r} (valid: {', '.join(ALIASES)})")
        return str(value).lower()

    @property
    def kind(self) -> str:
        """The task kind that runs ('sentiment' -> 'cls', 'pair' -> 'nli', ...)."""
        return ALIASES[self.task]


def unused_settings(recipe: FinetuneRecipe) -> list[tuple[list[str], str]]:
    """Settings of a training run that the combination makes dead (see recipe.refuse_unused).
    Checked by `bertctl finetune` only: eval-only and eval-glue reuse recipes whole."""
    from bertctl.recipe import changed

    out = []
    if recipe.merge and recipe.method == "full":
        out.append((["merge"], "method=full has no adapter to merge; use method=lora or qlora"))
    # a kind's own section (qa, dna) is dead under every other kind
    kind_sections = [(t.settings, getattr(recipe, t.settings), type(getattr(recipe, t.settings))(),
                      t.kind == recipe.kind, f"task {recipe.task} is not {t.title}") for t in KINDS.values() if t.settings]
    for name, section, default, applies, why in (
            ("lora", recipe.lora, LoraSettings(), recipe.method != "full", "method=full trains no adapter"),
            ("quant", recipe.quant, QuantSettings(), recipe.method == "qlora", f"method={recipe.method} quantises nothing"),
            *kind_sections,
            ("data.world", recipe.data.world, WorldData(), recipe.data.source == "world",
             "data comes from files or data.hf, not from World"),
            ("long_text", recipe.long_text, LongTextSettings(), recipe.kind in ("cls", "dna") and
             not recipe.data.columns.text_pair, f"task {recipe.task} does not cut single long texts (cls and dna do, "
                                                "without a text_pair column)")):
        keys = changed(section, default)
        if keys and not applies:
            out.append(([f"{name}.{k}" for k in keys], why))
    return out
