"""The quality engine over HTTP: ingest, baselines, regression detection and the rollback it triggers, the quality
gate on completion, people resolving regressions, and A/B tests.

Quality data are simulated with numpy from fixed seeds; expected statistics are computed from the same arrays, so a
test fails if the server summarises, judges or attributes anything differently from what it was sent.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from scipy import stats
from sqlalchemy import Engine, create_engine, text

from optiinfra.api.app import AppConfig, create_app
from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Role
from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.db import migrations
from optiinfra.enums import AgentType
from optiinfra.recommendations.schemas import Optimization
from tests.api.conftest import AgentHandle, Server, Tenant, _free_port
from tests.conftest import DatabaseFactory

MODEL = "support-bot"
VERSION = "2024-06"
BATCH = 500  # records per request: the test server accepts bodies up to 256 KiB
DEFAULT_WEIGHTS = {
    "relevance": 0.30,
    "coherence": 0.20,
    "factuality": 0.30,
    "non_toxicity": 0.10,
    "no_hallucination": 0.10,
}  # as documented in optiinfra.quality.scoring
SEVERITY_STEPS = (1.5, 2.0, 3.0)  # default effect/floor ratios for medium, high, critical
COMPONENTS = ("overall_quality_score", "relevance_score", "coherence_score", "factuality_score")


# --- simulated traffic -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """The distribution a simulated window is drawn from: normal scores (clipped to [0, 1]), log-normal latency,
    beta toxicity and a hallucination rate."""

    overall: tuple[float, float] = (0.85, 0.05)
    relevance: tuple[float, float] = (0.86, 0.05)
    coherence: tuple[float, float] = (0.88, 0.04)
    factuality: tuple[float, float] = (0.83, 0.06)
    hallucination_rate: float = 0.03
    log_latency_ms: tuple[float, float] = (6.0, 0.3)  # about 400 ms
    toxicity: tuple[float, float] = (1.0, 60.0)


HEALTHY = Profile()
# An optimization gone wrong: overall and factuality about 15 % lower, four times the hallucinations.
DEGRADED = Profile(overall=(0.72, 0.06), factuality=(0.70, 0.07), hallucination_rate=0.12)


def simulate(
    seed: int,
    count: int,
    *,
    start: datetime,
    spacing: timedelta = timedelta(seconds=20),
    profile: Profile = HEALTHY,
    version: str = VERSION,
    metadata: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)

    def scores(mean_and_sd: tuple[float, float]) -> np.ndarray:
        return np.clip(rng.normal(*mean_and_sd, count), 0.0, 1.0)

    overall, relevance = scores(profile.overall), scores(profile.relevance)
    coherence, factuality = scores(profile.coherence), scores(profile.factuality)
    hallucinated = rng.random(count) < profile.hallucination_rate
    latency = rng.lognormal(*profile.log_latency_ms, count)
    toxicity = rng.beta(*profile.toxicity, count)
    tokens = rng.integers(20, 2000, (count, 2))
    prefix = uuid.uuid4().hex[:12]
    return [
        {
            "request_id": f"{prefix}-{index}",
            "model_name": MODEL,
            "model_version": version,
            "timestamp": (start + index * spacing).isoformat(),
            "prompt_tokens": int(tokens[index, 0]),
            "completion_tokens": int(tokens[index, 1]),
            "latency_ms": float(latency[index]),
            "relevance_score": float(relevance[index]),
            "coherence_score": float(coherence[index]),
            "factuality_score": float(factuality[index]),
            "hallucination_detected": bool(hallucinated[index]),
            "toxicity_score": float(toxicity[index]),
            "overall_quality_score": float(overall[index]),
            "metadata": dict(metadata or {}),
        }
        for index in range(count)
    ]


def column(records: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([record[name] for record in records], dtype=float)


def last_timestamp(records: list[dict[str, Any]]) -> datetime:
    """A moment just after the newest of these records."""
    return datetime.fromisoformat(records[-1]["timestamp"]) + timedelta(milliseconds=50)


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def ingest(client: OptiInfraClient, records: list[dict[str, Any]], customer_id: uuid.UUID | None) -> dict[str, int]:
    """Send records in batches the test server accepts; the summed counts."""
    totals = {"received": 0, "inserted": 0, "duplicates": 0}
    for offset in range(0, len(records), BATCH):
        answer = client.ingest_quality_metrics(records[offset : offset + BATCH], customer_id=customer_id)
        for key, value in answer.model_dump().items():
            totals[key] += value
    return totals


def stored_metrics(api_server: Server, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    with api_server.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM quality_metrics WHERE customer_id = :customer ORDER BY timestamp, request_id"),
            {"customer": customer_id},
        )
        return [dict(row._mapping) for row in rows]


def count_rows(api_server: Server, table: str, customer_id: uuid.UUID) -> int:
    with api_server.engine.connect() as connection:
        return int(
            connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE customer_id = :customer"), {"customer": customer_id}
            ).scalar_one()
        )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


# --- one customer with the agents that serve it ----------------------------------------------------------------


@dataclass
class Team:
    """A customer, the application agent that reports its LLM quality, and the cost agent that optimizes it."""

    tenant: Tenant
    reporter: AgentHandle
    optimizer: AgentHandle

    @property
    def customer(self) -> OptiInfraClient:
        return self.tenant.client

    def ingest(self, records: list[dict[str, Any]]) -> dict[str, int]:
        return ingest(self.reporter.client, records, self.tenant.id)

    # Answers of the typed client, as JSON-like dicts (so they compare with what was sent).

    def baseline(self, window: dict[str, Any]) -> dict[str, Any]:
        return self.customer.establish_baseline(MODEL, VERSION, window=window).model_dump(mode="json")

    def detect(self, window: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        return self.customer.detect(MODEL, VERSION, window=window, dry_run=dry_run).model_dump(mode="json")

    def regressions(self, **filters: Any) -> list[dict[str, Any]]:
        return [row.model_dump(mode="json") for row in self.customer.list_regressions(limit=500, **filters).items]

    def resolve(self, regression_id: str, notes: str) -> dict[str, Any]:
        return self.customer.resolve_regression(uuid.UUID(regression_id), notes).model_dump(mode="json")

    def baselines(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.customer.request("GET", "/quality/baselines")["items"]
        return items

    def start_optimization(self) -> Optimization:
        """The cost agent proposes a change, the customer approves, the agent starts it."""
        recommendation = self.optimizer.client.create_recommendation(
            self.tenant.id, "model_quantization", "Serve the support bot from int8 weights", confidence_score=0.8
        )
        decision = self.customer.approve(recommendation.id, "try it")
        assert decision.optimization is not None
        return self.optimizer.client.start_optimization(decision.optimization.id)

    def deploy(self) -> Optimization:
        """An optimization, started and completed (the quality gate lets it through)."""
        optimization = self.start_optimization()
        return self.optimizer.client.complete_optimization(optimization.id, actual_savings=Decimal("900.00"))

    def events(self, event_type: str) -> list[Any]:
        return self.customer.list_events(event_type=event_type, limit=500).items


@pytest.fixture
def team(make_tenant: Callable[..., Tenant], make_agent: Callable[..., AgentHandle]) -> Team:
    tenant = make_tenant()
    return Team(tenant, make_agent(AgentType.APPLICATION, serves=[tenant]), make_agent(AgentType.COST, serves=[tenant]))


def with_baseline(team: Team, seed: int = 1, count: int = 300) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A healthy period from three hours ago (300 records: until 1 h 20 min ago) and the baseline established
    from it."""
    records = simulate(seed, count, start=hours_ago(3))
    team.ingest(records)
    return records, team.baseline({"last_n": count})


