"""Run folders: never overwritten, atomic files, disk-full is a clear error."""

from __future__ import annotations

import errno

import pytest

from bertctl.errors import BertctlError
from bertctl.runs import Run, atomic_write_text


def test_default_folder_and_no_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = Run.create(None, "pretrain")
    b = Run.create(None, "pretrain")
    assert a.path != b.path and a.path.parent.name == "runs" and a.path.name.startswith("pretrain-")
    (a.path / "keep.txt").write_text("precious")
    with pytest.raises(BertctlError, match="already exists.*--resume"):
        Run.create(a.path, "pretrain")
    assert (a.path / "keep.txt").read_text() == "precious"


def test_resume_needs_existing_folder(tmp_path):
    with pytest.raises(BertctlError, match="does not exist"):
        Run.create(tmp_path / "nope", "pretrain", resume=True)
    with pytest.raises(BertctlError, match="needs the run folder"):
        Run.create(None, "pretrain", resume=True)


def test_disk_full_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    import builtins

    real_open = builtins.open

    def full(path, mode="r", *a, **k):
        if "w" in mode and ".tmp-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(BertctlError, match="disk full.*--resume"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
