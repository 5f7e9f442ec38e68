"""The fine-tuning task kinds are one table (bertctl.finetune.kinds): a new kind is one
Task subclass plus one registry entry, and every command then knows it."""

from __future__ import annotations

import json



def test_the_table_is_complete_and_names_are_unique():
    from bertctl.finetune.base import Task
    from bertctl.finetune.kinds import ALIASES, KINDS

    assert list(KINDS) == ["cls", "tag", "nli", "qa", "regression", "dna"]
    names = [n for t in KINDS.values() for n in (t.kind, *t.aliases)]
    assert len(names) == len(set(names)) == len(ALIASES)
    for kind, task in KINDS.items():
        assert issubclass(task, Task) and task.kind == kind
        assert set(task.required) | set(task.optional) <= set(task.columns), kind
        assert task.gold in task.required and task.pair in ("always", "optional", "mapped", "never"), kind
        assert set(task.inputs) <= set(task.columns), kind
        # the hooks a kind must fill in are filled in
        assert task.world_rows.__func__ is not Task.world_rows.__func__ and task.encode is not Task.encode, kind


def test_a_new_kind_is_one_class_and_one_registry_line(tmp_path, tiny, cli, monkeypatch):  # noqa: F811
    """A kind nothing else in the package has heard of (topic classification of World
    stories) trains, evaluates, predicts and validates its name, from its class alone."""
    from bertctl.finetune import kinds
    from bertctl.finetune.cls import ClsTask

    class TopicTask(ClsTask):
        kind = "topic"
        aliases = ("topics",)

        @classmethod
        def world_rows(cls, world, n, settings, task):
            return world.topic(n)

    monkeypatch.setitem(kinds.KINDS, "topic", TopicTask)  # the registry line
    for name in ("topic", "topics"):
        monkeypatch.setitem(kinds.ALIASES, name, "topic")

    out = tmp_path / "run"
    code, _, err = cli("finetune", "--task", "topics", "--model", tiny, "--out", out, "data.world.train=48",
                       "data.world.dev=16", "train.epochs=1", "train.batch_size=16", "model.max_length=32")
    assert code == 0, err
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["kind"] == "topic" and summary["task"] == "topics" and 0 <= summary["dev"]["accuracy"] <= 1
    labels = json.loads((out / "labels.json").read_text())
    assert len(labels) > 1

    (tmp_path / "in.txt").write_text("the river rose over the old bridge\n", encoding="utf-8")
    code, stdout, err = cli("predict", out, tmp_path / "in.txt")
    assert code == 0, err
    record = json.loads(stdout.splitlines()[0])
    assert record["label"] in labels and set(record["probabilities"]) == set(labels)

    code, _, err = cli("finetune", "--task", "nosuchkind", "--model", tiny)
    assert code == 2 and "topics" in err  # the error's list of names includes the new kind