def degraded_after(team: Team, moment: datetime, seed: int = 2, **options: Any) -> list[dict[str, Any]]:
    """300 degraded records from just after `moment` (spaced 50 ms, within the 5 minutes of allowed clock skew)."""
    records = simulate(
        seed,
        300,
        start=moment + timedelta(milliseconds=50),
        spacing=timedelta(milliseconds=50),
        profile=DEGRADED,
        **options,
    )
    team.ingest(records)
    return records


@dataclass
class RolledBack:
    """The 'done when' of the quality engine: a baseline, an optimization, a degraded period, a detection."""

    baseline: dict[str, Any]
    optimization: Optimization
    degraded: list[dict[str, Any]]
    window: dict[str, Any]  # since the optimization completed
    report: dict[str, Any]


def roll_back_by_detection(team: Team) -> RolledBack:
    _, baseline = with_baseline(team)
    optimization = team.deploy()
    assert optimization.completed_at is not None
    # The degraded records name the optimization they ran under: the evidence attributes the regression to it.
    degraded = degraded_after(team, optimization.completed_at, metadata={"optimization_id": str(optimization.id)})
    window = {"start": optimization.completed_at.isoformat()}
    return RolledBack(baseline, optimization, degraded, window, team.detect(window))


def degraded_in_the_past(team: Team, seed: int = 2) -> list[dict[str, Any]]:
    """300 degraded records over the last hour, after the period with_baseline uses."""
    records = simulate(seed, 300, start=hours_ago(1), spacing=timedelta(seconds=10), profile=DEGRADED)
    team.ingest(records)
    return records


def regressed_without_optimization(team: Team) -> dict[str, Any]:
    """A baseline, then a degraded period (both in the past), detected; there is no optimization to roll back."""
    with_baseline(team)
    degraded_in_the_past(team)
    report = team.detect({"last_n": 300})
    assert report["verdict"] == "regression"
    return report


def expected_severity(floor_ratio: float) -> str:
    medium, high, critical = SEVERITY_STEPS
    if floor_ratio >= critical:
        return "critical"
    if floor_ratio >= high:
        return "high"
    return "medium" if floor_ratio >= medium else "low"


# --- ingest ----------------------------------------------------------------------------------------------------


def test_single_record_is_stored_as_sent(team: Team, api_server: Server) -> None:
    record = simulate(10, 1, start=hours_ago(1), metadata={"route": "/chat", "tenant_tier": "gold"})[0]

    answer = team.reporter.client.request(
        "POST", "/quality/metrics", json={**record, "customer_id": str(team.tenant.id)}
    )

    assert answer == {"received": 1, "inserted": 1, "duplicates": 0}
    [row] = stored_metrics(api_server, team.tenant.id)
    assert row["agent_id"] == team.reporter.agent_id
    assert row["timestamp"] == datetime.fromisoformat(record["timestamp"])
    assert row["metadata"] == {"route": "/chat", "tenant_tier": "gold"}
    for name in (
        "request_id",
        "model_name",
        "model_version",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "relevance_score",
        "coherence_score",
        "factuality_score",
        "hallucination_detected",
        "toxicity_score",
        "overall_quality_score",
    ):
        assert row[name] == record[name], name


def test_batch_counts_inserted_and_duplicates_and_resending_stores_nothing_twice(
    team: Team, api_server: Server
) -> None:
    first = simulate(11, 200, start=hours_ago(2))
    assert team.ingest(first) == {"received": 200, "inserted": 200, "duplicates": 0}
    assert team.ingest(first) == {"received": 200, "inserted": 0, "duplicates": 200}

    more = simulate(12, 50, start=hours_ago(1))
    assert team.ingest(first[:100] + more) == {"received": 150, "inserted": 50, "duplicates": 100}

    rows = stored_metrics(api_server, team.tenant.id)
    assert len(rows) == 250
    assert {row["request_id"] for row in rows} == {record["request_id"] for record in first + more}


def test_duplicates_inside_one_batch_count_once(team: Team, api_server: Server) -> None:
    records = simulate(13, 10, start=hours_ago(1))
    repeated = [{**record, "relevance_score": 0.01} for record in records[:3]]

    assert team.ingest(records + repeated) == {"received": 13, "inserted": 10, "duplicates": 3}
    assert len(stored_metrics(api_server, team.tenant.id)) == 10


def test_batch_with_invalid_records_is_refused_whole_listing_each(
    team: Team, http: httpx.Client, api_server: Server
) -> None:
    records = simulate(14, 10, start=hours_ago(1))
    records[2]["relevance_score"] = 1.2
    records[4]["latency_ms"] = -5.0
    records[5]["timestamp"] = datetime.now().isoformat()  # no time zone
    records[7]["timestamp"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    records[8]["surprise"] = "unknown field"
    records[9]["timestamp"] = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()  # within the allowed skew

    response = http.post(
        "/api/v1/quality/metrics",
        headers=bearer(team.reporter.key),
        json={"customer_id": str(team.tenant.id), "records": records},
    )

    error = assert_error(response, 422, "invalid_input")
    assert "nothing was stored" in error["message"]
    assert error["details"]["invalid_count"] == 5
    bad = {entry["index"]: [problem["field"] for problem in entry["problems"]] for entry in error["details"]["records"]}
    assert bad == {
        2: ["relevance_score"],
        4: ["latency_ms"],
        5: ["timestamp"],
        7: ["timestamp"],
        8: ["surprise"],
    }
    assert "future" in error["details"]["records"][3]["problems"][0]["message"]
    assert stored_metrics(api_server, team.tenant.id) == []

    valid = [record for index, record in enumerate(records) if index not in bad]
    assert team.ingest(valid)["inserted"] == 5


def test_batch_over_10000_records_is_refused(team: Team, http: httpx.Client, api_server: Server) -> None:
    # Empty objects keep the body small: the batch size is checked before the records themselves.
    response = http.post(
        "/api/v1/quality/metrics",
        headers=bearer(team.reporter.key),
        json={"customer_id": str(team.tenant.id), "records": [{}] * 10_001},
    )

    problems = assert_error(response, 422, "invalid_input")["details"]["problems"]
    assert any(problem["type"] == "too_long" and "records" in problem["location"] for problem in problems)
    assert stored_metrics(api_server, team.tenant.id) == []


def test_overall_score_is_computed_from_the_customers_weights_when_missing_and_kept_when_sent(
    team: Team, api_server: Server
) -> None:
    def record(request_id: str, **values: Any) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "model_name": MODEL,
            "model_version": VERSION,
            "timestamp": hours_ago(1).isoformat(),
            **values,
        }

    all_components = {"relevance_score": 0.8, "coherence_score": 0.6, "factuality_score": 0.9, "toxicity_score": 0.1}
    assert team.customer.request("GET", "/quality/settings")["weights"] == DEFAULT_WEIGHTS
    team.ingest(
        [
            record("all", **all_components),
            record("relevance-only", relevance_score=0.5),
            record("hallucinated", relevance_score=0.5, hallucination_detected=True),
            record("sent", **all_components, overall_quality_score=0.33),
        ]
    )
    custom = {"relevance": 0.5, "coherence": 0.0, "factuality": 0.5, "non_toxicity": 0.0, "no_hallucination": 0.0}
    assert team.customer.request("PUT", "/quality/settings", json={"weights": custom})["weights"] == custom
    assert team.customer.request("GET", "/quality/settings")["weights"] == custom
    team.ingest([record("all-custom", **all_components), record("relevance-only-custom", relevance_score=0.5)])

    overall = {row["request_id"]: row["overall_quality_score"] for row in stored_metrics(api_server, team.tenant.id)}
    assert overall == pytest.approx(
        {
            # 0.3 * 0.8 + 0.2 * 0.6 + 0.3 * 0.9 + 0.1 * (1 - 0.1) + 0.1 * 1
            "all": 0.82,
            # a missing component's weight is left out: (0.3 * 0.5 + 0.1 * 1) / 0.4
            "relevance-only": 0.625,
            "hallucinated": 0.375,
            "sent": 0.33,
            "all-custom": 0.85,
            "relevance-only-custom": 0.5,
        }
    )


