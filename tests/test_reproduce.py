"""`bertctl reproduce`: the smoke profile end to end (every experiment, real runs on the
World, tiny), --list, --only, a rerun that reuses every finished step and renders again,
bad input, and the report opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from bertctl.reproduce.experiments import EXPERIMENTS

from .conftest import SHARED_DATA

VERDICTS = {"reproduced", "partly", "not reproduced"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, cli) -> dict:
    """One smoke run for the module (the suite's only one: about 3 minutes on 2 cores)."""
    out = tmp_path_factory.mktemp("reproduce") / "smoke"
    start = time.perf_counter()
    code, stdout, err = cli("reproduce", "--profile", "smoke", "--out", out)
    seconds = time.perf_counter() - start
    print(f"reproduce --profile smoke: {seconds:.0f} s")
    return {"out": out, "code": code, "stdout": stdout, "err": err, "seconds": seconds}


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_smoke_profile_end_to_end(smoke):
    out = smoke["out"]
    assert smoke["code"] == 0, smoke["err"][-3000:]
    results = _results(out)
    assert [e["name"] for e in results["experiments"]] == [e.name for e in EXPERIMENTS]
    for e in results["experiments"]:  # every experiment measured from real runs, graded by its criterion
        if e["verdict"] == "not measured":  # only one that reads real data, on a machine without it
            assert not SHARED_DATA.is_dir() and any("is absent" in c["skipped"] for c in e["commands"]), e
            continue
        assert e["verdict"] in VERDICTS, (e["name"], e["verdict"], e["why"])
        assert e["rows"] and e["figures"] and e["commands"], e["name"]
        assert all(Path(f["path"]).is_file() for f in e["figures"]), e["name"]
    ran = {k: v for k, v in results["steps"].items() if v["status"] != "skipped"}
    assert ran and all(v["status"] == "finished" for v in ran.values()), ran
    from bertctl.runs import read_metrics, read_record

    for name in ran:  # every step's own run folder below the report, finished
        assert read_record(out / "runs" / name).status == "finished", name
    assert read_record(out).status == "finished" and read_record(out).command == "reproduce"
    assert read_metrics(out)["main_metric"] == "reproduced"
    # skipped steps (real data, not in the smoke profile) say why in the report
    assert all(v["skipped"] for k, v in results["steps"].items() if v["status"] == "skipped")
    page = (out / "report.html").read_text()
    assert "<script" not in page and not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert page.count('src="data:image/png;base64,') == sum(len(e["figures"]) for e in results["experiments"])
    for e in results["experiments"]:  # the table of contents and the sections
        assert f'href="#{e["name"]}"' in page and f'id="{e["name"]}"' in page
        assert e["commands"][0]["command"] in (out / "report.md").read_text().replace("\\|", "|")
    assert "The lecture, reproduced" in smoke["stdout"]


def test_rerun_reuses_finished_steps_and_renders_again(smoke, cli):
    out = smoke["out"]
    before = _results(out)
    (out / "report.html").unlink()
    start = time.perf_counter()
    code, _, err = cli("reproduce", "--profile", "smoke", "--out", out)
    assert code == 0, err[-2000:]
    after = _results(out)
    assert after["ran"] == 0 and after["reused"] == before["ran"] + before["reused"]
    assert (out / "report.html").is_file()
    assert [e["verdict"] for e in after["experiments"]] == [e["verdict"] for e in before["experiments"]]
    assert time.perf_counter() - start < smoke["seconds"]


def test_report_opens_in_a_real_browser(smoke):
    """Headless Chromium: no console errors, every image loaded, every table-of-contents
    link lands on its section; the screenshot is kept in the run folder."""
    from .browser import check, chromium

    if chromium() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no Chromium: .ci/run installs Debian's chromium package")
        pytest.skip("no Chromium here (apt-get install -y chromium); CI runs this test")
    assert smoke["code"] == 0, smoke["err"][-2000:]
    out = smoke["out"]
    shot = out / "report-screenshot.png"
    seen = check(out / "report.html", screenshot=shot)
    assert seen["errors"] == [] and seen["console"] == [], seen
    assert seen["images"] and all(i["complete"] and i["width"] > 0 for i in seen["images"]), seen["images"]
    assert len(seen["links"]) == len(_results(out)["experiments"]) + 1
    assert all(link["found"] for link in seen["links"]), seen["links"]
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_only_renders_the_chosen_experiments(smoke, cli):
    out = smoke["out"]
    code, _, err = cli("reproduce", "--profile", "smoke", "--only", "apple,mlm", "--out", out)
    assert code == 0, err[-2000:]
    results = _results(out)
    assert [e["name"] for e in results["experiments"]] == ["mlm", "apple"]
    assert set(results["steps"]) == {"world", "world_mask_only", "english", "apple"}
    assert results["ran"] == 0


def test_a_changed_step_runs_again(smoke, cli, tmp_path):
    """A finished step whose command line changed is moved aside and run again."""
    out = smoke["out"]
    code, _, err = cli("reproduce", "reproduce", "--profile", "smoke", "--only", "apple", "--out", out,
                       "steps.apple.smoke=similarity.layer=-2")
    assert code == 0, err[-2000:]
    results = _results(out)
    assert results["ran"] == 1 and results["steps"]["apple"]["status"] == "finished"
    assert (out / "runs" / "apple.old-1").is_dir()


def test_a_step_reading_a_changed_step_runs_again(smoke, cli):
    """xling_xx scores xling_en's model: when xling_en runs again (its line changed), the
    reused xling_xx would describe the old model, so it runs again too; the rest is reused."""
    out = smoke["out"]
    code, _, err = cli("reproduce", "reproduce", "--profile", "smoke", "--only", "zero_shot", "--out", out,
                       "steps.xling_en.smoke=data.world.train=240 data.world.dev=120 model.max_length=64 "
                       "train.epochs=1 train.batch_size=16 train.lr=0.0005 train.precision=fp32")
    assert code == 0, err[-2000:]
    steps = _results(out)["steps"]
    assert steps["xling_en"]["status"] == steps["xling_xx"]["status"] == "finished"
    assert steps["bilingual_large"]["status"] == "reused"
    assert (out / "runs" / "xling_xx.old-1").is_dir()


def test_list_names_every_experiment(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("reproduce", "--list", "--profile", "smoke")
    assert code == 0, err
    for e in EXPERIMENTS:
        assert e.name in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, message", [
    (["--only", "mlm,nosuch"], r"--only: no experiment named nosuch\. pick from mlm, "),
    (["--profile", "bogus"], r"profile: input should be 'smoke', 'cpu' or 'gpu', got 'bogus'"),
    (["reproduce", "steps.world.run=pretrain {run:nosuch}"], r"reads \{run:nosuch\}, which is no step"),
    (["reproduce", "experiments.mlm.criterion={}"], r"experiments\.mlm\.criterion has no reproduced"),
    (["--out", "runs/pretrain-1", "--only", "apple"], r"is a `bertctl pretrain` run folder, not a reproduce one"),
])
def test_bad_input_is_one_error_line(cli, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    if "--out" in argv:  # another command's run folder
        (tmp_path / "runs" / "pretrain-1").mkdir(parents=True)
        (tmp_path / "runs" / "pretrain-1" / "run.json").write_text('{"command": "pretrain", "status": "finished"}')
    code, out, err = cli("reproduce", *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert re.search(message, " ".join(err.split())), err
    assert "Traceback" not in out + err




def test_a_step_still_running_elsewhere_is_left_alone(cli, tmp_path):
    """A step folder another process holds (a reproduce killed while its steps ran on) is
    neither reused nor moved aside: one error line."""
    import subprocess
    import sys

    folder = tmp_path / "rep" / "runs" / "apple"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from bertctl.runs import Run; "
                               f"Run.create({str(folder)!r}, 'probe-similarity'); print('held', flush=True); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = cli("reproduce", "--profile", "smoke", "--only", "apple", "--out", tmp_path / "rep")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert code == 2 and "step apple is still running in another process" in " ".join(err.split()), err
    assert folder.is_dir() and not folder.with_name("apple.old-1").exists()


def test_a_failed_step_is_reported_and_the_page_still_rendered(cli, tmp_path):
    out = tmp_path / "rep"
    code, _, err = cli("reproduce", "reproduce", "--profile", "smoke", "--only", "apple", "--out", out,
                       "steps.apple.smoke=similarity.layer=99")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "1 step(s) failed: apple" in lines[0], err
    results = _results(out)
    assert results["steps"]["apple"]["status"] == "failed" and results["steps"]["apple"]["error"]
    assert results["experiments"][0]["verdict"] == "not measured"
    assert "not measured" in (out / "report.html").read_text()
    assert (out / "logs" / "apple.txt").is_file()


def test_zero_shot_section_scores_qa_on_xquad_and_drcd(smoke, cli, shared_data, tmp_path):
    """Experiment 10's QA rows, read the way the cpu profile makes them: a QA run (here the
    smoke's tiny World one) scored with --eval-only on XQuAD and DRCD files in one call."""
    from bertctl.reproduce.experiments import BY_NAME

    runs = smoke["out"] / "runs"
    files = [shared_data / "xquad" / "xquad.en.json", shared_data / "xquad" / "xquad.zh.json",
             shared_data / "drcd" / "DRCD_dev.json"]
    qa_zero = tmp_path / "qa_zero"
    code, _, err = cli("finetune", "--eval-only", runs / "four_qa", f"data.dev=[{','.join(map(str, files))}]",
                       "data.max_eval_samples=4", "qa.doc_stride=8", "--out", qa_zero, "--quiet")
    assert code == 0, err[-2000:]
    outcome = BY_NAME["zero_shot"].measure(
        {"xling_en": runs / "xling_en", "xling_xx": runs / "xling_xx", "four_squad": runs / "four_qa",
         "qa_zero": qa_zero}, {"reproduced": 0.5, "partly": 0.0}, tmp_path)
    qa = {r["scored on"]: r for r in outcome.rows if r["task"].startswith("QA")}
    assert list(qa) == ["SQuAD held-out articles (in-language)", "en (xquad.en)", "zh (xquad.zh, zero-shot)",
                        "zh-Hant (DRCD_dev, zero-shot)"]
    assert qa["en (xquad.en)"]["mBERT (published)"] == 85.0 and qa["zh (xquad.zh, zero-shot)"]["mBERT (published)"] == 58.9
    assert all(0 <= r["F1"] <= 100 for r in qa.values())
    assert qa["zh-Hant (DRCD_dev, zero-shot)"]["[UNK] share"] > qa["en (xquad.en)"]["[UNK] share"]
    assert [c for c, _ in outcome.figures][-1].startswith("QA fine-tuned on English SQuAD")
    assert (tmp_path / "zero_shot_qa.png").is_file()
