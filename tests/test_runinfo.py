"""`bertctl runs list|show|compare` on real run folders (a tiny finetune and pretrain),
plus an interrupted and a failed one."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from bertctl.runs import Run

from .helpers import recipe, PRETRAIN

pytestmark = pytest.mark.slow


def _old(path, seconds=3600):
    t = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (t, t))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, tiny):
    from bertctl.pretraining.config import PretrainRecipe
    from bertctl.pretraining.run import pretrain
    from bertctl.recipe import load
    from bertctl.finetune.run import finetune

    root = tmp_path_factory.mktemp("runs-root") / "runs"
    for name, lr in (("finetune-20250101-000000", 1e-3), ("finetune-20250102-000000", 3e-3)):
        finetune(recipe(tiny, "sentiment", train={"lr": lr, "epochs": 2}), Run.create(root / name, "finetune"),
                 quiet=True)
    cache = root.parent / "cache"
    r, _ = load(PretrainRecipe, None, [*PRETRAIN, f"data.cache_dir={cache}"], default="pretrain")
    pretrain(r, Run.create(root / "pretrain-20250103-000000", "pretrain"))
    broken = root / "finetune-20250104-000000"  # killed after a checkpoint: resumable
    shutil.copytree(root / "finetune-20250101-000000", broken)
    (broken / "metrics.json").unlink()
    failed = root / "pretrain-20250105-000000"  # stopped on bad input: recipe and log only
    failed.mkdir()
    (failed / "recipe.yaml").write_text("command: pretrain\n")
    (failed / "log.txt").write_text("x\n")
    (root / "not-a-run").mkdir()
    _old(root)
    return root


def test_list_shows_every_run_with_status_metric_and_steps(cli, runs_dir):
    from bertctl.runinfo import find_runs, summary

    rows = {p.name: summary(p) for p in find_runs(runs_dir)}
    assert "not-a-run" not in rows and len(rows) == 5
    ft = rows["finetune-20250101-000000"]
    metrics = json.loads((runs_dir / "finetune-20250101-000000" / "metrics.json").read_text())
    assert ft["command"] == "finetune" and ft["task"] == "sentiment" and ft["status"] == "finished"
    assert ft["metric"] == f"dev accuracy {metrics['dev']['accuracy']:.4g}" and ft["steps"] == metrics["steps"]
    assert ft["model"] == str(metrics["model"]).split(" (")[0] and ft["age"].endswith("h")
    pt = rows["pretrain-20250103-000000"]
    assert pt["command"] == "pretrain" and pt["task"] == "MLM + NSP" and pt["steps"] == 6
    assert pt["metric"].startswith("mlm_accuracy")
    assert rows["finetune-20250104-000000"]["status"] == "interrupted"
    assert rows["pretrain-20250105-000000"]["status"] == "failed"
    code, out, err = cli("runs", "list", runs_dir)
    assert code == 0, err
    for word in ("finished", "interrupted", "failed", "sentiment", "dev accuracy"):
        assert word in out


def test_every_training_run_folder_has_the_core_files(runs_dir):
    for name in ("finetune-20250101-000000", "pretrain-20250103-000000"):
        for core in ("recipe.yaml", "metrics.json", "metrics.jsonl", "log.txt", "model/README.md"):
            assert (runs_dir / name / core).is_file(), (name, core)


def test_show_prints_recipe_metrics_and_files(cli, runs_dir):
    code, out, err = cli("runs", "show", runs_dir / "finetune-20250101-000000")
    assert code == 0, err
    assert "command: finetune" in out and "dev.accuracy" in out and "model/" in out and "predictions_dev.jsonl" in out


def test_compare_puts_metrics_side_by_side_and_draws_the_curves(cli, runs_dir, tmp_path):
    from bertctl.runinfo import compare

    a, b = runs_dir / "finetune-20250101-000000", runs_dir / "finetune-20250102-000000"
    result = compare([a, b], tmp_path / "c.png")
    row = next(r for r in result["rows"] if r["metric"] == "dev.accuracy")
    assert row[a.name] == json.loads((a / "metrics.json").read_text())["dev"]["accuracy"]
    assert row[b.name] == json.loads((b / "metrics.json").read_text())["dev"]["accuracy"]
    assert (tmp_path / "c.png").stat().st_size > 10_000
    code, out, err = cli("runs", "compare", a, b, runs_dir / "pretrain-20250103-000000", "--png", tmp_path / "d.png")
    assert code == 0, err
    assert "dev.accuracy" in out and "mlm_accuracy" in out and (tmp_path / "d.png").exists()


def test_runs_errors_are_one_line(cli, runs_dir, tmp_path):
    code, _, err = cli("runs", "list", tmp_path / "nope")
    assert code == 2 and "is not a folder" in err
    code, _, err = cli("runs", "show", runs_dir / "not-a-run")
    assert code == 2 and "not a run folder" in err
    code, _, err = cli("runs", "compare", runs_dir / "finetune-20250101-000000")
    assert code == 2 and "at least two" in err


def test_real_runs_write_the_record_and_the_one_metrics_layout(runs_dir):
    from bertctl.runs import read_metrics, read_record

    ft, pt = runs_dir / "finetune-20250101-000000", runs_dir / "pretrain-20250103-000000"
    record = read_record(ft)
    assert (record.schema, record.command, record.task, record.status) == (1, "finetune", "sentiment", "finished")
    assert record.kind and record.model and not record.inferred
    m = read_metrics(ft)
    assert (m["schema"], m["command"], m["scores"]["dev"]) == (1, "finetune", m["dev"])
    assert m["main_value"] == m["dev"][m["main_metric"]] and m["steps"] > 0 and "train_seconds" in m["timings"]
    record, m = read_record(pt), read_metrics(pt)
    assert (record.command, record.task) == ("pretrain", "MLM + NSP")
    assert (m["command"], m["main_metric"], m["steps"]) == ("pretrain", "mlm_accuracy", 6)
    assert m["main_value"] == m["mlm_accuracy"] and "tokens_per_s" in m["timings"]
    assert "metrics.json is gone" in " ".join(read_record(runs_dir / "finetune-20250104-000000").notes)