def test_records_whose_present_components_all_weigh_zero_are_refused_not_a_server_error(
    team: Team, http: httpx.Client, api_server: Server
) -> None:
    weights = {"relevance": 1.0, "coherence": 0.0, "factuality": 0.0, "non_toxicity": 0.0, "no_hallucination": 0.0}
    team.customer.request("PUT", "/quality/settings", json={"weights": weights})
    records = simulate(15, 3, start=hours_ago(1))
    for record in records:
        del record["overall_quality_score"]
    del records[1]["relevance_score"]  # nothing left that the customer's weights count

    response = http.post(
        "/api/v1/quality/metrics",
        headers=bearer(team.reporter.key),
        json={"customer_id": str(team.tenant.id), "records": records},
    )

    error = assert_error(response, 422, "invalid_input")
    assert [entry["index"] for entry in error["details"]["records"]] == [1]
    assert stored_metrics(api_server, team.tenant.id) == []


def test_agent_ingest_names_the_customer_and_is_recorded_as_the_agent(
    team: Team,
    make_agent: Callable[..., AgentHandle],
    http: httpx.Client,
    operator: OptiInfraClient,
    api_server: Server,
) -> None:
    records = simulate(16, 5, start=hours_ago(1))
    other = make_agent(AgentType.APPLICATION, serves=[team.tenant])
    outsider = make_agent(AgentType.APPLICATION)
    url = "/api/v1/quality/metrics"

    agent_without_customer = http.post(url, headers=bearer(team.reporter.key), json={"records": records})
    assert "customer_id is required" in assert_error(agent_without_customer, 422, "invalid_input")["message"]
    operator_without_customer = http.post(url, headers=bearer(api_server.operator_key), json={"records": records})
    assert "customer_id is required" in assert_error(operator_without_customer, 422, "invalid_input")["message"]
    as_other = http.post(
        url,
        headers=bearer(team.reporter.key),
        json={"customer_id": str(team.tenant.id), "agent_id": str(other.agent_id), "records": records},
    )
    assert "as itself" in assert_error(as_other, 422, "invalid_input")["message"]
    assert stored_metrics(api_server, team.tenant.id) == []

    assert team.ingest(records[:3])["inserted"] == 3
    # The operator may attribute metrics to a named agent, but not to one that does not exist.
    body = {"customer_id": str(team.tenant.id), "agent_id": str(other.agent_id), "records": records[3:]}
    unknown_agent = http.post(
        url, headers=bearer(api_server.operator_key), json={**body, "agent_id": str(uuid.uuid4())}
    )
    assert_error(unknown_agent, 404, "not_found")
    # Nor to one that does not serve the customer.
    not_serving = http.post(
        url, headers=bearer(api_server.operator_key), json={**body, "agent_id": str(outsider.agent_id)}
    )
    assert "does not serve this customer" in assert_error(not_serving, 422, "invalid_input")["message"]
    assert operator.request("POST", "/quality/metrics", json=body)["inserted"] == 2

    agents = [row["agent_id"] for row in stored_metrics(api_server, team.tenant.id)]
    assert agents == [team.reporter.agent_id] * 3 + [other.agent_id] * 2


@contextmanager
def server_on_a_new_database(create_database: DatabaseFactory) -> Iterator[tuple[OptiInfraClient, Engine]]:
    """A server of its own, on a database with no agents at all: an operator client for it, and its engine."""
    engine = create_engine(create_database())
    migrations.upgrade(engine)
    key = generate_key(Role.OPERATOR)
    app = create_app(AppConfig(engine=engine, operator_key_digest=key_digest(key), health_sweep_seconds=0))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "the server stopped before it started"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        with OptiInfraClient(f"http://127.0.0.1:{server.config.port}", key) as operator:
            yield operator, engine
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


def test_customer_ingest_goes_to_the_customers_application_agent(create_database: DatabaseFactory) -> None:
    with server_on_a_new_database(create_database) as (operator, engine):
        customer = operator.create_customer("Solo", "solo@tenant.example")
        as_customer = operator.with_key(customer.api_key)
        records = simulate(17, 4, start=hours_ago(1))
        operator.register_agent(AgentType.COST, "cost-only", customer_ids=[customer.id])
        # An application agent that does not serve this customer is not one to attribute its metrics to.
        operator.register_agent(AgentType.APPLICATION, "app-of-another-customer")

        with pytest.raises(ApiError) as refused:
            ingest(as_customer, records[:2], None)
        assert refused.value.status_code == 422
        assert "No application agent serves this customer" in refused.value.message

        first = operator.register_agent(AgentType.APPLICATION, "app-first", customer_ids=[customer.id])
        assert ingest(as_customer, records[:2], None)["inserted"] == 2
        # A newer, livelier application agent does not take over the metrics of a customer it never reported.
        second = operator.register_agent(AgentType.APPLICATION, "app-second", customer_ids=[customer.id])
        assert second.api_key is not None
        operator.with_key(second.api_key).heartbeat(second.id)
        assert ingest(as_customer, records[2:], None)["inserted"] == 2

        with engine.connect() as connection:
            agents = connection.execute(
                text("SELECT agent_id FROM quality_metrics WHERE customer_id = :customer ORDER BY timestamp"),
                {"customer": customer.id},
            ).scalars()
            assert list(agents) == [first.id] * 4


