"""The command line starts without importing the heavy layers: commands are loaded when they run (issue 17)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from optiinfra.cli import COMMANDS, app

HEAVY = ("sqlalchemy", "fastapi", "scipy", "alembic", "numpy", "uvicorn", "procrastinate")


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_help_imports_none_of_the_heavy_layers() -> None:
    loaded = _modules_after(
        "from typer.testing import CliRunner\nfrom optiinfra.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\nassert result.exit_code == 0, result.output"
    )
    assert not {name for name in loaded if name.split(".")[0] in HEAVY}


def test_db_help_lists_its_commands_without_the_database_layer() -> None:
    loaded = _modules_after(
        "from typer.testing import CliRunner\nfrom optiinfra.cli import app\n"
        "result = CliRunner().invoke(app, ['db', '--help'])\n"
        "assert result.exit_code == 0 and 'upgrade' in result.output, result.output"
    )
    assert not {name for name in loaded if name.split(".")[0] in HEAVY}


def test_the_python_client_imports_no_database_or_server_layer() -> None:
    # The client is what applications embed: it must not drag SQLAlchemy, FastAPI or SciPy into them (issue 17).
    loaded = _modules_after("import optiinfra.client\nimport optiinfra.enums")
    assert not {name for name in loaded if name.split(".")[0] in HEAVY}


def test_the_top_help_lists_every_command_with_its_own_help_line() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name, spec in COMMANDS.items():
        assert name in result.output
        assert spec.help[:40] in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_entry_loads_its_command_and_says_what_the_command_says(name: str) -> None:
    """The table's help line is the first line of the command's own help, so the two cannot drift apart."""
    command = COMMANDS[name].load(name)
    assert command.name == name
    own = " ".join((command.help or "").split())
    assert own.startswith(" ".join(COMMANDS[name].help.split())), (name, own)


def test_an_unknown_command_is_refused_with_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_the_readme_lists_every_command_and_sub_command() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `optiinfra ")]
    missing = []
    for name, spec in COMMANDS.items():
        subs = sorted(getattr(spec.load(name), "commands", None) or {})
        for sub in subs or [None]:
            if sub is None:
                pattern = rf"^\| `optiinfra {name}[ `]"
            else:
                pattern = rf"^\| `optiinfra {name} (?:[\w-]+\\\|)*{sub}(?:\\\||[ `])"
            if not any(re.match(pattern, row) for row in rows):
                missing.append(f"{name} {sub or ''}".strip())
    assert not missing, f"README's command table lacks: {missing}"
