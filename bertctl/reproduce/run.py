"""Plan, run and read back the experiments of a reproduce recipe.

Every step is one bertctl command line, run as `python -m bertctl ...` into
`<out>/runs/<step>/` (its output in `<out>/logs/<step>.txt`): exactly the line the report
quotes. A step whose run folder says finished (`read_record(p).status == "finished"`) with
the same command line as before (`steps.json`) is reused, so a rerun into the same folder
only renders again; one that failed or changed is moved aside and run again, and so is
every step that reads it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bertctl.errors import BertctlError
from bertctl.reproduce.config import RUN_REF, ReproduceRecipe
from bertctl.reproduce.experiments import BY_NAME, EXPERIMENTS, MissingRun, criterion_text
from bertctl.runs import Run, read_json, read_record, write_json, write_metrics

STEPS_FILE = "steps.json"  # step -> the argv it ran with (a changed line reruns the step)


@dataclass
class Step:
    name: str
    argv: list[str]  # after `bertctl`, with --out
    needs: list[str]
    skipped: str = ""  # why it does not run in this profile / on this machine
    status: str = "pending"  # reused | finished | failed | skipped
    seconds: float | None = None
    error: str = ""

    @property
    def command(self) -> str:
        return "bertctl " + shlex.join(self.argv)


@dataclass
class Plan:
    profile: str
    experiments: list[str]
    steps: dict[str, Step] = field(default_factory=dict)  # in dependency order


def select(recipe: ReproduceRecipe, only: str | None) -> list[str]:
    """The experiments to run: the table's that the recipe configures, or --only's."""
    known = [e.name for e in EXPERIMENTS if e.name in recipe.experiments]
    unknown = [n for n in recipe.experiments if n not in BY_NAME]
    if unknown:
        raise BertctlError(f"the recipe configures experiment(s) {', '.join(unknown)}, which bertctl does not know",
                           fix=f"use names from: {', '.join(BY_NAME)}")
    for name in known:  # a criterion without the thresholds its rule names: refused before anything runs
        criterion_text(BY_NAME[name], recipe.experiments[name].criterion)
    if not only:
        return known
    names = [n.strip() for n in only.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise BertctlError(f"--only: no experiment named {', '.join(bad) or repr(only)}",
                           fix=f"pick from {', '.join(known)} (see `bertctl reproduce --list`)")
    return [n for n in known if n in names]


def plan(recipe: ReproduceRecipe, out: Path, names: list[str]) -> Plan:
    """The steps the chosen experiments need, with their dependencies, in run order."""
    profile, data = recipe.profile, recipe.data_root
    result = Plan(profile, names)
    wanted: list[str] = []

    def want(step: str) -> None:
        if step in wanted:
            return
        for ref in RUN_REF.findall(recipe.steps[step].line(profile)):
            want(ref)
        wanted.append(step)

    for name in names:
        for step in recipe.experiments[name].steps:
            want(step)
    for name in wanted:
        section = recipe.steps[name]
        folder = out / "runs" / name
        tokens = [RUN_REF.sub(lambda m: str(out / "runs" / m.group(1)), t).replace("{data}", data)
                  for t in shlex.split(section.line(profile))]
        step = Step(name, [*tokens, "--out", str(folder)], list(dict.fromkeys(RUN_REF.findall(section.line(profile)))))
        if profile not in section.profiles:
            step.skipped = f"not in the {profile} profile"
        else:
            missing = [p for p in section.data if not (Path(data) / p).exists()]
            if missing:
                step.skipped = f"{Path(data) / missing[0]} is absent (real data: see README, data_root)"
        gone = [n for n in step.needs if result.steps[n].skipped]
        if gone and not step.skipped:
            step.skipped = f"it reads step {gone[0]}, which is skipped"
        step.status = "skipped" if step.skipped else "pending"
        result.steps[name] = step
    return result


def run_steps(the_plan: Plan, out: Path, jobs: int, say: Callable[[str], None]) -> None:
    """Run every pending step (reusing finished ones), `jobs` at a time, each after the
    steps it reads. A failed step fails the steps that read it; the others go on."""
    previous = _read_steps(out)
    todo = [s for s in the_plan.steps.values() if not s.skipped]
    for step in todo:  # in dependency order: a step's needs are decided before it
        folder = out / "runs" / step.name
        record = read_record(folder)
        rerun_needs = [n for n in step.needs if the_plan.steps[n].status == "pending"]
        if (record is not None and record.status == "finished" and previous.get(step.name) == _portable(step.argv, out)
                and not rerun_needs):  # a step that reads a step run again is run again (its input changed)
            step.status = "reused"
        elif record is not None and record.status == "running":  # a live process holds it (an earlier reproduce's step)
            raise BertctlError(f"step {step.name} is still running in another process ({folder})",
                               fix="wait for it to end (or stop it), then rerun")
        elif folder.exists():
            _move_aside(folder, say)
    depth: dict[str, int] = {}
    for s in the_plan.steps.values():  # dependency order: a step's needs come before it
        depth[s.name] = 1 + max((depth[n] for n in s.needs), default=-1)
    # shallow steps first (the pool takes them in order): a free worker never sits waiting while a
    # step that needs nothing is queued behind one that waits
    pending = sorted((s for s in todo if s.status == "pending"), key=lambda s: depth[s.name])
    if not pending:
        return
    (out / "logs").mkdir(exist_ok=True)
    done = {s.name: threading.Event() for s in todo}
    for s in todo:
        if s.status == "reused":
            done[s.name].set()
    lock = threading.Lock()
    counter = [0]
    # steps side by side share the cores: one step's threads must not wait on another's
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, jobs))), **os.environ,
           "BERTCTL_REPRODUCE": "1"}

    def work(step: Step) -> None:
        try:
            for need in step.needs:
                done[need].wait()
            failed = [n for n in step.needs if the_plan.steps[n].status == "failed"]
            if failed:
                step.status, step.error = "failed", f"step {failed[0]} failed"
                return
            with lock:
                counter[0] += 1
                say(f"[{counter[0]}/{len(pending)}] {step.name}: {step.command}")
            start = time.perf_counter()
            log = out / "logs" / f"{step.name}.txt"
            with open(log, "w", encoding="utf-8") as f:
                code = subprocess.run([sys.executable, "-m", "bertctl", *step.argv], stdout=f, stderr=subprocess.STDOUT,
                                      env=env).returncode
            step.seconds = round(time.perf_counter() - start, 1)
            record = read_record(out / "runs" / step.name)
            if code == 0 and record is not None and record.status == "finished":
                step.status = "finished"
                with lock:
                    _write_step(out, step)
                say(f"  {step.name}: finished in {step.seconds:.1f} s")
            else:
                step.status = "failed"
                step.error = _last_error(log) or f"exit code {code}"
                say(f"  {step.name}: failed ({step.error}); its output: {log}")
        finally:
            done[step.name].set()

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(work, pending))


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    error = next((line for line in reversed(lines) if line.startswith("error:")), None)
    return error[len("error:"):].strip() if error else (lines[-1][-300:] if lines else "")


def _read_steps(out: Path) -> dict:
    try:
        data = read_json(out / STEPS_FILE)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _portable(argv: list[str], out: Path) -> list[str]:
    """A step's command line as steps.json keeps it: the report folder as {out}, so a moved
    or copied folder still recognises its finished steps."""
    return [a.replace(str(out), "{out}") for a in argv]


def _write_step(out: Path, step: Step) -> None:
    write_json(out / STEPS_FILE, {**_read_steps(out), step.name: _portable(step.argv, out)})


def _move_aside(folder: Path, say: Callable[[str], None]) -> None:
    """A step folder that did not finish (or ran another command line): kept, renamed."""
    n = 1
    while (target := folder.with_name(f"{folder.name}.old-{n}")).exists():
        n += 1
    folder.rename(target)
    say(f"  {folder.name}: its earlier run did not finish or had another command line; moved to {target}")


def measure(recipe: ReproduceRecipe, the_plan: Plan, out: Path) -> list[dict]:
    """Each chosen experiment's section: numbers, table, figures and verdict from its run folders."""
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    sections = []
    for name in the_plan.experiments:
        exp, conf = BY_NAME[name], recipe.experiments[name]
        steps = [the_plan.steps[s] for s in conf.steps]
        runs = {s.name: out / "runs" / s.name for s in steps if s.status in ("reused", "finished")}
        section = {"name": name, "number": exp.number, "title": exp.title, "claim": exp.claim,
                   "reference": exp.reference, "criterion": criterion_text(exp, conf.criterion),
                   "commands": [{"step": s.name, "command": s.command, "status": s.status, "seconds": s.seconds,
                                 "skipped": s.skipped, "error": s.error} for s in steps],
                   "notes": [f"step {s.name} skipped: {s.skipped}" for s in steps if s.skipped]}
        try:
            outcome = exp.measure(runs, conf.criterion, figs)
        except MissingRun as e:
            step = the_plan.steps[str(e)]
            why = step.skipped or step.error or step.status
            section.update(verdict="not measured", why=f"step {step.name} did not finish ({why})", numbers={},
                           rows=[], columns=[], figures=[])
        else:
            section.update(verdict=outcome.verdict, why=outcome.why, numbers=outcome.numbers, rows=outcome.rows,
                           columns=outcome.columns, notes=section["notes"] + outcome.notes,
                           figures=[{"caption": c, "path": str(p)} for c, p in outcome.figures if Path(p).is_file()])
        sections.append(section)
    return sections