@pytest.mark.parametrize("order", ["same", "shuffled"])
def test_concurrent_overlapping_batches_lose_nothing_and_duplicate_nothing(
    order: str, team: Team, api_server: Server
) -> None:
    # Two clients, 2,500 records each with 1,000 request ids in common, sent at the same moment (compact records,
    # so each batch fits the test server's body limit). "shuffled": each client sends in an order of its own, as
    # independent clients do. Three rounds, since a race may not show every time.
    stamp = hours_ago(1).strftime("%Y-%m-%dT%H:%M:%SZ")
    rng = np.random.default_rng(18)
    for round_number in range(3):
        ids = {"a": list(range(0, 2500)), "b": list(range(1500, 4000))}
        if order == "shuffled":
            for values in ids.values():
                rng.shuffle(values)
        bodies = {
            name: {
                "customer_id": str(team.tenant.id),
                "records": [
                    {
                        "request_id": f"{round_number}-{value}",
                        "model_name": "m",
                        "model_version": "v",
                        "timestamp": stamp,
                    }
                    for value in values
                ],
            }
            for name, values in ids.items()
        }
        answers = send_at_once(api_server, team.reporter.key, bodies)

        for name, response in answers.items():
            assert response.status_code == 200, f"round {round_number}, {name}: {response.status_code} {response.text}"
        results = [response.json() for response in answers.values()]
        assert sum(result["inserted"] for result in results) == 4000
        assert sum(result["duplicates"] for result in results) == 1000
    rows = stored_metrics(api_server, team.tenant.id)
    assert len(rows) == 3 * 4000
    expected = {f"{round_number}-{value}" for round_number in range(3) for value in range(4000)}
    assert {row["request_id"] for row in rows} == expected


