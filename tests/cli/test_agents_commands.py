"""`optiinfra agents assign|unassign|show|list` against a fresh database: the operator's view of who serves whom."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from optiinfra.cli import app
from optiinfra.db import migrations
from optiinfra.enums import AgentType
from tests.conftest import url_for_env
from tests.factories import make_agent, make_customer

runner = CliRunner()


def test_the_operator_assigns_and_unassigns_customers_from_the_command_line(database_url: URL) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        agent = make_agent(session, type=AgentType.APPLICATION)
        email, customer_id, agent_name, agent_id = customer.email, customer.id, agent.name, agent.id

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(
            app, list(args), env={"OPTIINFRA_DATABASE_URL": url_for_env(database_url), "COLUMNS": "200"}
        )

    def assigned() -> list[tuple[object, object]]:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text("SELECT agent_id, customer_id FROM agent_customers"))]

    try:
        result = cli("agents", "assign", agent_name, "--customer", email)
        assert result.exit_code == 0, result.output
        assert f"serves: {email} ({customer_id})" in result.output
        assert assigned() == [(agent_id, customer_id)]
        assert cli("agents", "assign", str(agent_id), "-c", str(customer_id)).exit_code == 0  # again: no change
        assert assigned() == [(agent_id, customer_id)]
        shown = cli("agents", "show", agent_name)
        assert f"customer_ids: {customer_id}" in shown.output
        assert "UUID(" not in shown.output
        listed = cli("agents", "list")
        assert listed.exit_code == 0, listed.output

        result = cli("agents", "unassign", agent_name, "-c", email)
        assert result.exit_code == 0, result.output
        assert "serves: no customer" in result.output
        assert assigned() == []
        again = cli("agents", "unassign", agent_name, "-c", email)
        assert again.exit_code == 1
        assert "not assigned to this customer" in again.output
        assert "Traceback" not in again.output
        with engine.connect() as connection:
            logged = connection.execute(
                text("SELECT event_type FROM events WHERE customer_id = :id ORDER BY created_at"), {"id": customer_id}
            ).scalars()
            assert list(logged) == ["agent.customer_assigned", "agent.customer_unassigned"]
    finally:
        engine.dispose()
