"""The CLI shell: fast help, one error line with exit 2, --debug, recipes subcommands."""

from __future__ import annotations

import subprocess
import sys

from bertctl.recipe import builtin_recipes

HEAVY = ("torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "sklearn")


def _imports_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return {m.split(".")[0] for m in out}


def test_help_imports_no_heavy_library():
    for argv in (["--help"], ["pretrain", "--help"], ["finetune", "--help"], ["probe", "--help"],
                 ["prompt", "--help"], ["eval-glue", "--help"], ["recipes", "list"], ["predict", "--help"],
                 ["push", "--help"], ["runs", "--help"], ["runs", "list", "--help"], ["reproduce", "--help"]):
        mods = _imports_after(
            "import sys; from bertctl.cli import app\n"
            f"try:\n    app({argv!r})\nexcept SystemExit:\n    pass")
        assert not (mods & set(HEAVY)), f"bertctl {' '.join(argv)} imported {sorted(mods & set(HEAVY))}"


def test_help_loads_only_the_shell():
    """`bertctl --help` is fast because it loads the command shell only: no library module
    of a command, no recipe schema (pydantic), no plotting. Its time is measured in
    benchmarks/startup.py, not here (a wall-clock bound in a unit test flakes on a busy box)."""
    code = "import sys; from bertctl.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    out = subprocess.run([sys.executable, "-c", code + "\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    ours = {m for m in out if m.startswith("bertctl.")}
    shell = {"bertctl.cli", "bertctl.console", "bertctl.errors", "bertctl.distributed", "bertctl.provenance"}
    assert ours - shell <= {m for m in ours if m.startswith("bertctl.commands")}, sorted(ours - shell)
    assert not {m.split(".")[0] for m in out} & {"pydantic", "matplotlib", "numpy", "yaml", *HEAVY}


def test_error_is_one_line_exit_2(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("command: pretrain\nmodel: {hiden: 3}\n")
    code, out, err = cli("pretrain", str(bad))
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err + out


def test_debug_shows_the_exception(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("command: pretrain\nmodel: {hiden: 3}\n")
    res = subprocess.run([sys.executable, "-m", "bertctl", "--debug", "pretrain", str(bad)],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" in res.stderr and "BertctlError" in res.stderr


def test_recipes_list_show_copy_validate(cli, tmp_path):
    code, out, _ = cli("recipes", "list")
    assert code == 0
    for name in builtin_recipes():
        assert name in out
    name = next(iter(builtin_recipes()))
    code, out, _ = cli("recipes", "show", name)
    assert code == 0 and out.startswith("# bertctl")
    code, out, _ = cli("recipes", "copy", name, str(tmp_path))
    assert code == 0 and (tmp_path / f"{name}.yaml").exists()
    code, _, err = cli("recipes", "copy", name, str(tmp_path))
    assert code == 2 and "already exists" in err
    code, out, _ = cli("recipes", "validate", str(tmp_path / f"{name}.yaml"))
    assert code == 0 and "ok" in out


def test_validate_reports_missing_command_key(cli, tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("train: {lr: 1}\n")
    code, _, err = cli("recipes", "validate", str(p))
    assert code == 2 and "command:" in err