def reproduce(recipe: ReproduceRecipe, run: Run, only: str | None, say: Callable[[str], None]) -> dict:
    """Run (or reuse) the chosen experiments' steps, grade them, write results.json,
    report.md and report.html into the run folder. Returns the results."""
    from bertctl.reproduce.render import write_reports

    out = run.path
    names = select(recipe, only)
    the_plan = plan(recipe, out, names)
    start = time.perf_counter()
    run_steps(the_plan, out, recipe.jobs.get(recipe.profile, 1), say)
    seconds = round(time.perf_counter() - start, 1)
    sections = measure(recipe, the_plan, out)
    results = {"profile": recipe.profile, "data_root": recipe.data_root, "experiments": sections,
               "steps": {s.name: {"command": s.command, "status": s.status, "seconds": s.seconds,
                                  "skipped": s.skipped, "error": s.error} for s in the_plan.steps.values()},
               "seconds": seconds,
               "ran": sum(s.status == "finished" for s in the_plan.steps.values()),
               "reused": sum(s.status == "reused" for s in the_plan.steps.values())}
    run.write_json("results.json", results)
    verdicts = {e["name"]: e["verdict"] for e in sections}
    counts = {v: sum(x == v for x in verdicts.values()) for v in ("reproduced", "partly", "not reproduced", "not measured")}
    write_metrics(run, {"profile": recipe.profile, "verdicts": verdicts, **counts, "seconds": seconds},
                  scores={"verdicts": counts}, main_metric="reproduced")
    write_reports(results, out)
    return results


def failed_steps(results: dict) -> list[str]:
    return [f"{name} ({s['error']})" for name, s in results["steps"].items() if s["status"] == "failed"]


def listing(recipe: ReproduceRecipe) -> list[dict]:
    """`--list`: every experiment of the table, whether the recipe configures it, its steps."""
    rows = []
    for e in EXPERIMENTS:
        conf = recipe.experiments.get(e.name)
        steps = [s for s in conf.steps if recipe.profile in recipe.steps[s].profiles] if conf else []
        rows.append({"name": e.name, "#": e.number, "experiment": e.title,
                     "steps": ", ".join(steps) if conf else "(not in this recipe)", "claim": e.claim})
    return rows
