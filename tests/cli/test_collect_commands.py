"""`optiinfra sources ...` and `optiinfra collect` against a fresh database: add a source (its token from the
environment, never shown), list it, and collect from a Prometheus that does not answer: exit 1, the error in words,
one event, no progress."""

from __future__ import annotations

import re
import socket

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from optiinfra.cli import app
from optiinfra.db import migrations
from optiinfra.models import Agent, AgentType, Event, PrometheusSource
from tests.conftest import url_for_env
from tests.factories import assign, make_customer

runner = CliRunner()


def test_sources_and_collect_from_the_command_line(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(database_url)
    migrations.upgrade(engine)
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        agent = Agent(type=AgentType.RESOURCE, name="resource-cli")
        session.add(agent)
        session.flush()
        assign(session, agent, customer)
        email, customer_id = customer.email, customer.id
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {"OPTIINFRA_DATABASE_URL": url_for_env(database_url), "COLUMNS": "200"}

    def cli(*args: str, **extra: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, list(args), env={**environment, **extra})

    url = f"http://127.0.0.1:{port}"
    refused = cli("sources", "add", "prod", "-c", email, "--url", url)
    assert refused.exit_code == 1
    assert "loopback" in refused.output  # the endpoint rules, as for webhooks
    no_token = cli("sources", "add", "prod", "-c", email, "--url", url, "--auth", "bearer")
    assert no_token.exit_code == 1
    assert "OPTIINFRA_PROMETHEUS_SECRET" in no_token.output

    monkeypatch.setenv("OPTIINFRA_ALLOW_PRIVATE_ENDPOINTS", "1")
    added = cli(
        "sources", "add", "prod", "-c", email, "--url", url, "--auth", "bearer", "--instance-label", "node",
        OPTIINFRA_PROMETHEUS_SECRET="tok-never-shown",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    source_id = re.search(r"prod ([0-9a-f-]{36})", added.output)
    assert source_id is not None
    listed = cli("sources", "list", "-c", email)
    assert "instance=node" in listed.output
    assert "not yet collected" in listed.output
    assert "tok-never-shown" not in added.output + listed.output

    collected = cli("collect")
    assert collected.exit_code == 1
    assert "cannot be reached" in collected.output
    with Session(engine) as session:
        source = session.scalar(select(PrometheusSource).where(PrometheusSource.customer_id == customer_id))
        assert source is not None
        assert source.auth_secret == "tok-never-shown"
        assert (source.collected_until, source.consecutive_failures) == (None, 1)
        kinds = session.scalars(select(Event.event_type).where(Event.customer_id == customer_id)).all()
        assert "collector.source_unreachable" in kinds
    assert "1 failure(s)" in cli("sources", "list").output

    removed = cli("sources", "remove", source_id.group(1))
    assert removed.exit_code == 0, removed.output
    assert "no Prometheus sources" in cli("sources", "list").output
