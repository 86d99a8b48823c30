"""`optiinfra db backup` and `optiinfra db restore`: a round trip of the demo data, checked row for row."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from optiinfra.cli import app
from tests.conftest import url_for_env
from tests.db.test_seed import fingerprint

runner = CliRunner()


def cli(url: URL, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["db", *args], env={"OPTIINFRA_DATABASE_URL": url_for_env(url)}, input=input)


def test_backup_and_restore_round_trip_row_for_row(database_url: URL, tmp_path: Path) -> None:
    assert cli(database_url, "upgrade").exit_code == 0
    assert cli(database_url, "seed").exit_code == 0
    engine = create_engine(database_url)
    before = fingerprint(engine)
    file = tmp_path / "optiinfra.dump"
    made = cli(database_url, "backup", str(file))
    assert made.exit_code == 0, made.output
    assert file.stat().st_size > 10_000
    assert not file.with_name(file.name + ".partial").exists()

    with engine.begin() as connection:  # a bad day: rows deleted and changed
        connection.execute(text("DELETE FROM customers WHERE email LIKE 'founders@%'"))
        connection.execute(text("UPDATE agents SET version = 'broken'"))
    assert fingerprint(engine) != before

    refused = cli(database_url, "restore", str(file), input="n\n")
    assert refused.exit_code == 1
    restored = cli(database_url, "restore", str(file), "--yes")
    assert restored.exit_code == 0, restored.output
    assert fingerprint(engine) == before
    assert cli(database_url, "check").exit_code == 0
    engine.dispose()


def test_restore_of_a_file_that_is_not_a_backup_changes_nothing(database_url: URL, tmp_path: Path) -> None:
    cli(database_url, "upgrade")
    cli(database_url, "seed")
    engine = create_engine(database_url)
    before = fingerprint(engine)
    junk = tmp_path / "junk.dump"
    junk.write_bytes(b"not a pg_dump archive")
    result = cli(database_url, "restore", str(junk), "--yes")
    assert result.exit_code == 1
    assert "pg_restore failed" in result.output
    assert "Traceback" not in result.output
    assert fingerprint(engine) == before
    engine.dispose()


def test_backup_names_a_missing_server_clearly(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["db", "backup", str(tmp_path / "x.dump")],
        env={"OPTIINFRA_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/x"},
    )
    assert result.exit_code == 1
    assert "Cannot connect" in result.output
    assert "secret" not in result.output
