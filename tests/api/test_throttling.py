"""Failed authentication is throttled per client address with 429 and Retry-After; good keys are not counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine

from optiinfra.db import migrations
from tests.api.conftest import Server, running_server
from tests.conftest import DatabaseFactory

LIMIT = 5


@pytest.fixture(scope="module")
def strict_server(create_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    engine = create_engine(create_database())
    migrations.upgrade(engine)
    with running_server(engine, Path(tmp_path_factory.mktemp("throttle")), auth_failures_per_minute=LIMIT) as server:
        yield server
    engine.dispose()


def test_repeated_wrong_keys_get_429_with_retry_after_and_good_keys_are_never_counted(strict_server: Server) -> None:
    with httpx.Client(base_url=strict_server.base_url) as client:
        good = {"Authorization": f"Bearer {strict_server.operator_key}"}
        for _ in range(3 * LIMIT):  # successes do not use up anything
            assert client.get("/api/v1/customers", headers=good).status_code == 200
        wrong = {"Authorization": "Bearer oi_op_" + "x" * 43}
        answers = [client.get("/api/v1/customers", headers=wrong).status_code for _ in range(LIMIT + 3)]
        assert answers[:LIMIT] == [401] * LIMIT
        assert answers[LIMIT:] == [429] * 3
        throttled = client.get("/api/v1/customers", headers=wrong)
        assert throttled.json()["error"]["code"] == "too_many_requests"
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        # While throttled, even the right key waits: a guesser cannot tell a hit from a miss.
        assert client.get("/api/v1/customers", headers=good).status_code == 429
        # Dashboard sign-in attempts are throttled the same way.
        page = client.post("/login", data={"api_key": "oi_cu_guess"})
        assert page.status_code == 429