def send_at_once(api_server: Server, key: str, bodies: dict[str, dict[str, Any]]) -> dict[str, httpx.Response]:
    """POST each body to the ingest endpoint from its own thread and connection, released together."""
    barrier = threading.Barrier(len(bodies))
    answers: dict[str, httpx.Response] = {}

    def send(name: str) -> None:
        with httpx.Client(base_url=api_server.base_url, timeout=60) as client:
            barrier.wait()
            answers[name] = client.post("/api/v1/quality/metrics", headers=bearer(key), json=bodies[name])

    threads = [threading.Thread(target=send, args=(name,)) for name in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


# --- baselines -------------------------------------------------------------------------------------------------


def test_baseline_below_the_minimum_sample_is_refused_clearly(team: Team, http: httpx.Client) -> None:
    records = simulate(20, 50, start=hours_ago(2))
    team.ingest(records[:49])
    body = {"model_name": MODEL, "model_version": VERSION, "window": {"last_n": 1000}}

    response = http.post("/api/v1/quality/baselines", headers=bearer(team.tenant.customer.api_key), json=body)

    error = assert_error(response, 422, "invalid_input")
    assert "at least 50 records" in error["message"]
    assert "has 49" in error["message"]
    assert error["details"] == {"sample_size": 49, "min_samples": 50}
    assert team.baselines() == []
    team.ingest(records[49:])
    assert team.baseline({"last_n": 1000})["sample_size"] == 50


def assert_summarises(baseline: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """The baseline's figures are those of exactly these records."""
    n = len(records)
    assert baseline["sample_size"] == n
    metadata = baseline["metadata"]
    for name in COMPONENTS:
        values = column(records, name)
        summary = metadata["components"][name]
        half_width = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
        assert summary["n"] == n
        assert summary["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert summary["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert summary["ci95_low"] == pytest.approx(values.mean() - half_width, abs=1e-12)
        assert summary["ci95_high"] == pytest.approx(values.mean() + half_width, abs=1e-12)
    assert baseline["avg_overall_score"] == pytest.approx(column(records, "overall_quality_score").mean(), abs=1e-12)
    assert baseline["avg_relevance_score"] == pytest.approx(column(records, "relevance_score").mean(), abs=1e-12)
    assert baseline["avg_coherence_score"] == pytest.approx(column(records, "coherence_score").mean(), abs=1e-12)
    assert baseline["avg_factuality_score"] == pytest.approx(column(records, "factuality_score").mean(), abs=1e-12)
    latency = column(records, "latency_ms")
    assert baseline["p95_latency_ms"] == pytest.approx(np.quantile(latency, 0.95))
    assert metadata["latency_ms"]["p50"] == pytest.approx(np.quantile(latency, 0.50))
    assert metadata["latency_ms"]["p95"] == pytest.approx(np.quantile(latency, 0.95))
    assert metadata["latency_ms"]["p99"] == pytest.approx(np.quantile(latency, 0.99))
    hallucinations = sum(record["hallucination_detected"] for record in records)
    assert metadata["hallucination"] == {"n": n, "count": hallucinations, "rate": pytest.approx(hallucinations / n)}
    assert metadata["toxicity"]["mean"] == pytest.approx(column(records, "toxicity_score").mean(), abs=1e-12)
    quantiles = np.quantile(column(records, "overall_quality_score"), np.linspace(0, 1, 21))
    assert metadata["overall_quantiles"] == pytest.approx(list(quantiles), abs=1e-12)


def test_baseline_from_the_last_n_records_summarises_exactly_the_newest(team: Team) -> None:
    records = simulate(21, 400, start=hours_ago(4))
    team.ingest(records[::-1])  # arrival order does not matter, timestamps do

    baseline = team.baseline({"last_n": 250})

    newest = records[-250:]
    assert_summarises(baseline, newest)
    assert baseline["baseline_type"] == "initial"
    assert baseline["agent_id"] == str(team.reporter.agent_id)
    assert (baseline["model_name"], baseline["model_version"]) == (MODEL, VERSION)
    assert baseline["valid_until"] is None
    window = baseline["metadata"]["window"]
    assert window["last_n"] == 250
    assert datetime.fromisoformat(window["start"]) == datetime.fromisoformat(newest[0]["timestamp"])
    assert datetime.fromisoformat(window["end"]) == datetime.fromisoformat(newest[-1]["timestamp"])


def test_baseline_from_a_time_range_summarises_the_records_inside_it(team: Team) -> None:
    records = simulate(22, 300, start=hours_ago(4), spacing=timedelta(seconds=30))
    team.ingest(records)
    start, end = records[100]["timestamp"], records[220]["timestamp"]

    baseline = team.baseline({"start": start, "end": end})

    assert_summarises(baseline, records[100:220])  # the end is exclusive
    window = baseline["metadata"]["window"]
    assert datetime.fromisoformat(window["start"]) == datetime.fromisoformat(start)
    assert datetime.fromisoformat(window["end"]) == datetime.fromisoformat(end)
    assert window["last_n"] is None


def test_re_established_baseline_is_updated_and_ends_the_previous_one(team: Team) -> None:
    _, first = with_baseline(team, seed=23)
    team.ingest(simulate(24, 100, start=hours_ago(1)))

    second = team.baseline({"last_n": 200})

    assert (first["baseline_type"], second["baseline_type"]) == ("initial", "updated")
    listed = {baseline["id"]: baseline for baseline in team.baselines()}
    assert listed.keys() == {first["id"], second["id"]}
    assert listed[first["id"]]["valid_until"] is not None
    ended = datetime.fromisoformat(listed[first["id"]]["valid_until"])
    assert ended == datetime.fromisoformat(second["established_at"])
    assert listed[second["id"]]["valid_until"] is None
    # The judge now compares with the new baseline.
    assert team.detect({"last_n": 100}, dry_run=True)["baseline_id"] == second["id"]


def test_first_baseline_after_a_rollback_is_of_type_rollback(team: Team) -> None:
    scenario = roll_back_by_detection(team)
    assert scenario.report["rolled_back_optimization_id"] == str(scenario.optimization.id)

    after = team.baseline({"last_n": 300})

    assert after["baseline_type"] == "rollback"


def test_only_the_first_baseline_after_a_rollback_is_of_type_rollback(team: Team) -> None:
    scenario = roll_back_by_detection(team)
    assert scenario.report["rolled_back_optimization_id"] == str(scenario.optimization.id)
    # Healthy again after the rollback: a rollback baseline from the recovered traffic, and the regressions
    # auto-resolve against it.
    recovered = simulate(25, 300, start=last_timestamp(scenario.degraded), spacing=timedelta(milliseconds=50))
    team.ingest(recovered)
    window = {"start": recovered[0]["timestamp"]}
    assert team.baseline(window)["baseline_type"] == "rollback"
    assert team.detect(window)["resolved"]

    # No rollback since: the next baseline is an ordinary update.
    assert team.baseline(window)["baseline_type"] == "updated"


# --- detection -------------------------------------------------------------------------------------------------


def test_degraded_period_after_an_optimization_is_a_regression_that_rolls_it_back(
    team: Team, operator: OptiInfraClient
) -> None:
    scenario = roll_back_by_detection(team)
    report, optimization, degraded = scenario.report, scenario.optimization, scenario.degraded

    assert report["verdict"] == "regression"
    assert report["baseline_id"] == scenario.baseline["id"]
    assert report["window"]["sample_size"] == 300
    findings = {finding["metric_name"]: finding for finding in report["findings"]}
    regressed = {name for name, finding in findings.items() if finding["verdict"] == "regression"}
    assert regressed == {"overall_quality_score", "factuality_score", "hallucination_rate"}
    for name in ("relevance_score", "coherence_score", "p50_latency_ms", "p95_latency_ms", "toxicity_mean"):
        assert findings[name]["verdict"] == "pass", findings[name]
    for name in regressed:
        finding = findings[name]
        assert finding["test"] == ("fisher_exact" if name == "hallucination_rate" else "welch_t")
        assert 0 <= finding["p_value"] <= finding["p_value_adjusted"] < 0.01
        low, high = finding["ci95"]
        assert low < high
        assert finding["floors"]
        assert finding["floor_ratio"] >= 1
        assert finding["severity"] == expected_severity(finding["floor_ratio"])
        assert finding["sample_size"] == 300
    # Score drops: the interval of (current - baseline) lies wholly below zero.
    assert findings["overall_quality_score"]["ci95"][1] < 0
    assert findings["factuality_score"]["ci95"][1] < 0
    assert findings["hallucination_rate"]["ci95"][0] > 0

    regressions = {regression["metric_name"]: regression for regression in report["regressions"]}
    assert regressions.keys() == regressed
    overall = regressions["overall_quality_score"]
    assert overall["regression_type"] == "quality_drop"
    assert overall["baseline_value"] == pytest.approx(scenario.baseline["avg_overall_score"])
    assert overall["current_value"] == pytest.approx(column(degraded, "overall_quality_score").mean())
    assert overall["delta_percent"] == pytest.approx(
        100 * (overall["current_value"] - overall["baseline_value"]) / overall["baseline_value"]
    )
    assert -20 < overall["delta_percent"] < -10
    hallucination = regressions["hallucination_rate"]
    assert hallucination["regression_type"] == "hallucination_spike"
    assert hallucination["current_value"] == pytest.approx(np.mean([r["hallucination_detected"] for r in degraded]))
    assert hallucination["delta_percent"] < 0  # negative is worse, whichever way the metric moves
    # ... and `direction` says it in a word, in the detection report and in the stored regressions.
    assert {regression["direction"] for regression in regressions.values()} == {"worse"}
    assert findings["hallucination_rate"]["direction"] == "worse"
    assert {regression["direction"] for regression in team.regressions()} == {"worse"}
    for regression in regressions.values():
        assert (regression["model_name"], regression["model_version"]) == (MODEL, VERSION)
        assert regression["baseline_id"] == scenario.baseline["id"]
        assert regression["agent_id"] == str(team.reporter.agent_id)
        assert regression["sample_size"] == 300
        assert regression["resolved_at"] is None
        evidence = regression["metadata"]
        finding = findings[regression["metric_name"]]
        assert evidence["test"] == finding["test"]
        assert evidence["p_value"] == pytest.approx(finding["p_value"])
        assert evidence["p_value_adjusted"] == pytest.approx(finding["p_value_adjusted"])
        assert evidence["ci95"] == pytest.approx(finding["ci95"])
        assert evidence["floors"] == finding["floors"]
        assert evidence["window"]["sample_size"] == 300
        assert evidence["affected_requests"] == 300
        assert evidence["detections"] == 1
        assert regression["severity"] == finding["severity"]
        if regression["severity"] in {"high", "critical"}:
            assert regression["action_taken"] == "rollback_triggered"
            assert evidence["rolled_back_optimization_id"] == str(optimization.id)
    assert any(regression["action_taken"] == "rollback_triggered" for regression in regressions.values())

    # The change in effect was rolled back through the control plane, and the whole story is in the event log.
    assert report["rolled_back_optimization_id"] == str(optimization.id)
    rolled_back = team.customer.get_optimization(optimization.id)
    assert rolled_back.status == "rolled_back"
    assert rolled_back.rolled_back_at is not None
    assert team.customer.get_recommendation(optimization.recommendation_id).status == "rolled_back"
    detected = team.events("quality.regression_detected")
    assert sorted(event.data["subject"]["metric_name"] for event in detected) == sorted(regressed)
    [triggered] = team.events("quality.rollback_triggered")
    assert triggered.data["subject"]["optimization_id"] == str(optimization.id)
    assert triggered.severity == "critical"
    [optimization_event] = team.events("optimization.rolled_back")
    assert optimization_event.data["subject"]["optimization_id"] == str(optimization.id)
    assert optimization_event.data["actor"]["name"] == "system:quality"
    assert len(team.events("recommendation.rolled_back")) == 1
    # Stored as reported, and the operator sees the same rows.
    stored = {regression["id"] for regression in team.regressions(open=True)}
    assert stored == {regression["id"] for regression in regressions.values()}
    assert {
        row.id
        for row in operator.list_events(customer_id=team.tenant.id, event_type="quality.rollback_triggered").items
    } == {triggered.id}


def test_detecting_again_updates_the_open_regressions_instead_of_adding_new_ones(team: Team) -> None:
    scenario = roll_back_by_detection(team)
    first = {regression["metric_name"]: regression for regression in scenario.report["regressions"]}

    again = team.detect(scenario.window)

    assert again["verdict"] == "regression"
    second = {regression["metric_name"]: regression for regression in again["regressions"]}
    assert {name: regression["id"] for name, regression in second.items()} == {
        name: regression["id"] for name, regression in first.items()
    }
    assert all(regression["metadata"]["detections"] == 2 for regression in second.values())
    assert len(team.regressions()) == len(first)
    assert len(team.events("quality.regression_updated")) == len(first)
    assert len(team.events("quality.regression_detected")) == len(first)
    # Nothing is rolled back twice.
    assert again["rolled_back_optimization_id"] is None
    assert len(team.events("quality.rollback_triggered")) == 1
    assert len(team.events("optimization.rolled_back")) == 1


def test_healthy_window_later_auto_resolves_the_regressions_with_a_note(team: Team) -> None:
    scenario = roll_back_by_detection(team)
    open_ids = {regression["id"] for regression in scenario.report["regressions"]}
    recovered = simulate(26, 300, start=last_timestamp(scenario.degraded), spacing=timedelta(milliseconds=50))
    team.ingest(recovered)

    report = team.detect({"start": recovered[0]["timestamp"]})

    assert report["verdict"] == "pass"
    assert report["regressions"] == []
    assert {regression["id"] for regression in report["resolved"]} == open_ids
    for regression in report["resolved"]:
        assert regression["resolved_at"] is not None
        assert regression["resolution_notes"].startswith("Auto-resolved")
        assert regression["metric_name"] in regression["resolution_notes"]
    assert team.regressions(open=True) == []
    assert {regression["id"] for regression in team.regressions(open=False)} == open_ids
    resolved_events = team.events("quality.regression_resolved")
    assert {event.data["subject"]["regression_id"] for event in resolved_events} == open_ids


def test_window_like_the_baseline_passes_and_records_nothing(team: Team) -> None:
    with_baseline(team, seed=27)
    optimization = team.deploy()
    assert optimization.completed_at is not None
    same = simulate(
        28, 300, start=optimization.completed_at + timedelta(milliseconds=50), spacing=timedelta(milliseconds=50)
    )
    team.ingest(same)

    report = team.detect({"start": same[0]["timestamp"]})

    assert report["verdict"] == "pass"
    assert {finding["verdict"] for finding in report["findings"]} == {"pass"}
    assert report["regressions"] == []
    assert report["rolled_back_optimization_id"] is None
    assert team.regressions() == []
    assert team.customer.get_optimization(optimization.id).status == "completed"
    assert team.events("quality.regression_detected") == []


def test_window_below_the_minimum_sample_is_insufficient_data_even_if_bad(team: Team) -> None:
    with_baseline(team, seed=29)
    optimization = team.deploy()
    assert optimization.completed_at is not None
    team.ingest(
        simulate(
            30,
            49,
            start=optimization.completed_at + timedelta(milliseconds=50),
            profile=DEGRADED,
            spacing=timedelta(milliseconds=50),
        )
    )

    report = team.detect({"start": optimization.completed_at.isoformat()})

    assert report["verdict"] == "insufficient_data"
    assert report["window"]["sample_size"] == 49
    assert report["regressions"] == []
    assert team.regressions() == []
    assert team.customer.get_optimization(optimization.id).status == "completed"


def test_dry_run_judges_but_stores_and_rolls_back_nothing(team: Team, api_server: Server) -> None:
    with_baseline(team, seed=31)
    optimization = team.deploy()
    assert optimization.completed_at is not None
    degraded_after(team, optimization.completed_at, seed=32)
    events_before = len(team.customer.list_events(limit=500).items)

    report = team.detect({"start": optimization.completed_at.isoformat()}, dry_run=True)

    assert report["verdict"] == "regression"
    assert any(finding["verdict"] == "regression" for finding in report["findings"])
    assert report["regressions"] == []
    assert report["rolled_back_optimization_id"] is None
    assert count_rows(api_server, "quality_regressions", team.tenant.id) == 0
    assert len(team.customer.list_events(limit=500).items) == events_before
    assert team.customer.get_optimization(optimization.id).status == "completed"


def test_without_an_active_baseline_the_verdict_is_no_baseline(team: Team, api_server: Server) -> None:
    degraded = simulate(33, 100, start=hours_ago(2), profile=DEGRADED)
    team.ingest(simulate(34, 100, start=hours_ago(3)) + degraded)

    first = team.detect({"last_n": 100})
    # A baseline whose validity has ended is not active either.
    healthy_period = {"start": hours_ago(4).isoformat(), "end": hours_ago(2.1).isoformat()}
    expired = team.customer.request(
        "POST",
        "/quality/baselines",
        json={
            "model_name": MODEL,
            "model_version": VERSION,
            "window": healthy_period,
            "valid_until": hours_ago(1).isoformat(),
        },
    )
    second = team.detect({"last_n": 100})

    for report in (first, second):
        assert report["verdict"] == "no_baseline"
        assert report["baseline_id"] is None
        assert report["findings"] == []
        assert report["window"]["sample_size"] == 100
    assert expired["sample_size"] == 100
    assert count_rows(api_server, "quality_regressions", team.tenant.id) == 0
    # With an active baseline the same window is judged (and found degraded).
    team.baseline(healthy_period)
    assert team.detect({"last_n": 100}, dry_run=True)["verdict"] == "regression"


def test_alert_only_policy_records_the_regression_but_rolls_nothing_back(team: Team) -> None:
    policy = {"high": "alert_only", "critical": "alert_only"}
    settings = team.customer.request("PUT", "/quality/settings", json={"policy": policy})
    assert settings["policy"] == {"low": "alert_only", "medium": "manual_review", **policy}

    scenario = roll_back_by_detection(team)

    assert scenario.report["verdict"] == "regression"
    assert scenario.report["rolled_back_optimization_id"] is None
    actions = {regression["severity"]: regression["action_taken"] for regression in scenario.report["regressions"]}
    assert set(actions) & {"high", "critical"}, "the degraded window must be bad enough to matter"
    assert {actions[severity] for severity in set(actions) & {"high", "critical"}} == {"alert_only"}
    assert team.customer.get_optimization(scenario.optimization.id).status == "completed"
    assert team.events("quality.rollback_triggered") == []


def test_hallucinations_after_a_clean_baseline_are_a_regression_with_a_numeric_delta(team: Team) -> None:
    # A model that never hallucinated in its baseline starts to: the rate goes from 0 to about 15 %.
    team.ingest(simulate(37, 300, start=hours_ago(3), profile=Profile(hallucination_rate=0.0)))
    assert team.baseline({"last_n": 300})["metadata"]["hallucination"]["rate"] == 0
    spiking = simulate(
        38, 300, start=hours_ago(1), spacing=timedelta(seconds=10), profile=Profile(hallucination_rate=0.15)
    )
    team.ingest(spiking)

    report = team.detect({"last_n": 300})

    [regression] = [r for r in report["regressions"] if r["metric_name"] == "hallucination_rate"]
    assert regression["baseline_value"] == 0
    assert regression["current_value"] == pytest.approx(np.mean([r["hallucination_detected"] for r in spiking]))
    # Negative is worse; the wire format has no infinity, and the schema promises a number.
    assert isinstance(regression["delta_percent"], float)
    assert regression["delta_percent"] < 0
    assert [r["delta_percent"] for r in team.regressions()] == [regression["delta_percent"]]


def test_metrics_naming_an_optimization_roll_back_that_one(team: Team) -> None:
    with_baseline(team, seed=34)
    named = team.deploy()
    latest = team.deploy()
    assert latest.completed_at is not None

    degraded_after(team, latest.completed_at, seed=35, metadata={"optimization_id": str(named.id)})
    report = team.detect({"start": latest.completed_at.isoformat()})

    assert report["rolled_back_optimization_id"] == str(named.id)
    assert team.customer.get_optimization(named.id).status == "rolled_back"
    assert team.customer.get_optimization(latest.id).status == "completed"


def test_untagged_regression_while_an_unrelated_optimization_is_completed_goes_to_manual_review(team: Team) -> None:
    # Issue 10, item 4: degraded traffic that names no optimization and ran on none of its instances rolls nothing
    # back; the regression asks a person and lists the change that was active in its window.
    with_baseline(team, seed=36)
    unrelated = team.deploy()
    assert unrelated.completed_at is not None
    degraded_after(team, unrelated.completed_at, seed=37)
    report = team.detect({"start": unrelated.completed_at.isoformat()})

    assert report["verdict"] == "regression"
    assert report["rolled_back_optimization_id"] is None
    assert team.customer.get_optimization(unrelated.id).status == "completed"
    assert team.events("quality.rollback_triggered") == []
    wanted = [r for r in team.regressions() if r["severity"] in {"high", "critical"}]
    assert wanted
    for regression in wanted:
        assert regression["action_taken"] == "manual_review"
        active = regression["metadata"]["active_optimizations"]
        assert [entry["optimization_id"] for entry in active] == [str(unrelated.id)]


def test_another_customer_never_sees_the_quality_rows(
    team: Team, make_tenant: Callable[..., Tenant], http: httpx.Client, operator: OptiInfraClient, api_server: Server
) -> None:
    report = regressed_without_optimization(team)
    regression_id = report["regressions"][0]["id"]
    outsider = make_tenant()
    outsider_headers = bearer(outsider.customer.api_key)
    mine = str(team.tenant.id)

    for params in ({}, {"customer_id": mine}):
        assert outsider.client.request("GET", "/quality/regressions", params=params)["items"] == []
        assert outsider.client.request("GET", "/quality/baselines", params=params)["items"] == []
    assert_error(http.get(f"/api/v1/quality/regressions/{regression_id}", headers=outsider_headers), 404, "not_found")
    resolve = http.post(
        f"/api/v1/quality/regressions/{regression_id}/resolve", headers=outsider_headers, json={"notes": "not mine"}
    )
    assert_error(resolve, 404, "not_found")
    named = {"customer_id": mine, "model_name": MODEL, "model_version": VERSION}
    assert_error(http.post("/api/v1/quality/detect", headers=outsider_headers, json=named), 404, "not_found")
    abtest = {
        "customer_id": mine,
        "model_name": MODEL,
        "control": {"model_version": VERSION},
        "candidate": {"model_version": "x"},
    }
    assert_error(http.post("/api/v1/quality/abtest", headers=outsider_headers, json=abtest), 404, "not_found")
    assert_error(
        http.get("/api/v1/quality/settings", headers=outsider_headers, params={"customer_id": mine}), 404, "not_found"
    )
    stored_before = count_rows(api_server, "quality_metrics", team.tenant.id)
    records = simulate(36, 3, start=hours_ago(1))
    ingest_as_outsider = http.post(
        "/api/v1/quality/metrics", headers=outsider_headers, json={"customer_id": mine, "records": records}
    )
    assert_error(ingest_as_outsider, 404, "not_found")
    assert count_rows(api_server, "quality_metrics", team.tenant.id) == stored_before
    # Request ids are each customer's own: the outsider's traffic may reuse A's, and learns nothing from it.
    taken = [row["request_id"] for row in stored_metrics(api_server, team.tenant.id)[:3]]
    reused = [{**record, "request_id": request_id} for record, request_id in zip(records, taken, strict=True)]
    operator.assign_customer(team.reporter.agent_id, outsider.id)
    assert ingest(team.reporter.client, reused, outsider.id) == {"received": 3, "inserted": 3, "duplicates": 0}
    assert count_rows(api_server, "quality_metrics", team.tenant.id) == stored_before
    # The outsider's own view of the same model: its three records, and no baseline of its own.
    own = outsider.client.detect(MODEL, VERSION)
    assert own.verdict == "no_baseline"
    assert own.window["sample_size"] == 3

    # The rows are there: the owner and the operator see them.
    assert team.customer.request("GET", f"/quality/regressions/{regression_id}")["id"] == regression_id
    assert operator.request("GET", "/quality/regressions", params={"customer_id": mine})["items"]
    assert operator.request("GET", "/quality/baselines", params={"customer_id": mine})["items"]


# --- the quality gate ------------------------------------------------------------------------------------------


def test_gate_refuses_completion_while_quality_has_regressed_since_the_start(team: Team, http: httpx.Client) -> None:
    with_baseline(team, seed=40)
    optimization = team.start_optimization()
    assert optimization.started_at is not None
    degraded_after(team, optimization.started_at, seed=41)

    response = http.post(
        f"/api/v1/optimizations/{optimization.id}/complete", headers=bearer(team.optimizer.key), json={"result": {}}
    )

    error = assert_error(response, 409, "conflict")
    assert error["details"]["verdict"] == "regression"
    blocking = error["details"]["blocking"]
    assert {entry["metric_name"] for entry in blocking} >= {"overall_quality_score"}
    for entry in blocking:
        assert entry["source"] == "judge"
        assert entry["severity"] in {"high", "critical"}
        assert (entry["model_name"], entry["model_version"]) == (MODEL, VERSION)
        assert entry["current_value"] != entry["baseline_value"]
    refused = team.customer.get_optimization(optimization.id)
    assert (refused.status, refused.completed_at) == ("executing", None)
    assert team.customer.get_recommendation(optimization.recommendation_id).status == "executing"
    assert team.events("optimization.completed") == []


def test_gate_blocks_on_an_open_regression_until_it_is_resolved(team: Team, http: httpx.Client) -> None:
    with_baseline(team, seed=42)
    degraded_in_the_past(team, seed=43)  # before the optimization starts
    optimization = team.start_optimization()
    report = team.detect({"last_n": 300})
    assert report["verdict"] == "regression"
    # Nothing had completed before the window, so there was nothing to roll back: people must look.
    assert report["rolled_back_optimization_id"] is None
    blocking_ids = {r["id"] for r in report["regressions"] if r["severity"] in {"high", "critical"}}
    assert blocking_ids
    for regression in report["regressions"]:
        if regression["id"] in blocking_ids:
            assert regression["action_taken"] == "manual_review"
            assert "no executing or completed optimization" in regression["metadata"]["action_note"]
    url = f"/api/v1/optimizations/{optimization.id}/complete"

    refused = http.post(url, headers=bearer(team.optimizer.key), json={})
    blocking = assert_error(refused, 409, "conflict")["details"]["blocking"]
    assert {entry["regression_id"] for entry in blocking if entry["source"] == "recorded"} == blocking_ids

    for regression_id in blocking_ids:
        team.resolve(regression_id, "vendor fixed it")
    completed = http.post(url, headers=bearer(team.optimizer.key), json={})
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "completed"


def test_gate_lets_an_optimization_with_healthy_quality_complete(team: Team) -> None:
    with_baseline(team, seed=44)
    optimization = team.start_optimization()
    assert optimization.started_at is not None
    team.ingest(
        simulate(
            45, 300, start=optimization.started_at + timedelta(milliseconds=50), spacing=timedelta(milliseconds=50)
        )
    )

    completed = team.optimizer.client.complete_optimization(optimization.id, actual_savings=Decimal("10.00"))

    assert completed.status == "completed"
    assert team.customer.get_recommendation(optimization.recommendation_id).status == "completed"


# --- people resolving regressions ------------------------------------------------------------------------------


def test_customer_resolves_a_regression_with_notes_and_only_once(team: Team) -> None:
    regression = regressed_without_optimization(team)["regressions"][0]
    notes = "Rolled the prompt template back by hand."

    resolved = team.resolve(regression["id"], notes)

    assert resolved["id"] == regression["id"]
    assert resolved["resolved_at"] is not None
    assert resolved["resolution_notes"] == notes
    stored = team.customer.request("GET", f"/quality/regressions/{regression['id']}")
    assert (stored["resolution_notes"], stored["resolved_at"] is not None) == (notes, True)
    assert regression["id"] not in {r["id"] for r in team.regressions(open=True)}
    assert regression["id"] in {r["id"] for r in team.regressions(open=False)}
    [event] = [
        e for e in team.events("quality.regression_resolved") if e.data["subject"]["regression_id"] == regression["id"]
    ]
    assert event.data["notes"] == notes
    assert event.data["actor"]["role"] == "customer"

    with pytest.raises(ApiError) as again:
        team.resolve(regression["id"], "again")

    assert (again.value.status_code, again.value.code) == (409, "conflict")
    assert datetime.fromisoformat(again.value.details["resolved_at"]) == datetime.fromisoformat(stored["resolved_at"])
    after = team.customer.request("GET", f"/quality/regressions/{regression['id']}")
    assert (after["resolution_notes"], after["resolved_at"]) == (notes, stored["resolved_at"])


# --- A/B tests -------------------------------------------------------------------------------------------------


def ab_test(team: Team, control: dict[str, Any], candidate: dict[str, Any], **window: Any) -> dict[str, Any]:
    body = {"model_name": MODEL, "control": control, "candidate": candidate, **window}
    answer: dict[str, Any] = team.customer.request("POST", "/quality/abtest", json=body)
    return answer


def test_ab_test_rejects_a_clearly_worse_candidate(team: Team) -> None:
    control = simulate(50, 300, start=hours_ago(3), version="v1")
    candidate = simulate(51, 300, start=hours_ago(3), version="v2", profile=DEGRADED)
    team.ingest(control + candidate)

    result = ab_test(team, {"model_version": "v1"}, {"model_version": "v2"})

    assert result["verdict"] == "reject"
    assert "overall score lower" in result["reason"]
    assert result["extra_samples_needed"] == 0
    assert result["tests"]["overall_quality_score"]["p_value_adjusted"] < 0.01
    for name, records in (("control", control), ("candidate", candidate)):
        arm = result[name]
        assert arm["count"] == 300
        assert arm["overall"]["mean"] == pytest.approx(column(records, "overall_quality_score").mean())
        assert arm["overall"]["ci95_low"] < arm["overall"]["mean"] < arm["overall"]["ci95_high"]
        assert arm["components"]["factuality_score"]["mean"] == pytest.approx(
            column(records, "factuality_score").mean()
        )
        assert arm["p95_latency_ms"] == pytest.approx(np.quantile(column(records, "latency_ms"), 0.95))
        assert arm["hallucination_rate"] == pytest.approx(np.mean([r["hallucination_detected"] for r in records]))
    assert (result["control"]["label"], result["candidate"]["label"]) == ("version v1", "version v2")


def test_ab_test_promotes_an_equal_candidate_with_plenty_of_samples(team: Team) -> None:
    team.ingest(simulate(52, 1000, start=hours_ago(3), version="v1", spacing=timedelta(seconds=5)))
    team.ingest(simulate(53, 1000, start=hours_ago(3), version="v2", spacing=timedelta(seconds=5)))

    result = ab_test(team, {"model_version": "v1"}, {"model_version": "v2"})

    assert result["verdict"] == "promote", result["reason"]
    assert result["extra_samples_needed"] == 0
    low, high = result["tests"]["overall_quality_score"]["ci95"]
    assert -0.05 < low < 0 < high


def test_ab_test_on_tiny_arms_is_inconclusive_and_says_how_many_more_samples(team: Team) -> None:
    team.ingest(simulate(54, 20, start=hours_ago(3), version="v1"))
    team.ingest(simulate(55, 20, start=hours_ago(3), version="v2"))

    result = ab_test(team, {"model_version": "v1"}, {"model_version": "v2"})

    assert result["verdict"] == "inconclusive"
    assert result["extra_samples_needed"] == 30  # up to the minimum of 50 per arm
    assert result["tests"] == {}
    assert (result["control"]["count"], result["candidate"]["count"]) == (20, 20)


def test_ab_test_on_noisy_arms_is_inconclusive_and_says_how_many_more_samples(team: Team) -> None:
    noisy = Profile(overall=(0.6, 0.25))
    team.ingest(simulate(56, 60, start=hours_ago(3), version="v1", profile=noisy))
    team.ingest(simulate(57, 60, start=hours_ago(3), version="v2", profile=noisy))

    result = ab_test(team, {"model_version": "v1"}, {"model_version": "v2"})

    assert result["verdict"] == "inconclusive", result["reason"]
    assert result["extra_samples_needed"] > 0
    assert result["tests"]["overall_quality_score"]["ci95"][0] < -0.05


def test_ab_test_arms_can_be_chosen_by_a_metadata_label(team: Team) -> None:
    team.ingest(simulate(58, 200, start=hours_ago(3), metadata={"prompt": "short"}))
    team.ingest(simulate(59, 200, start=hours_ago(3), metadata={"prompt": "long"}, profile=DEGRADED))
    team.ingest(simulate(60, 100, start=hours_ago(3), metadata={"prompt": "other"}))
    team.ingest(simulate(61, 100, start=hours_ago(6), metadata={"prompt": "short"}))  # before the test's window

    result = ab_test(
        team,
        {"metadata_key": "prompt", "metadata_value": "short"},
        {"metadata_key": "prompt", "metadata_value": "long"},
        start=hours_ago(4).isoformat(),
    )

    assert result["verdict"] == "reject"
    assert (result["control"]["label"], result["candidate"]["label"]) == ("prompt=short", "prompt=long")
    assert (result["control"]["count"], result["candidate"]["count"]) == (200, 200)
