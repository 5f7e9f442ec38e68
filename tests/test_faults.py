"""Faults through the real commands: `kill -9` at random moments, Ctrl-C (in training and
before it), NaN loss, and pretrain/finetune/eval-glue under `torchrun` with 2 processes.

kill -9: each trial starts the real CLI in its own process, SIGKILLs it after a seeded
random delay (during start-up, tokenisation, training, checkpointing or the final save),
resumes with `--resume` (sometimes killing that too), and finally lets it finish. The
final metrics.json must equal an uninterrupted run's, every visible checkpoint must be
complete whenever a run dies, and the step log must read as one run.

Why a fork server: importing torch + transformers takes ~10 s on a loaded 2-core machine,
which would make 10+ kills per command far too slow. The trials' processes are forked
from a server that imported those libraries once (multiprocessing's "forkserver", which
has run no torch op before forking); each one then runs `bertctl.cli.app` with its own
argv, working directory, environment and stdout/stderr file, so it is the real command in
a real process that really gets SIGKILL. The Ctrl-C, NaN and torchrun tests use plain
`python -m bertctl` subprocesses.

The normal suite runs 2 trials per command (BERTCTL_FAULT_TRIALS=N for more; the issue's
acceptance run is BERTCTL_FAULT_TRIALS=10).
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import Cli, ENV, _final, _step_log


ROOT = Path(__file__).resolve().parents[1]
TRIALS = int(os.environ.get("BERTCTL_FAULT_TRIALS", "2"))

# A tiny BERT on 200 World documents: 90 steps, a checkpoint every 3 steps and an evaluation every 10
PRETRAIN = ["pretrain", "data.world.n_docs=200", "model.hidden=32", "model.heads=2", "model.intermediate=64",
            "model.layers=1", "model.max_length=32", "tokenizer.vocab_size=200", "train.batch_size=8",
            "train.max_steps=90", "train.save_every=3", "train.eval_every=10", "train.log_every=1",
            "train.precision=fp32", "eval.max_sequences=32"]
# Sentence-pair regression on 160 World rows (its Pearson r moves with every weight, unlike the
# accuracy of a tiny classifier stuck at the majority class): 2 epochs of 20 steps, a checkpoint every 3
FINETUNE = ["finetune", "--task", "regression", "model.max_length=48", "data.world.train=160", "data.world.dev=32",
            "train.epochs=2", "train.batch_size=8", "train.lr=1e-3", "train.precision=fp32", "train.save_every=3",
            "train.log_every=1", "train.keep_checkpoints=3"]


# ------------------------------------------------------------------ the real CLI, forked


# ------------------------------------------------------------------ checks on run folders


def _checkpoints_are_complete(run: Path) -> list[str]:
    """Every checkpoint the loop would resume from loads: all files, valid safetensors."""
    from safetensors.torch import load_file

    from bertctl.runs import Run

    names = []
    for ckpt in Run(run, "x").checkpoints():
        state = json.loads((ckpt / "state.json").read_text())
        assert state["step"] == int(ckpt.name.split("-")[1])
        for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors"):
            assert load_file(str(ckpt / name)), f"{ckpt / name} is empty"
        names.append(ckpt.name)
    return names


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)


def _phase(run: Path) -> str:
    """Where a killed run stood, from what it left on disk."""
    from bertctl.runs import Run

    if not run.exists():
        return "before its folder"
    if (run / "metrics.json").exists():
        return "after metrics.json"
    last = Run(run, "x").latest_checkpoint()
    return f"after {last.name}" if last else "before the first checkpoint"


def _kill_trials(command: list[str], tmp: Path, seed: int, trials: int, fresh_cache: bool) -> dict:
    """Reference run, then `trials` runs killed at random moments and resumed to the end."""
    ref_dir, cache = tmp / "reference", tmp / "cache"
    ref = Cli([*command, "--out", str(ref_dir)], tmp, tmp / "reference.log", {"BERTCTL_CACHE": str(cache)})
    assert ref.wait() == 0, ref.output()[-3000:]
    budget = {True: ref.seconds}  # kill moments spread over a whole run, start-up included
    warm = Cli([*command, "--out", str(tmp / "warm")], tmp, tmp / "warm.log", {"BERTCTL_CACHE": str(cache)})
    assert warm.wait() == 0, warm.output()[-3000:]
    budget[False] = warm.seconds
    reference, reference_log = _final(ref_dir), _step_log(ref_dir)
    assert _final(tmp / "warm") == reference  # the token cache changes nothing

    rng = random.Random(seed)
    report = {"trials": trials, "kills": 0, "resumes": 0, "missed": 0, "killed": {}, "resumed_from": {}}
    for trial in range(trials):
        out = tmp / f"trial-{trial}"
        # half the trials start with an empty token cache, so kills also land in tokenisation
        cold = fresh_cache and trial % 2 == 1
        env = {"BERTCTL_CACHE": str(tmp / f"cache-{trial}" if cold else cache)}
        n_kills = rng.choice([1, 1, 2, 3])
        for attempt in range(n_kills + 1):
            for retry in range(5 if attempt == 0 else 1):  # every trial gets at least its first kill
                resume = out.exists()  # killed before the folder existed: nothing to resume, start again
                argv = [*command, "--out", str(out), *(["--resume"] if resume else [])]
                proc = Cli(argv, tmp, tmp / f"trial-{trial}-{attempt}.log", env)
                if attempt == n_kills or proc.kill_after(rng.uniform(0.0, budget[cold])):
                    break
                report["missed"] += 1  # it finished before the kill
                if attempt == 0 and retry < 4:
                    shutil.rmtree(out)  # a finished run proves nothing: start the trial again
            if attempt < n_kills and proc.proc.exitcode == -signal.SIGKILL:
                report["kills"] += 1
                phase = _phase(out)
                report["killed"][phase] = report["killed"].get(phase, 0) + 1
                if out.exists():
                    _checkpoints_are_complete(out)  # the kill left no half-written checkpoint in view
                continue
            assert proc.wait() == 0, f"trial {trial} attempt {attempt}: {proc.output()[-3000:]}"
            if resume:
                report["resumes"] += 1
                found = re.findall(r"resumed from (step-\d+)|(no complete checkpoint yet)", (out / "log.txt").read_text())
                where = (found[-1][0] or "step 0") if found else "?"
                report["resumed_from"][where] = report["resumed_from"].get(where, 0) + 1
            break
        assert _final(out) == reference, f"trial {trial}: final metrics differ from the uninterrupted run"
        assert _step_log(out) == reference_log, f"trial {trial}: the step log differs from the uninterrupted run"
        assert _same_weights(out, ref_dir), f"trial {trial}: the final weights differ from the uninterrupted run"
        if (ref_dir / "predictions_dev.jsonl").exists():
            assert (out / "predictions_dev.jsonl").read_bytes() == (ref_dir / "predictions_dev.jsonl").read_bytes()
    return report


def _report(name: str, report: dict) -> None:
    line = json.dumps({"command": name, **report})
    print(line)
    if os.environ.get("BERTCTL_FAULT_REPORT"):
        with open(os.environ["BERTCTL_FAULT_REPORT"], "a", encoding="utf-8") as f:
            f.write(line + "\n")


@pytest.mark.slow
def test_kill_9_during_pretrain_then_resume_matches_uninterrupted(tmp_path):
    report = _kill_trials(PRETRAIN, tmp_path, seed=7, trials=TRIALS, fresh_cache=True)
    _report("pretrain", report)
    assert report["kills"] >= TRIALS


@pytest.mark.slow
def test_kill_9_during_finetune_then_resume_matches_uninterrupted(tmp_path, tiny):
    report = _kill_trials([*FINETUNE, f"model.name_or_path={tiny}"], tmp_path, seed=11, trials=TRIALS,
                          fresh_cache=False)
    _report("finetune", report)
    assert report["kills"] >= TRIALS


# ------------------------------------------------------------------ Ctrl-C, NaN, torchrun


def _subprocess_env(cache: Path) -> dict:
    return {**os.environ, **ENV, "BERTCTL_CACHE": str(cache), "PYTHONPATH": str(ROOT)}


def _with(command: list[str], **settings) -> list[str]:
    """The command with some key=value overrides replaced."""
    keys = {f"{k.replace('__', '.')}" for k in settings}
    return [a for a in command if a.split("=", 1)[0] not in keys] + [f"{k.replace('__', '.')}={v}" for k, v in settings.items()]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_exits_130_and_prints_a_resume_command_that_finishes(tmp_path):
    """SIGINT to the real `python -m bertctl` process mid-training."""
    cache = tmp_path / "cache"
    # no periodic checkpoint: the only one before the end must come from the Ctrl-C
    command = _with(PRETRAIN, train__max_steps=60, train__save_every=1000, train__eval_every=30)
    out = tmp_path / "run with space"  # the printed command must survive being pasted into a shell
    env = _subprocess_env(cache)
    proc = subprocess.Popen([sys.executable, "-m", "bertctl", *command, "--out", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip()):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "interrupted at step" in lines[0], stderr
    step = int(re.search(r"interrupted at step (\d+)/60", lines[0]).group(1))
    assert 1 <= step < 60
    from bertctl.runs import Run

    assert [p.name for p in Run(out, "x").checkpoints()] == [f"step-{step:07d}"]  # saved on the way out
    _checkpoints_are_complete(out)
    assert not (out / "metrics.json").exists()

    resume = re.search(r"resume with: (bertctl .* --resume)\s*$", lines[0]).group(1)
    argv = shlex.split(resume)  # what a shell makes of the pasted line
    assert argv[0] == "bertctl" and argv[argv.index("--out") + 1] == str(out)
    done = Cli(argv[1:], tmp_path, tmp_path / "resumed.log", {"BERTCTL_CACHE": str(cache)})
    assert done.wait() == 0, done.output()[-3000:]
    assert f"resumed from step-{step:07d}" in (out / "log.txt").read_text()

    # and the interrupted run ends where an uninterrupted one does
    ref = Cli([*command, "--out", str(tmp_path / "reference")], tmp_path, tmp_path / "reference.log",
              {"BERTCTL_CACHE": str(cache)})
    assert ref.wait() == 0, ref.output()[-3000:]
    assert _final(out) == _final(tmp_path / "reference")
    assert _step_log(out) == _step_log(tmp_path / "reference")


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_matches_uninterrupted(tmp_path):
    """SIGTERM (what SLURM sends before killing a job) after the first checkpoint: stop at the
    next step boundary, save, exit 130 with the resume command; --resume ends where an
    uninterrupted run does."""
    cache, out = tmp_path / "cache", tmp_path / "run"
    env = {"BERTCTL_CACHE": str(cache)}
    command = _with(PRETRAIN, train__max_steps=30, train__save_every=3, train__eval_every=10)
    proc = Cli([*command, "--out", str(out)], tmp_path, tmp_path / "stopped.log", env)
    proc.signal_when((out / "checkpoints" / "step-0000003").is_dir, signal.SIGTERM, 240)
    assert proc.wait() == 130, proc.output()[-3000:]
    errors = proc.error_lines()
    assert len(errors) == 1 and "Traceback" not in proc.output(), proc.output()[-3000:]
    step = int(re.search(r"interrupted at step (\d+)/30 \(SIGTERM\); checkpoint saved", errors[0]).group(1))
    assert 3 <= step < 30 and "resume with: bertctl" in errors[0] and errors[0].rstrip().endswith("--resume")
    from bertctl.runs import Run

    assert Run(out, "x").latest_checkpoint().name == f"step-{step:07d}"  # saved on the way out
    _checkpoints_are_complete(out)
    assert not (out / "metrics.json").exists()

    done = Cli([*command, "--out", str(out), "--resume"], tmp_path, tmp_path / "resumed.log", env)
    assert done.wait() == 0, done.output()[-3000:]
    assert f"resumed from step-{step:07d}" in (out / "log.txt").read_text()
    ref = Cli([*command, "--out", str(tmp_path / "reference")], tmp_path, tmp_path / "reference.log", env)
    assert ref.wait() == 0, ref.output()[-3000:]
    assert _final(out) == _final(tmp_path / "reference")
    assert _step_log(out) == _step_log(tmp_path / "reference")
    assert _same_weights(out, tmp_path / "reference")


@pytest.mark.slow
def test_ctrl_c_before_training_is_one_line_and_resume_starts_over(tmp_path):
    """Ctrl-C while the corpus is being generated/tokenised: nothing to save yet."""
    out = tmp_path / "run"
    command = _with(PRETRAIN, data__world__n_docs=4000)
    proc = Cli([*command, "--out", str(out)], tmp_path, tmp_path / "early.log", {"BERTCTL_CACHE": str(tmp_path / "c")})
    proc.signal_when((out / "recipe.yaml").exists, signal.SIGINT, 120)
    assert proc.wait() == 130, proc.output()[-3000:]
    errors = proc.error_lines()
    assert len(errors) == 1 and "Traceback" not in proc.output(), proc.output()[-3000:]
    assert "interrupted. Run the command again" in errors[0] and "--resume" in errors[0]
    assert not (out / "checkpoints").exists()
    again = Cli([*command, "--out", str(out), "--resume"], tmp_path, tmp_path / "again.log",
                {"BERTCTL_CACHE": str(tmp_path / "c")})
    assert again.wait() == 0, again.output()[-3000:]
    assert "no complete checkpoint yet: starting from step 0" in (out / "log.txt").read_text()
    assert json.loads((out / "metrics.json").read_text())["step"] == 90


@pytest.mark.slow
def test_nan_loss_stops_with_advice_and_keeps_the_last_good_checkpoint(tmp_path):
    """An absurd learning rate (fp32) drives the loss to NaN at step 2, after the step-1 checkpoint."""
    out = tmp_path / "run"
    command = _with(PRETRAIN, train__lr="1e6", train__warmup=0, train__save_every=1, train__max_steps=30)
    proc = Cli([*command, "--out", str(out)], tmp_path, tmp_path / "nan.log", {"BERTCTL_CACHE": str(tmp_path / "c")})
    assert proc.wait() == 2, proc.output()[-3000:]
    lines = [line for line in proc.stderr().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.output(), proc.stderr()
    assert re.search(r"loss became (nan|inf|-inf) at step (\d+); stopped without saving it", errors[0]), errors[0]
    assert "lower train.lr" in errors[0] and "--resume" not in errors[0]
    bad_step = int(re.search(r"at step (\d+)", errors[0]).group(1))

    from safetensors.torch import load_file

    from bertctl.runs import Run

    names = [p.name for p in Run(out, "x").checkpoints()]
    assert names == [f"step-{s:07d}" for s in range(1, bad_step)] and names, names  # none at or after the NaN
    assert f"last good checkpoint: {out / 'checkpoints' / names[-1]}" in errors[0]
    weights = load_file(str(out / "checkpoints" / names[-1] / "model.safetensors"))
    assert all(t.isfinite().all() for t in weights.values())
    assert not (out / "metrics.json").exists() and not (out / "model").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(command: list[str], out: Path, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           "-m", "bertctl", *command, "--out", str(out)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_pretrain_under_torchrun_two_processes(tmp_path):
    """`torchrun --nproc_per_node 2 -m bertctl pretrain` (gloo, CPU): one run folder written by
    rank 0, every line printed once, the same loss curve as one process with the same global batch."""
    command = _with(PRETRAIN, train__max_steps=6, train__save_every=3, train__eval_every=6, model__dropout=0)
    out = tmp_path / "two"
    done = _torchrun(command, out, tmp_path, _subprocess_env(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("bertctl pretrain", "Pretraining results", "Wrote"):
        assert done.stdout.count(text) == 1, done.stdout
    assert sum("tokens" in line and "held-out sequences" in line for line in done.stderr.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "log.txt", "loss.png", "metrics.json",
                                                     "metrics.jsonl", "model", "model_config", "recipe.yaml",
                                                     "run.json", "tokenizer"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]
    assert list(tmp_path.glob("runs")) == []  # no other rank made a folder of its own
    assert "2 processes (MULTI_CPU), 4 examples each per batch" in (out / "log.txt").read_text()  # really distributed
    one = Cli([*command, "--out", str(tmp_path / "one")], tmp_path, tmp_path / "one.log",
              {"BERTCTL_CACHE": str(tmp_path / "cache")})
    assert one.wait() == 0, one.output()[-3000:]
    losses = [[r["loss"] for r in _step_log(d) if "loss" in r] for d in (tmp_path / "one", out)]
    assert len(losses[0]) == 6 and losses[0] == pytest.approx(losses[1], abs=2e-4)


@pytest.mark.slow
def test_finetune_under_torchrun_two_processes(tmp_path, tiny):
    command = _with(FINETUNE, data__world__train=64, data__world__dev=16, train__epochs=1) + [f"model.name_or_path={tiny}"]
    out = tmp_path / "two"
    done = _torchrun(command, out, tmp_path, _subprocess_env(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("regression: dev", "Wrote"):
        assert done.stdout.count(text) == 1, done.stdout
    assert done.stderr.count("model: ") == 1, done.stderr  # progress: on stderr, from rank 0
    assert "Traceback" not in done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["n_train"] == 64  # global batch 8: 64 rows = 8 steps, not 4
    assert len((out / "predictions_dev.jsonl").read_text().splitlines()) == 16
    assert "2 processes (MULTI_CPU)" in (out / "log.txt").read_text()


@pytest.mark.slow
def test_eval_glue_under_torchrun_two_processes(tmp_path, tiny):
    """The suite's file handling (task files, predictions, extra MNLI evaluations, the
    submission) is rank 0's; every rank fine-tunes."""
    from .helpers import make_glue

    glue = make_glue(tmp_path / "glue", n=24, tasks=["RTE", "MNLI"])
    command = ["eval-glue", "glue_cpu", "--model", str(tiny), "--glue-dir", str(glue), "--tasks", "RTE,MNLI",
               "train.epochs=1", "train.batch_size=8", "train.precision=fp32"]
    out = tmp_path / "suite"
    done = _torchrun(command, out, tmp_path, _subprocess_env(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("GLUE dev:", "Wrote"):
        assert done.stdout.count(text) == 1, done.stdout
    for text in ("GLUE data:", "MNLI seed 0: fine-tuning"):  # progress: on stderr, from rank 0
        assert done.stderr.count(text) == 1, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"RTE", "MNLI"} and (out / "submission.zip").exists()
    assert (out / "MNLI" / "seed0" / "evals" / "mm" / "metrics.json").exists()  # the mismatched dev set, rank 0's
    assert "2 processes (MULTI_CPU)" in (out / "RTE" / "seed0" / "log.txt").read_text()


@pytest.mark.slow
def test_torchrun_default_run_folder_is_rank_0s_and_an_error_prints_once(tmp_path):
    """No --out under torchrun, ranks starting 1.5 s apart: every rank gets rank 0's
    runs/<command>-<time>; an error every rank raises is printed once (rank 0's)."""
    from .helpers import torchrun

    done = torchrun("finetune", "--task", "sentiment", "model.name_or_path=/nonexistent/model",
                    env=_subprocess_env(tmp_path / "cache"), job=Path(__file__).with_name("cli_job.py"), cwd=tmp_path)
    assert done.returncode != 0 and "exitcode  : 2" in done.stderr, done.stderr[-3000:]
    folders = sorted(re.findall(r"rank (\d) run folder: (\S+?-\d{8}-\d{6}\S*?)(?=rank|\s|$)", done.stdout))
    assert [r for r, _ in folders] == ["0", "1"] and folders[0][1] == folders[1][1], done.stdout
    # the run failed at start: rank 0 removed the folder it had made (and no other rank made one)
    assert not (tmp_path / "runs" / Path(folders[0][1]).name).exists()
    assert not any(p.is_dir() for p in (tmp_path / "runs").glob("*")), list((tmp_path / "runs").iterdir())
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: model path /nonexistent/model does not exist. check the path"], done.stderr[-3000:]
