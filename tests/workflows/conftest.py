"""A committed database per test module for the workflow runner (its steps commit in their own transactions)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.models import Agent, AgentType
from tests.conftest import DatabaseFactory
from tests.factories import assign, make_customer


@dataclass
class Env:
    engine: Engine
    factory: sessionmaker[Session]
    customer_id: uuid.UUID
    cost_agent_id: uuid.UUID
    resource_agent_id: uuid.UUID
    data_dir: Path


@pytest.fixture(scope="module")
def module_engine(create_database: DatabaseFactory) -> Iterator[Engine]:
    engine = create_engine(create_database(), pool_size=10)
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def env(module_engine: Engine, tmp_path: Path) -> Env:
    factory = make_session_factory(module_engine)
    with factory() as session, session.begin():
        customer = make_customer(session)
        cost = Agent(type=AgentType.COST, name=f"cost-{uuid.uuid4().hex[:8]}")
        resource = Agent(type=AgentType.RESOURCE, name=f"resource-{uuid.uuid4().hex[:8]}")
        session.add_all([cost, resource])
        session.flush()
        assign(session, cost, customer)
        assign(session, resource, customer)
        ids = customer.id, cost.id, resource.id
    return Env(module_engine, factory, ids[0], ids[1], ids[2], tmp_path)
