"""The inputs issue 12's probe used to break the server: each is refused with 422 (never 400 or 500), and the reads
that used to fail over stored bad rows keep working."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text

from optiinfra.validation import DEFAULT_JSON_FIELD_LIMIT
from tests.api.conftest import AgentHandle, Server, Tenant

YEAR_ONE = "0001-01-01T00:00:00+14:00"
OUT_OF_RANGE = [YEAR_ONE, "2201-01-01T00:00:00Z", "1970-01-01T00:30:00+01:00", "9999-12-31T23:59:59-14:00"]
NOW = datetime.now(UTC).isoformat()


@pytest.fixture
def raw(api_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=30) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _problem(response: httpx.Response) -> dict[str, object]:
    """The first problem of a 422, in the request shape ({location, message, type}); a refused batch lists its bad
    items' problems as {field, message} under the batch's name, turned into the same shape here."""
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    if "problems" in details:
        problems = details["problems"]
        assert problems, response.text
        return problems[0]  # type: ignore[no-any-return]
    (listed,) = [value for key, value in details.items() if key != "invalid_count"]
    first = listed[0]["problems"][0]
    return {"location": first["field"].split("."), "message": first["message"], "type": "batch"}


def _quality(customer_id: uuid.UUID, **record: object) -> dict[str, object]:
    base = {"request_id": uuid.uuid4().hex, "model_name": "m", "model_version": "v1", "timestamp": NOW}
    return {"customer_id": str(customer_id), "records": [{**base, **record}]}


def _scaling(customer_id: uuid.UUID, **fields: object) -> dict[str, object]:
    return {
        "customer_id": str(customer_id),
        "event_type": "scale_up",
        "trigger_reason": "load",
        "before_state": {"instances": 1},
        "after_state": {"instances": 2},
        "executed_at": NOW,
        **fields,
    }


def _resource(customer_id: uuid.UUID, **fields: object) -> dict[str, object]:
    sample = {
        "resource_type": "gpu",
        "instance_id": "i-1",
        "metric_name": "utilization",
        "metric_value": 0.5,
        "unit": "ratio",
        "timestamp": NOW,
    }
    return {"customer_id": str(customer_id), "metrics": [{**sample, **fields}]}


Case = Callable[[Tenant, AgentHandle, str], tuple[str, str, dict[str, object] | None, dict[str, str] | None]]

INSTANT_CASES: dict[str, Case] = {
    "quality record timestamp": lambda t, a, moment: (
        "POST",
        "/quality/metrics",
        _quality(t.id, timestamp=moment),
        None,
    ),
    "baseline valid_until": lambda t, a, moment: (
        "POST",
        "/quality/baselines",
        {"customer_id": str(t.id), "model_name": "m", "model_version": "v1", "valid_until": moment},
        None,
    ),
    "resource metric timestamp": lambda t, a, moment: (
        "POST",
        "/resources/metrics",
        _resource(t.id, timestamp=moment),
        None,
    ),
    "scaling event executed_at": lambda t, a, moment: (
        "POST",
        "/resources/scaling-events",
        _scaling(t.id, executed_at=moment),
        None,
    ),
    "agent metric recorded_at": lambda t, a, moment: (
        "POST",
        f"/agents/{a.agent_id}/metrics",
        {"metrics": [{"metric_name": "queue", "metric_value": 1, "recorded_at": moment}]},
        None,
    ),
    "events since (query)": lambda t, a, moment: ("GET", "/events", None, {"since": moment}),
}


@pytest.mark.parametrize("case", INSTANT_CASES, ids=list(INSTANT_CASES))
def test_instants_outside_1970_to_2200_are_refused(
    case: str, raw: httpx.Client, api_server: Server, tenant: Tenant, make_agent: Callable[..., AgentHandle]
) -> None:
    from optiinfra.models import AgentType

    agent = make_agent(AgentType.RESOURCE)
    for moment in OUT_OF_RANGE:
        method, path, body, params = INSTANT_CASES[case](tenant, agent, moment)
        key = api_server.operator_key if body else tenant.customer.api_key
        response = raw.request(method, f"/api/v1{path}", json=body, params=params, headers=_bearer(key))
        problem = _problem(response)
        assert "1970" in str(problem["message"]), problem
        assert "2200" in str(problem["message"]), problem


def test_reads_keep_working_after_out_of_range_instants_were_tried(
    raw: httpx.Client, tenant: Tenant, make_agent: Callable[..., AgentHandle]
) -> None:
    """The probe's year-0001 rows made every later read of baselines and the quality page fail with 500."""
    from optiinfra.models import AgentType

    agent = make_agent(AgentType.APPLICATION)
    raw.post("/api/v1/quality/metrics", json=_quality(tenant.id, timestamp=YEAR_ONE), headers=_bearer(agent.key))
    for path in ("/api/v1/quality/baselines", "/api/v1/quality/regressions", "/api/v1/events"):
        assert raw.get(path, headers=_bearer(tenant.customer.api_key)).status_code == 200


def test_a_lone_surrogate_anywhere_in_json_is_refused(raw: httpx.Client, tenant: Tenant, agent: AgentHandle) -> None:
    surrogate = '"\\ud800"'
    bodies = {
        "/events": f'{{"event_type": "probe.unicode", "data": {{"text": {surrogate}}}}}',
        "/quality/metrics": json.dumps(_quality(tenant.id)).replace('"v1"', surrogate),
        "/recommendations": json.dumps(
            {"customer_id": str(tenant.id), "type": "rightsizing", "title": "t", "confidence_score": 0.5}
        ).replace('"t"', surrogate),
    }
    for path, body in bodies.items():
        for variant in (body, body.replace("text", "\\udfff")):
            response = raw.post(
                f"/api/v1{path}", content=variant, headers={**_bearer(agent.key), "content-type": "application/json"}
            )
            assert _problem(response)["type"] == "invalid_unicode", (path, response.text)


