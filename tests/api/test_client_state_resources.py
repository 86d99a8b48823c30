"""The Python client's agent-state and resources methods, against the real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from optiinfra.client import ApiError
from tests.api.conftest import AgentHandle, Tenant


def test_agent_configures_itself_and_takes_and_releases_a_lock(agent: AgentHandle, make_agent) -> None:  # type: ignore[no-untyped-def]
    config = agent.client.set_agent_config(agent.agent_id, "batch_size", "32", "integer")
    assert config.parsed_value == 32
    assert [c.key for c in agent.client.agent_configs(agent.agent_id)] == ["batch_size"]
    with pytest.raises(ApiError) as bad:
        agent.client.set_agent_config(agent.agent_id, "batch_size", "thirty-two", "integer")
    assert bad.value.status_code == 422

    other = make_agent()
    lock = agent.client.acquire_lock(agent.agent_id, "gpu-cluster-a", "spot rollout")
    assert lock.agent_id == agent.agent_id
    with pytest.raises(ApiError) as taken:
        other.client.acquire_lock(other.agent_id, "gpu-cluster-a")
    assert taken.value.status_code == 409
    assert str(agent.agent_id) in taken.value.message + str(taken.value.details)
    agent.client.release_lock(agent.agent_id, "gpu-cluster-a")
    assert other.client.acquire_lock(other.agent_id, "gpu-cluster-a").agent_id == other.agent_id
    assert agent.client.update_agent_state(agent.agent_id, current_status="processing").current_status == "processing"


def test_resource_metrics_round_trip_through_the_client(tenant: Tenant, agent: AgentHandle) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    samples = [
        {
            "resource_type": "gpu",
            "instance_id": "gpu-1",
            "metric_name": "utilization",
            "metric_value": value,
            "unit": "percent",
            "timestamp": (now + timedelta(seconds=10 * i)).isoformat(),
        }
        for i, value in enumerate([40.0, 60.0, 80.0])
    ]
    result = agent.client.ingest_resource_metrics(samples, customer_id=tenant.id)
    assert result.inserted == 3
    series = tenant.client.resource_metrics(
        start=(now - timedelta(minutes=1)).isoformat(), end=(now + timedelta(minutes=5)).isoformat(), bucket="1d"
    )
    (bucket,) = series.buckets
    assert (bucket.instance_id, bucket.count, bucket.avg, bucket.min, bucket.max) == ("gpu-1", 3, 60.0, 40.0, 80.0)
