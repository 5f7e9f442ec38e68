"""The reproduce recipe's schema (pure pydantic: validating it imports no torch).

A recipe names *steps* (one bertctl command line each, run once and shared between
experiments) and *experiments* (which steps they read, and the thresholds of their
verdict). What an experiment measures and how it is graded is code: a row of
`bertctl/reproduce/experiments.py`."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from bertctl.recipe import Section

PROFILES = ("smoke", "cpu", "gpu")
Profile = Literal["smoke", "cpu", "gpu"]
# {run:NAME}: the run folder of step NAME; {data}: data_root
RUN_REF = re.compile(r"\{run:([A-Za-z0-9_]+)\}")


class StepSection(Section):
    run: str = Field(description="the bertctl command line, without 'bertctl' and --out; {run:STEP} = that "
                                 "step's run folder, {data} = data_root")
    smoke: str = Field("", description="key=value overrides (and options) added in the smoke profile")
    cpu: str = Field("", description="added in the cpu profile")
    gpu: str = Field("", description="added in the gpu profile")
    profiles: list[Profile] = Field(list(PROFILES), description="the profiles that run this step")
    data: list[str] = Field([], description="paths under data_root it reads: absent, the step is skipped "
                                            "(with a note in the report)")

    def line(self, profile: str) -> str:
        return f"{self.run} {getattr(self, profile)}".strip()


class ExperimentSection(Section):
    steps: list[str] = Field(description="the steps whose run folders this experiment reads")
    criterion: dict[str, float] = Field({}, description="the thresholds of its verdict (see `bertctl reproduce --list`)")


class ReproduceRecipe(Section):
    command: Literal["reproduce"] = "reproduce"
    profile: Profile = "cpu"
    data_root: str = Field("../shared/data", description="real data, against the working directory")
    jobs: dict[str, int] = Field({"smoke": 2, "cpu": 1, "gpu": 1},
                                 description="steps run at once, by profile (each is one process)")
    steps: dict[str, StepSection]
    experiments: dict[str, ExperimentSection]

    @model_validator(mode="after")
    def _references(self):
        problems = []
        for name, step in self.steps.items():
            for ref in RUN_REF.findall(" ".join([step.run, step.smoke, step.cpu, step.gpu])):
                if ref not in self.steps:
                    problems.append(f"steps.{name} reads {{run:{ref}}}, which is no step")
                elif ref == name:
                    problems.append(f"steps.{name} reads its own run folder")
        for name, exp in self.experiments.items():
            problems += [f"experiments.{name}.steps names '{s}', which is no step" for s in exp.steps
                         if s not in self.steps]
        bad = [k for k, v in self.jobs.items() if k not in PROFILES or v < 1]
        problems += [f"jobs.{k}: a profile ({', '.join(PROFILES)}) and a number >= 1" for k in bad]
        if problems:
            raise ValueError("; ".join(problems))
        return self