def test_large_batches_are_vetted_off_the_event_loop_just_as_strictly(
    raw: httpx.Client, tenant: Tenant, agent: AgentHandle
) -> None:
    """Bodies above INLINE_PARSE_BYTES are parsed on a worker thread: the same refusals, the same places."""
    from optiinfra.api.strict import INLINE_PARSE_BYTES

    batch = _quality(tenant.id)
    record = batch["records"][0]  # type: ignore[index]
    records = [{**record, "request_id": f"big-{index}"} for index in range(400)]
    body = json.dumps({**batch, "records": records})
    assert len(body) > INLINE_PARSE_BYTES
    headers = {**_bearer(agent.key), "content-type": "application/json"}
    for bad, kind in (('"\\ud800"', "invalid_unicode"), ("1e999", "finite_number")):
        variant = body[: body.rindex('"v1"')] + bad + body[body.rindex('"v1"') + 4 :]
        problem = _problem(raw.post("/api/v1/quality/metrics", content=variant, headers=headers))
        assert problem["type"] == kind
        assert problem["location"] == ["body", "records", 399, "model_version"]


def test_batch_items_that_are_not_objects_are_refused_by_index(
    raw: httpx.Client, tenant: Tenant, agent: AgentHandle
) -> None:
    """The framework passes batch items through unchecked (BatchItem); the service's validation names each bad one
    and stores nothing."""
    batch = _quality(tenant.id)
    batch["records"] = [*batch["records"], 7, "text", None]  # type: ignore[misc]
    response = raw.post("/api/v1/quality/metrics", json=batch, headers=_bearer(agent.key))
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert details["invalid_count"] == 3
    assert [item["index"] for item in details["records"]] == [1, 2, 3]
    metrics = {"metrics": [5]}
    response = raw.post(f"/api/v1/agents/{agent.agent_id}/metrics", json=metrics, headers=_bearer(agent.key))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" + "0" * 5000, "-" + "9" * 400])
def test_numbers_beyond_double_range_are_refused(number: str, raw: httpx.Client, agent: AgentHandle) -> None:
    """1e999 used to be stored as null; a 5,000-digit integer got an undocumented 400."""
    body = f'{{"event_type": "probe.number", "data": {{"n": {number}}}}}'
    response = raw.post(
        "/api/v1/events", content=body, headers={**_bearer(agent.key), "content-type": "application/json"}
    )
    problem = _problem(response)
    assert problem["type"] == "finite_number"
    assert problem["location"] == ["body", "data", "n"]


def test_a_free_form_json_field_over_the_limit_is_refused_naming_it(
    raw: httpx.Client, api_server: Server, tenant: Tenant, agent: AgentHandle
) -> None:
    limit = DEFAULT_JSON_FIELD_LIMIT
    fits = {"blob": "a" * (limit - 20)}
    too_big = {"blob": "a" * limit}
    accepted = raw.post("/api/v1/events", json={"event_type": "probe.size", "data": fits}, headers=_bearer(agent.key))
    assert accepted.status_code == 201, accepted.text
    cases = [
        ("/events", {"event_type": "probe.size", "data": too_big}, ["body", "data"]),
        ("/quality/metrics", _quality(tenant.id, metadata=too_big), ["body", "records", "0", "metadata"]),
        ("/agents/{agent}/heartbeat", {"status": "healthy", "metadata": too_big}, ["body", "metadata"]),
    ]
    for path, body, location in cases:
        response = raw.post(
            f"/api/v1{path.format(agent=agent.agent_id)}",
            json=body,
            headers=_bearer(agent.key if "quality" not in path else api_server.operator_key),
        )
        problem = _problem(response)
        assert problem["location"][-1] == location[-1], problem  # type: ignore[index]
        assert str(limit) in str(problem["message"])


def test_event_lists_cap_rows_stored_before_the_limits(raw: httpx.Client, api_server: Server, tenant: Tenant) -> None:
    """The probe stored 12 events of 15 MiB; a list of 50 then answered 180 MiB. Such rows (only the database can
    hold them now) are listed with a stand-in for their data."""
    with api_server.engine.begin() as connection:
        for _ in range(3):
            connection.execute(
                text(
                    "INSERT INTO events (customer_id, event_type, severity, data) "
                    "VALUES (:c, 'probe.huge', 'info', jsonb_build_object('blob', repeat('x', 4 * 1024 * 1024)))"
                ),
                {"c": tenant.id},
            )
    response = raw.get(
        "/api/v1/events", params={"event_type": "probe.huge", "limit": 50}, headers=_bearer(tenant.customer.api_key)
    )
    assert response.status_code == 200
    assert len(response.content) < 10_000
    items = response.json()["items"]
    assert len(items) == 3
    assert all(item["data"] == {"truncated": True, "size_bytes": 4 * 1024 * 1024 + 12} for item in items)


def test_nul_in_a_dashboard_query_parameter_is_refused_not_a_server_error(raw: httpx.Client) -> None:
    response = raw.get("/events", params={"event_type": "\x00"})
    assert response.status_code == 422
