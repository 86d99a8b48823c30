"""`optiinfra workflow list|show` and `optiinfra agents list` print short ids, take prefixes back, and say what to do
when a list is empty (issue 17)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from optiinfra.cli import app
from optiinfra.cli.context import console
from optiinfra.db import migrations
from optiinfra.enums import AgentType
from tests.conftest import url_for_env
from tests.factories import assign, make_agent, make_customer

runner = CliRunner()


def test_short_ids_in_tables_prefixes_on_the_way_back_and_empty_lists_that_say_what_next(
    database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command line's console is made once per process: give it a terminal of 80 columns for this test.
    monkeypatch.setattr(console, "width", 80)
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        agent = make_agent(session, type=AgentType.COST)
        assign(session, agent, customer)
        email, agent_id = customer.email, str(agent.id)

    def cli(*args: str):  # type: ignore[no-untyped-def]
        env = {"OPTIINFRA_DATABASE_URL": url_for_env(database_url), "COLUMNS": "80"}
        return runner.invoke(app, list(args), env=env)

    try:
        empty = cli("workflow", "list")
        assert empty.exit_code == 0
        assert "No workflow runs. Start one with: optiinfra workflow run" in empty.output

        started = cli("workflow", "run", "spot-analysis", "-c", email)
        assert started.exit_code == 0, started.output
        with engine.connect() as connection:
            run_id = str(connection.execute(text("SELECT id FROM workflow_executions")).scalar_one())

        listed = cli("workflow", "list")  # 80 columns: every row on one line, the id short
        assert listed.exit_code == 0, listed.output
        assert run_id[:8] in listed.output
        assert run_id not in listed.output
        assert all(len(line) <= 80 for line in listed.output.splitlines())
        wide = cli("workflow", "list", "--wide").output  # the whole id, folded in its cell at 80 columns
        assert run_id[:8] in wide
        assert len(wide.splitlines()) > len(listed.output.splitlines())

        shown = cli("workflow", "show", run_id[:6])
        assert shown.exit_code == 0, shown.output
        assert run_id[:8] in shown.output
        too_short = cli("workflow", "show", run_id[:3])
        assert too_short.exit_code == 1
        assert "first 4 characters" in too_short.output
        unknown = cli("workflow", "show", "ffffffff")
        assert unknown.exit_code == 1
        assert "No workflow id starts with 'ffffffff'" in unknown.output
        assert "Traceback" not in too_short.output + unknown.output

        agents = cli("agents", "list")
        assert agents.exit_code == 0, agents.output
        assert agent_id[:8] in agents.output
        assert agent_id not in agents.output
        assert all(len(line) <= 80 for line in agents.output.splitlines())
        assert cli("agents", "show", agent_id[:8]).exit_code == 0
    finally:
        engine.dispose()
