"""The `bertctl prompt` recipe (pure pydantic, no torch): few-shot prompting of causal LMs.

    bertctl prompt --shots K [--task T] [--model M ...] [RECIPE] [key=value ...]

A prompt is the task description, then K demonstrations ("input -> answer"), then the
query, joined by `template.separator`:

    {description}<sep>{input(demo 1)}{answer(demo 1)}<sep>...<sep>{input(query)}

Labelled tasks are scored the way lm-evaluation-harness scores multiple choice: the
log-probability of every answer option (the `template.answer` text with the label word
filled in) given the prompt, summed over the option's tokens; the option with the
highest score is the prediction. `scoring.normalize` picks the length normalisation:
"none" (the default: summed log-probability, the harness's `acc`), "tokens" (mean per
token) or "chars" (divided by the option's length in characters, the harness's
`acc_norm`). `scoring.calibrate` (off by default) subtracts, before normalising, each
option's log-probability after a content-free query ("N/A") with the same demonstrations,
which removes the bias towards the label of the last or most frequent demonstration that
small models show (Zhao et al. 2021, "Calibrate before use"). Rows without labels are not scored: the model's continuation is generated
and streamed to the terminal instead.

Template placeholders are the data's column names in braces ({text}, {premise},
{hypothesis}, {sentence}, ...) in `template.input`, and {answer} (the label word) in
`template.answer`; write {{ and }} for literal braces. The library code lives in
`bertctl.prompting`; this module only holds the schema so recipes validate cheaply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bertctl.recipe import ModelName, OptionalPath, Precision, Section

# The built-in tasks (data from bertctl.data.world.World); see bertctl.prompting.tasks.
BUILTIN_TASKS = ("sentiment", "nli", "topic", "translate")


class DataSection(Section):
    """Where the examples come from. With `eval` unset, the built-in task's world data is used."""

    eval: OptionalPath = Field(None, description="CSV/TSV/JSONL file to evaluate on (null: the built-in task's "
                                                 "World data); relative paths resolve against the recipe's folder")
    pool: OptionalPath = Field(None, description="file to draw demonstrations from (null: `pool_size` rows held "
                                                 "out of the eval file, or generated for a built-in task)")
    format: Literal["tsv", "csv", "jsonl", "json"] | None = Field(None, description="file format (default: from "
                                                                                    "the extension)")
    label_column: str = Field("label", description="column holding the gold label (absent: free generation)")
    pool_size: int = Field(64, gt=0, description="demonstration pool size when there is no pool file")
    limit: int | None = Field(48, gt=0, description="evaluate on this many examples (a seeded random subset of a "
                                                   "file); null = all")
    seed: int = Field(0, description="seed of the World data, the eval subset and the held-out pool")


class TemplateSection(Section):
    """How rows become text; null fields take the built-in task's defaults."""

    description: str | None = Field(None, description="task description at the top of every prompt ('' = none)")
    input: str | None = Field(None, description="the query/demo text, e.g. 'Review: {text}\\nSentiment:'")
    answer: str | None = Field(None, description="what follows the input in a demo and is scored as an option, "
                                                 "e.g. ' {answer}'")
    separator: str | None = Field(None, description="between description, demonstrations and query (default "
                                                    "a blank line)")


class ScoringSection(Section):
    normalize: Literal["none", "tokens", "chars"] = Field(
        "none", description="length normalisation of option log-probs: none (sum, default), tokens (mean per "
                            "token), chars (per character, lm-eval's acc_norm)")
    method: Literal["prefix", "batched", "naive"] = Field(
        "prefix", description="prefix: one pass over each prompt with a KV cache, options as batched "
                              "continuations; batched: prompt+option rows padded into batches; naive: one "
                              "forward per option (the reference)")
    batch_size: int = Field(8, gt=0, description="prompts per forward pass")
    option_batch: int = Field(64, gt=0, description="option continuations per forward pass (prefix method)")
    calibrate: bool = Field(False, description="contextual calibration (Zhao et al. 2021): subtract every "
                                               "option's log-prob after a content-free query with the same "
                                               "demonstrations (one more prompt per query; off by default)")
    content_free: str = Field("N/A", description="the content-free text put in every input placeholder")


class GenerationSection(Section):
    max_new_tokens: int = Field(24, gt=0)
    stop: str = Field("\n", description="stop generating at this text (it is not part of the answer)")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding")
    stream: bool = Field(True, description="print the continuation as it is generated")


class ModelSection(Section):
    precision: Precision | None = Field("auto", description="auto (or null): bf16 where the hardware computes it "
                                                           "natively, fp16 on a CUDA GPU without it, else fp32")
    device: str | None = Field(None, description="cpu, cuda, cuda:1 ... (null: cuda if available)")
    trust_remote_code: bool = False
    allow_pickle: bool = False


class PromptRecipe(Section):
    command: Literal["prompt"] = "prompt"
    task: str = Field("sentiment", min_length=1, description=f"built-in task ({', '.join(BUILTIN_TASKS)}) or the "
                                                             "name of a file task (data.eval + template)")
    models: list[ModelName] = Field(["smollm2"], min_length=1, description="causal LMs: embedded name (smollm2), "
                                  "local folder, .gguf file, bertctl pretrain run folder, or hub id")
    shots: list[int] = Field([3], min_length=1, description="numbers of demonstrations K to sweep")
    mode: Literal["auto", "score", "generate"] = Field(
        "auto", description="score label options, or generate free text; auto = score when rows have labels")
    demos: Literal["per_query", "fixed"] = Field(
        "per_query", description="draw demonstrations for every query (as lm-eval and GPT-3 do) or one set for all")
    seed: int = Field(0, description="seed of the demonstration draws")
    labels: dict[str, str] | None = Field(None, description="label value -> label word, e.g. {0: negative, "
                                                           "1: positive}; null: the built-in task's words, else "
                                                           "the label values themselves")
    data: DataSection = Field(default_factory=DataSection)
    template: TemplateSection = Field(default_factory=TemplateSection)
    scoring: ScoringSection = Field(default_factory=ScoringSection)
    generation: GenerationSection = Field(default_factory=GenerationSection)
    model: ModelSection = Field(default_factory=ModelSection)

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys_are_text(cls, value):
        # YAML reads `0: negative` with an int key; labels read from files are text.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("shots")
    @classmethod
    def _shots_are_counts(cls, value: list[int]) -> list[int]:
        if any(k < 0 for k in value):
            raise ValueError("shots must be >= 0")
        return sorted(set(value))


def parse_shots(text: str) -> list[int]:
    """'0,1,3,8' -> [0, 1, 3, 8] (the --shots option)."""
    from bertctl.errors import BertctlError

    try:
        shots = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise BertctlError(f"--shots {text!r} is not a list of whole numbers", fix="write e.g. --shots 3 or "
                                                                                   "--shots 0,1,3,8") from None
    if not shots or any(k < 0 for k in shots):
        raise BertctlError(f"--shots {text!r} needs whole numbers >= 0", fix="write e.g. --shots 0,1,3,8")
    return shots
