"""The layers hold (models <- repositories <- services <- edges), checked by import-linter's `lint-imports` with the
contracts in pyproject.toml, and the contracts do catch a wrong-way import (docs/architecture.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "optiinfra"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: install the dev extra (pip install -e '.[dev]')"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_layer_contracts_hold() -> None:
    result = _lint_imports(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout), result.stdout


def test_a_wrong_way_import_breaks_the_contracts(tmp_path: Path) -> None:
    """A copy of the package with two new wrong-way imports: a service importing the HTTP package, and an edge
    importing a repository next to one of the listed exceptions (which must not hide it)."""
    shutil.copytree(PACKAGE, tmp_path / "optiinfra", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    service = tmp_path / "optiinfra" / "customers" / "service.py"
    service.write_text(service.read_text() + "\nfrom optiinfra.api import deps as _wrong_way  # noqa: E402\n")
    dashboard = tmp_path / "optiinfra" / "dashboard" / "routes.py"
    dashboard.write_text(dashboard.read_text() + "\nfrom optiinfra.agents import repository as _wrong  # noqa: E402\n")

    result = _lint_imports(tmp_path, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "optiinfra.customers.service -> optiinfra.api.deps" in result.stdout
    assert "optiinfra.dashboard.routes -> optiinfra.agents.repository" in result.stdout
    assert re.search(r"Contracts: \d+ kept, 2 broken", result.stdout), result.stdout


# Where `Principal.operator()` may stand: where a caller is resolved (auth: the operator's key is the operator) and
# the edges that act as the operator by design. Everything else receives the caller's principal from its caller.
OPERATOR_ALLOWED = {
    "auth/principal.py",  # defines it
    "auth/service.py",  # the operator key authenticates as the operator
    "demo/driver.py",  # the demo sets up its customers as the operator would (an edge)
    "quality/backtest.py",  # an offline replay into a throwaway database, as its operator (an edge)
}
EDGE_PACKAGES = ("api/", "cli/", "dashboard/")


def test_no_service_stands_in_for_the_caller_with_the_operator() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in OPERATOR_ALLOWED or relative.startswith(EDGE_PACKAGES) or relative.endswith("routes.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "Principal.operator()" in line:
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "pass the caller's principal instead:\n" + "\n".join(offenders)


def test_the_command_line_builds_no_queries() -> None:
    """CLI commands call services (and `db.queries` for id prefixes); the SQL lives in repositories."""
    query_calls = re.compile(r"(?<![.\w])(select|insert|update|delete|text)\(|session\.(execute|scalars?|get|query)\(")
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted((PACKAGE / "cli").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if query_calls.search(line)
    ]
    assert not offenders, "move these queries into a repository, behind a service:\n" + "\n".join(offenders)
