"""The collector's pure parts: the recommendation rules, prices, chunk planning, Prometheus answers; and the
source rules (endpoint safety, label names, write-only secrets)."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.collectors import queries, service
from optiinfra.collectors.analysis import Thresholds, downsize_finding, scale_up_finding
from optiinfra.collectors.collector import Snapshot, plan
from optiinfra.collectors.prometheus import Connection, PrometheusError, parse_matrix
from optiinfra.collectors.schemas import PrometheusSourceCreate
from optiinfra.errors import InvalidInputError
from optiinfra.models import ResourceType
from optiinfra.workflows.catalog import load_catalog
from optiinfra.workflows.repository import InstanceHistory
from optiinfra.workflows.scaling import fleet_prices
from optiinfra.workflows.spot_migration import find_candidates
from tests.factories import make_customer

CATALOG = load_catalog()
LABELS = queries.LabelMapping("node", "instance_type", "zone", "capacity_type")


def test_saturated_kv_cache_or_growing_queue_calls_for_a_replica_with_littles_law() -> None:
    flat = [0.5] * 30
    assert scale_up_finding(flat, [0.0] * 30, [4.0] * 30, Thresholds()) is None
    full = scale_up_finding([0.95] * 30, [0.0] * 30, [4.0] * 30, Thresholds())
    assert full is not None
    assert full["signals"] == ["KV cache at or above 90% in 100% of the steps (needs 80%)"]
    growing = scale_up_finding(flat, [float(i) for i in range(30)], [5.0] * 30, Thresholds())
    assert growing is not None
    assert growing["queue_wait_seconds"] == pytest.approx(24.5 / 5.0)  # last third: 20..29 waiting, 5 done/s
    # 79 % of the steps full is not sustained; a queue of 0.6 is not a queue.
    assert scale_up_finding([0.95] * 79 + [0.5] * 21, [0.0] * 100, [], Thresholds()) is None
    assert scale_up_finding(flat, [0.0] * 20 + [0.6] * 10, [], Thresholds()) is None
    # Too few steps is no evidence.
    assert scale_up_finding([0.99] * 4, [0.0, 9.0, 9.0, 9.0], [1.0], Thresholds()) is None


def test_idle_gpus_move_to_the_cheapest_type_that_carries_their_load() -> None:
    hourly = [2.0, 14.0] * 24
    found, why_not = downsize_finding(hourly, 48, 4, "g5.12xlarge", "on_demand", CATALOG, Thresholds())
    assert why_not is None
    assert found is not None
    assert (found["gpus_needed"], found["proposed_type"]) == (1, "g6.xlarge")
    assert found["monthly_savings"] == round((5.672 - 0.8048) * 730, 2)
    spot, _ = downsize_finding(hourly, 48, 4, "g5.12xlarge", "spot", CATALOG, Thresholds())
    assert spot is not None
    assert spot["monthly_savings"] == round((2.2688 - 0.3219) * 730, 2)  # priced as it runs
    busy, why_not = downsize_finding([45.0] * 48, 48, 4, "g5.12xlarge", "on_demand", CATALOG, Thresholds())
    assert (busy, why_not) == (None, None)
    short, why_not = downsize_finding(hourly[:40], 48, 4, "g5.12xlarge", None, CATALOG, Thresholds())
    assert short is None
    assert why_not == "only 40 of 48 hours of GPU utilization"
    unknown, why_not = downsize_finding(hourly, 48, 1, "x9.huge", None, CATALOG, Thresholds())
    assert unknown is None
    assert why_not is not None
    assert "not in the price catalog" in why_not


def test_spot_analysis_leaves_machines_already_on_spot_alone() -> None:
    steady = [60.0 + (i % 3) for i in range(30)]
    analysis = find_candidates(
        [
            InstanceHistory("a", "g5.xlarge", ResourceType.GPU, steady, purchase_option="on_demand", zone="us-east-1a"),
            InstanceHistory("b", "g5.xlarge", ResourceType.GPU, steady, purchase_option="spot", zone="us-east-1b"),
        ],
        CATALOG,
    )
    assert [c["instance_id"] for c in analysis["candidates"]] == ["a"]
    assert analysis["candidates"][0]["zone"] == "us-east-1a"
    assert analysis["rejected"] == [{"instance_id": "b", "reason": "already on spot capacity"}]


def test_scaling_prices_come_from_the_instance_types_and_purchase_options() -> None:
    prices = fleet_prices(
        [("a", "g5.xlarge", "on_demand"), ("b", "g5.xlarge", "on_demand"), ("c", "g5.2xlarge", "spot")], CATALOG
    )
    assert prices["removed_monthly"] == round(0.4606 * 730, 2)  # the cheapest machine: the spot g5.2xlarge
    assert prices["added_monthly"] == round(1.006 * 730, 2)  # the most common: g5.xlarge on demand
    assert fleet_prices([("a", "unknown", None)], CATALOG)["removed_monthly"] is None


def _snapshot(collected_until: datetime | None, step: int = 15, lookback_hours: int = 50) -> Snapshot:
    return Snapshot(
        id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        name="prod",
        connection=Connection("https://prometheus.example"),
        labels=LABELS,
        step=step,
        lookback=timedelta(hours=lookback_hours),
        collected_until=collected_until,
        resource_agent_id=uuid.uuid4(),
        serving_agent_id=uuid.uuid4(),
    )


def test_chunks_are_aligned_contiguous_and_end_a_step_before_now() -> None:
    now = datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)
    chunks = plan(_snapshot(None), now)
    assert chunks[0][0] == datetime(2026, 2, 27, 10, 0, 15, tzinfo=UTC)  # now - 50 h, rounded up to a step
    assert chunks[-1][1] == datetime(2026, 3, 1, 11, 59, 45, tzinfo=UTC)  # the last whole step before now - 15 s
    for (_, end), (start, _) in itertools.pairwise(chunks):
        assert start - end == timedelta(seconds=15)
    assert all((end - start).total_seconds() / 15 + 1 <= 10_000 for start, end in chunks)
    resumed = plan(_snapshot(datetime(2026, 3, 1, 11, 0, tzinfo=UTC)), now)
    assert resumed[0][0] == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert plan(_snapshot(datetime(2026, 3, 1, 12, 0, tzinfo=UTC)), now) == []


def test_queries_group_by_the_label_mapping_only() -> None:
    kv = next(spec for spec in queries.QUERIES if spec.key == "vllm.kv_cache_usage")
    assert queries.render(kv, LABELS, 15) == (
        "avg by (node, instance_type, zone, capacity_type, model_name) (vllm:gpu_cache_usage_perc) "
        "or avg by (node, instance_type, zone, capacity_type, model_name) (vllm:kv_cache_usage_perc)"
    )
    cpu = queries.QUERIES[0]
    assert "[300s]" in queries.render(cpu, LABELS, 15)
    assert "[480s]" in queries.render(cpu, LABELS, 120)
    assert [queries.purchase_option(v) for v in ("SPOT", "ON_DEMAND", "preemptible", "", None)] == [
        "spot",
        "on_demand",
        "spot",
        None,
        None,
    ]


def test_prometheus_answers_are_read_or_refused_in_words() -> None:
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"node": "a"}, "values": [[1700000000, "1.5"], [1700000015, "NaN"]]}],
        },
    }
    (series,) = parse_matrix(200, json.dumps(body).encode())
    assert series.labels == {"node": "a"}
    assert series.points == [(datetime.fromtimestamp(1700000000, UTC), 1.5)]  # NaN left out
    error = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    with pytest.raises(PrometheusError, match=r"bad_data.*parse error"):
        parse_matrix(400, json.dumps(error).encode())
    with pytest.raises(PrometheusError, match="not its JSON API"):
        parse_matrix(502, b"<html>bad gateway</html>")
    assert Connection("https://p", "bearer", None, "tok").headers() == {"Authorization": "Bearer tok"}
    assert Connection("https://p", "basic", "u", "p").headers() == {"Authorization": "Basic dTpw"}


def test_sources_refuse_unsafe_urls_and_odd_labels_and_never_show_the_secret(session: Session) -> None:
    customer = make_customer(session)
    operator = Principal.operator()
    for url, message in (
        ("http://127.0.0.1:9090", "loopback"),
        ("http://10.0.0.5:9090", "private"),
        ("https://user:pw@prometheus.example", "user-info"),
        ("https://prometheus.example/?token=x", "query string"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            service.create_source(
                session, operator, PrometheusSourceCreate(customer_id=customer.id, name="p", base_url=url)
            )
    with pytest.raises(ValidationError):
        PrometheusSourceCreate(name="p", base_url="https://p.example", instance_label='node"} or vector(1) #')
    with pytest.raises(ValidationError, match="needs auth_secret"):
        PrometheusSourceCreate(name="p", base_url="https://p.example", auth_type="bearer")
    created = service.create_source(
        session,
        operator,
        PrometheusSourceCreate(
            customer_id=customer.id,
            name="p",
            base_url="https://prometheus.example/",
            auth_type="bearer",
            auth_secret="s3",
        ),
    )
    assert created.base_url == "https://prometheus.example"
    assert created.has_auth_secret
    assert "s3" not in created.model_dump_json()
