"""`optiinfra db ...` end to end against a fresh database per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from optiinfra.cli import app
from optiinfra.db import migrations
from optiinfra.db.migrations import QUEUE_PREFIX
from optiinfra.models import QUALITY_PARTITION_PREFIX, Base
from tests.conftest import url_for_env

runner = CliRunner()


def run(url: URL | str, *args: str, input: str | None = None):
    env_url = url if isinstance(url, str) else url_for_env(url)
    return runner.invoke(app, ["db", *args], env={"OPTIINFRA_DATABASE_URL": env_url}, input=input)


def tables(url: URL) -> set[str]:
    engine = create_engine(url)
    try:
        # The job queue's own tables (procrastinate, migration 008) are not OptiInfra's data model; quality_metrics'
        # partitions (016) are parts of one table.
        return {
            name
            for name in inspect(engine).get_table_names()
            if not name.startswith((QUEUE_PREFIX, QUALITY_PARTITION_PREFIX))
        }
    finally:
        engine.dispose()


def test_upgrade_then_current_reports_head(database_url: URL) -> None:
    result = run(database_url, "upgrade")
    assert result.exit_code == 0, result.output
    assert migrations.head_revision() in result.output
    current = run(database_url, "current")
    assert current.exit_code == 0
    assert f"{migrations.head_revision()} (head)" in current.output
    assert tables(database_url) == set(Base.metadata.tables) | {"alembic_version"}


def test_upgrade_twice_says_nothing_to_do(database_url: URL) -> None:
    run(database_url, "upgrade")
    result = run(database_url, "upgrade")
    assert result.exit_code == 0
    assert "nothing to do" in result.output


def test_upgrade_to_a_named_revision_stops_there(database_url: URL) -> None:
    result = run(database_url, "upgrade", "002_agent_state_tables")
    assert result.exit_code == 0, result.output
    assert "agent_states" in tables(database_url)
    assert "workflow_executions" not in tables(database_url)


def test_check_is_clean_after_upgrade(database_url: URL) -> None:
    run(database_url, "upgrade")
    result = run(database_url, "check")
    assert result.exit_code == 0, result.output
    assert "No differences" in result.output


def test_check_lists_differences_and_fails_when_schema_is_behind(database_url: URL) -> None:
    run(database_url, "upgrade", "004_resource_schema")
    result = run(database_url, "check")
    assert result.exit_code == 1
    assert "add_table" in result.output
    assert "quality_metrics" in result.output
    assert "optiinfra db upgrade" in result.output


def test_check_fails_when_the_database_drifts_from_the_models(database_url: URL) -> None:
    run(database_url, "upgrade")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX idx_agent_status"))
        connection.execute(text("ALTER TABLE customers ADD COLUMN nickname text"))
    engine.dispose()
    result = run(database_url, "check")
    assert result.exit_code == 1
    assert "idx_agent_status" in result.output
    assert "customers.nickname" in result.output


def test_downgrade_base_leaves_only_the_version_table(database_url: URL) -> None:
    run(database_url, "upgrade")
    result = run(database_url, "downgrade", "base", "--yes")
    assert result.exit_code == 0, result.output
    assert tables(database_url) == {"alembic_version"}


def test_downgrade_asks_first_and_a_no_changes_nothing(database_url: URL) -> None:
    run(database_url, "upgrade")
    result = run(database_url, "downgrade", "base", input="n\n")
    assert result.exit_code == 1
    assert "removes every OptiInfra table" in result.output
    assert "Nothing changed" in result.output
    assert tables(database_url) == set(Base.metadata.tables) | {"alembic_version"}
    result = run(database_url, "downgrade", "base", input="y\n")
    assert result.exit_code == 0, result.output
    assert tables(database_url) == {"alembic_version"}


def test_downgrade_requires_a_revision_and_refuses_unknown_ones(database_url: URL) -> None:
    run(database_url, "upgrade")
    assert run(database_url, "downgrade").exit_code != 0
    result = run(database_url, "downgrade", "007_nonexistent")
    assert result.exit_code == 1
    assert "Unknown revision" in result.output
    assert "Traceback" not in result.output
    assert tables(database_url) == set(Base.metadata.tables) | {"alembic_version"}


def test_seed_refuses_a_schema_behind_head_and_names_the_fix(database_url: URL) -> None:
    run(database_url, "upgrade", "003_workflow_history")
    result = run(database_url, "seed")
    assert result.exit_code == 1
    assert "behind" in result.output
    assert "optiinfra db upgrade" in result.output
    assert "Traceback" not in result.output


def test_seed_refuses_an_empty_database(database_url: URL) -> None:
    result = run(database_url, "seed")
    assert result.exit_code == 1
    assert "no OptiInfra schema" in result.output
    assert "optiinfra db upgrade" in result.output


def test_seed_twice_reports_nothing_added_the_second_time(database_url: URL) -> None:
    run(database_url, "upgrade")
    first = run(database_url, "seed")
    assert first.exit_code == 0, first.output
    second = run(database_url, "seed")
    assert second.exit_code == 0, second.output
    assert "nothing changed" in second.output


def test_reset_asks_and_keeps_data_when_refused(database_url: URL) -> None:
    run(database_url, "upgrade")
    run(database_url, "seed")
    result = run(database_url, "reset", input="n\n")
    assert result.exit_code == 1
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM customers")).scalar_one() == 3
    engine.dispose()


def test_reset_yes_empties_every_table_and_keeps_schema_at_head(database_url: URL) -> None:
    run(database_url, "upgrade")
    run(database_url, "seed")
    result = run(database_url, "reset", "--yes")
    assert result.exit_code == 0, result.output
    engine = create_engine(database_url)
    with engine.connect() as connection:
        for table in tables(database_url) - {"alembic_version"}:
            assert connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one() == 0, table
    assert migrations.current_revision(engine) == migrations.head_revision()
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://optiinfra:hunter2secret@127.0.0.1:1/optiinfra", "Cannot connect to PostgreSQL"),
        ("mysql://root@localhost/optiinfra", "must point to PostgreSQL"),
        ("not a url at all", "not a valid database URL"),
        ("postgresql+asyncpg://u@localhost/x", "uses psycopg 3"),
    ],
)
def test_bad_database_urls_give_one_clear_error_without_the_password(url: str, expected: str) -> None:
    result = run(url, "current")
    assert result.exit_code == 1
    assert expected in result.output
    assert "Fix:" in result.output
    assert "Traceback" not in result.output
    assert "hunter2secret" not in result.output


def test_missing_database_names_the_database_and_the_fix(database_url: URL) -> None:
    missing = database_url.set(database="optiinfra_does_not_exist")
    result = run(missing, "current")
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert "createdb optiinfra_does_not_exist" in result.output


def test_installed_command_migrates_from_any_directory(database_url: URL, tmp_path: Path) -> None:
    env = {**os.environ, "OPTIINFRA_DATABASE_URL": url_for_env(database_url)}
    result = subprocess.run(
        [sys.executable, "-m", "optiinfra", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert migrations.head_revision() in result.stdout
