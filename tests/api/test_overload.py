"""A server that cannot lock up (issue 12): work in flight is bounded, the surplus is refused at once with 503 and
Retry-After, a pool time-out is 503 (not 500), and /healthz and /readyz answer while every slot is taken."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from optiinfra.api.admission import MAX_RETRY_AFTER_SECONDS, AdmissionControl
from optiinfra.client import OptiInfraClient
from optiinfra.enums import AgentType
from tests.api.conftest import Server, running_server


@pytest.fixture
def small_engine(migrated_engine: Engine) -> Iterator[Engine]:
    """An engine of 8 pooled connections (two seconds' wait at most) on the session's migrated database: room for
    2 requests in flight beside the connections the server keeps for background work."""
    engine = create_engine(migrated_engine.url, pool_size=8, max_overflow=0, pool_timeout=2)
    yield engine
    engine.dispose()


def _pending_recommendation(server: Server) -> tuple[str, uuid.UUID]:
    """A customer's key and a pending recommendation of theirs."""
    with OptiInfraClient(server.base_url, server.operator_key) as operator:
        suffix = uuid.uuid4().hex[:8]
        customer = operator.create_customer(f"Load {suffix}", f"load-{suffix}@load.example")
        agent = operator.register_agent(AgentType.COST, f"load-{suffix}", customer_ids=[customer.id])
    assert agent.api_key is not None
    with OptiInfraClient(server.base_url, agent.api_key) as as_agent:
        recommendation = as_agent.create_recommendation(customer.id, "rightsizing", "t", confidence_score=0.5)
    return customer.api_key, recommendation.id


def _wait_for_lock_waiters(engine: Engine, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} requests never waited on the row lock")


def test_requests_beyond_the_limit_are_refused_at_once_while_others_wait_on_a_row_lock(
    small_engine: Engine, migrated_engine: Engine, tmp_path: Path
) -> None:
    """The probe: requests blocked on a row lock made /readyz, /metrics and reads hang for 16-20 s."""
    # The blocked decisions must outwait the checks below however slow the machine: a long lock time-out.
    with running_server(small_engine, tmp_path, max_in_flight=2, lock_timeout_ms=120_000) as server:
        customer_key, recommendation_id = _pending_recommendation(server)
        answers: list[int] = []
        with small_engine.connect() as holder, holder.begin():
            holder.execute(text("SELECT id FROM recommendations WHERE id = :id FOR UPDATE"), {"id": recommendation_id})
            blocked = [
                threading.Thread(
                    target=lambda: answers.append(
                        httpx.post(
                            f"{server.base_url}/api/v1/recommendations/{recommendation_id}/decision",
                            json={"decision": "approve"},
                            headers={"Authorization": f"Bearer {customer_key}"},
                            timeout=30,
                        ).status_code
                    )
                )
                for _ in range(2)
            ]
            for thread in blocked:
                thread.start()
            _wait_for_lock_waiters(migrated_engine, 2)
            refused = httpx.get(
                f"{server.base_url}/api/v1/recommendations",
                headers={"Authorization": f"Bearer {customer_key}"},
                timeout=5,
            )
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert refused.elapsed.total_seconds() < 1
            # Neither health check needs a slot, a pooled connection or a worker thread.
            health = httpx.get(f"{server.base_url}/healthz", timeout=5)
            ready = httpx.get(f"{server.base_url}/readyz", timeout=5)
            assert (health.status_code, ready.status_code) == (200, 200)
            assert health.elapsed.total_seconds() < 1
            assert ready.elapsed.total_seconds() < 2
        for thread in blocked:
            thread.join(timeout=30)
    # The lock released, one decision won and the other saw the recommendation already decided.
    assert sorted(answers) == [200, 409]


def test_a_request_behind_a_row_lock_gives_up_after_the_lock_timeout_with_409(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    """A request never holds its connection and slot indefinitely behind another transaction's row lock."""
    with running_server(migrated_engine, tmp_path, lock_timeout_ms=300) as server:
        customer_key, recommendation_id = _pending_recommendation(server)
        with migrated_engine.connect() as holder, holder.begin():
            holder.execute(text("SELECT id FROM recommendations WHERE id = :id FOR UPDATE"), {"id": recommendation_id})
            started = time.monotonic()
            response = httpx.post(
                f"{server.base_url}/api/v1/recommendations/{recommendation_id}/decision",
                json={"decision": "approve"},
                headers={"Authorization": f"Bearer {customer_key}"},
                timeout=30,
            )
            waited = time.monotonic() - started
        assert response.status_code == 409, response.text
        assert response.json()["error"]["details"] == {"reason": "lock_timeout"}
        assert waited < 10
        # Nothing was half-done: once the lock is gone the decision goes through.
        retried = httpx.post(
            f"{server.base_url}/api/v1/recommendations/{recommendation_id}/decision",
            json={"decision": "approve"},
            headers={"Authorization": f"Bearer {customer_key}"},
            timeout=30,
        )
        assert retried.status_code == 200, retried.text


def test_a_pool_time_out_is_503_with_retry_after_not_500(small_engine: Engine, tmp_path: Path) -> None:
    """The probe's 500 'QueuePool limit of size 5 overflow 10 reached, connection timed out'."""
    with running_server(small_engine, tmp_path, max_in_flight=10) as server:
        # Every pooled connection, taken outside any request.
        held = [small_engine.connect() for _ in range(small_engine.pool.size())]  # type: ignore[attr-defined]
        try:
            response = httpx.get(
                f"{server.base_url}/api/v1/agents", headers={"Authorization": f"Bearer {server.operator_key}"}
            )
        finally:
            for connection in held:
                connection.close()
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == "overloaded"


def test_readyz_fails_fast_when_the_database_is_unreachable(tmp_path: Path, migrated_engine: Engine) -> None:
    unreachable = create_engine(
        migrated_engine.url.set(host="127.0.0.1", port=1), pool_size=1, max_overflow=0, pool_timeout=0.5
    )
    with running_server(unreachable, tmp_path) as server:
        started = time.monotonic()
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert time.monotonic() - started < 4
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    unreachable.dispose()


def test_retry_after_grows_as_refusals_pile_up() -> None:
    """Refused clients are told to come back later the more of them there are, so retries do not arrive at once."""

    async def app(scope: object, receive: object, send: object) -> None:  # never reached
        raise AssertionError

    admission = AdmissionControl(app, limit=2)
    waits = [admission.retry_after() for _ in range(100)]
    assert waits[0] == 1
    assert waits == sorted(waits)
    assert 10 <= waits[-1] <= MAX_RETRY_AFTER_SECONDS


def test_many_concurrent_clients_get_answers_or_503_never_a_hang_or_500(
    small_engine: Engine, migrated_engine: Engine, tmp_path: Path
) -> None:
    """A short version of the probe's lock-up (benchmarks/load.py is the full one): 40 clients at once against a
    server with 2 slots, mixing 1,000-record batches and reads. Every answer is a success or a 503 with Retry-After,
    nothing hangs, and every acknowledged batch is stored exactly once."""
    with running_server(small_engine, tmp_path, max_in_flight=2) as server:
        with OptiInfraClient(server.base_url, server.operator_key) as operator:
            suffix = uuid.uuid4().hex[:8]
            customer = operator.create_customer(f"Smoke {suffix}", f"smoke-{suffix}@load.example")
            # The metrics' default agent: an application agent serving the customer.
            operator.register_agent(AgentType.APPLICATION, f"smoke-{suffix}", customer_ids=[customer.id])
        auth = {"Authorization": f"Bearer {customer.api_key}"}
        answers: list[tuple[str, int, str | None]] = []
        now = datetime.now(UTC).isoformat()

        def client(number: int) -> None:
            with httpx.Client(base_url=server.base_url, headers=auth, timeout=60) as http:
                for round_ in range(3):
                    if number % 2:
                        batch = f"s{number}-{round_}"
                        body = {
                            "records": [
                                {
                                    "request_id": f"{batch}-{i}",
                                    "model_name": "smoke",
                                    "model_version": "v1",
                                    "timestamp": now,
                                    "overall_quality_score": 0.9,
                                }
                                for i in range(1000)
                            ],
                        }
                        response = http.post("/api/v1/quality/metrics", json=body)
                    else:
                        batch = ""
                        response = http.get("/api/v1/events", params={"limit": 20})
                    answers.append((batch, response.status_code, response.headers.get("Retry-After")))

        threads = [threading.Thread(target=client, args=(number,)) for number in range(40)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert time.monotonic() - started < 120
        assert len(answers) == 120
        assert {status for _, status, _ in answers} <= {200, 201, 503}
        assert all(retry is not None for _, status, retry in answers if status == 503)
        assert any(status == 503 for _, status, _ in answers)  # the surplus was refused, not queued
        acknowledged = {batch for batch, status, _ in answers if batch and status in {200, 201}}
        with migrated_engine.connect() as connection:
            stored = dict(
                connection.execute(
                    text(
                        "SELECT split_part(request_id, '-', 1) || '-' || split_part(request_id, '-', 2), count(*) "
                        "FROM quality_metrics WHERE customer_id = :c GROUP BY 1"
                    ),
                    {"c": customer.id},
                ).all()
            )
        assert set(stored) == acknowledged
        assert set(stored.values()) <= {1000}
