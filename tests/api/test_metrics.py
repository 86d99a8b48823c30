"""/metrics: the counters and gauges of issue 15, read from the database (so every process reports the same), with
every state present (0 when empty); the alert rules, the Grafana dashboard and a live scrape pass promtool."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.api.conftest import AgentHandle, Server, Tenant

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "optiinfra-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "optiinfra-dashboard.json"
COUNTERS = {
    "optiinfra_quality_records_ingested": {"source"},
    "optiinfra_quality_records_duplicate": {"source"},
    "optiinfra_quality_records_rejected": {"source"},
    "optiinfra_detection_passes": {"source", "verdict"},
    "optiinfra_incidents_opened": {"severity"},
    "optiinfra_incidents_resolved": {"severity"},
    "optiinfra_rollbacks": set(),
    "optiinfra_workflow_runs": {"status"},
    "optiinfra_alert_deliveries": {"outcome"},
}


def scrape(http: httpx.Client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value}, for every sample of /metrics."""
    response = http.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def test_every_counter_and_every_state_is_reported_zero_included(http: httpx.Client) -> None:
    samples = scrape(http)
    for name, labels in COUNTERS.items():
        assert f"{name}_total" in samples, name
        assert all({key for key, _ in series} == labels for series in samples[f"{name}_total"]), name
    assert {dict(k)["status"] for k in samples["optiinfra_agents"]} == {
        "starting",
        "healthy",
        "degraded",
        "failed",
        "stopped",
    }
    assert {dict(k)["severity"] for k in samples["optiinfra_open_regressions"]} == {"low", "medium", "high", "critical"}
    for name in ("optiinfra_queue_depth", "optiinfra_queue_oldest_age_seconds"):
        assert {dict(k)["queue"] for k in samples[name]} == {"workflows", "alerts"}
    assert value(samples, "optiinfra_workers") >= 1  # the server's own worker
    assert {dict(k)["status"] for k in samples["optiinfra_alerts"]} == {"pending", "sending", "failed"}
    assert not any("customer_id" in dict(k) for series in samples.values() for k in series)


def test_ingest_counters_count_stored_duplicate_and_refused_records(
    http: httpx.Client,
    make_tenant: Callable[..., Tenant],
    make_agent: Callable[..., AgentHandle],
    api_server: Server,
) -> None:
    tenant = make_tenant()
    agent = make_agent(serves=[tenant])
    records = [
        {
            "request_id": f"metrics-{index}-{tenant.id}",
            "model_name": "m",
            "model_version": "v1",
            "timestamp": datetime.now(UTC).isoformat(),
            "overall_quality_score": 0.9,
        }
        for index in range(5)
    ]
    before = scrape(http)

    agent.client.request("POST", "/quality/metrics", json={"customer_id": str(tenant.id), "records": records})
    agent.client.request("POST", "/quality/metrics", json={"customer_id": str(tenant.id), "records": records[:3]})
    bad = [{**records[0], "request_id": "bad-1", "overall_quality_score": 7}, {**records[0], "request_id": "bad-2"}]
    refused = http.post(
        "/api/v1/quality/metrics",
        json={"customer_id": str(tenant.id), "records": bad},
        headers={"Authorization": f"Bearer {agent.key}"},
    )
    assert refused.status_code == 422
    assert [entry["index"] for entry in refused.json()["error"]["details"]["records"]] == [0]

    after = scrape(http)
    for name, delta in (("ingested", 5), ("duplicate", 3), ("rejected", 1)):
        metric = f"optiinfra_quality_records_{name}_total"
        assert value(after, metric, source="json") - value(before, metric, source="json") == delta, name
    # The refusal stored nothing else: the valid record of the refused batch is not there.
    with api_server.engine.connect() as connection:
        count = "SELECT count(*) FROM quality_metrics WHERE customer_id = :c AND request_id = 'bad-2'"
        assert connection.execute(text(count), {"c": tenant.id}).scalar_one() == 0


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("OPTIINFRA_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is required here: apt-get install prometheus")
        pytest.skip("promtool is not installed (CI installs Debian's prometheus package)")
    return found


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_rules_dashboard_and_a_live_scrape_pass_promtool(http: httpx.Client, tmp_path: Path) -> None:
    promtool = _promtool()
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # promtool parses the dashboard's queries as recording rules.
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{i}", "expr": expr} for i, expr in enumerate(_dashboard_expressions())
                ],
            }
        ]
    }
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(as_rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "dashboard-rules.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    scraped = http.get("/metrics").text
    linted = subprocess.run([promtool, "check", "metrics"], input=scraped, capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr

    # Every OptiInfra metric the rules and the dashboard use is one /metrics serves.
    served = {family.name for family in text_string_to_metric_families(scraped)}
    served |= {f"{name}_total" for name in served} | {f"{name}_bucket" for name in served}
    used = set(re.findall(r"optiinfra_[a-z_]+", RULES.read_text() + " ".join(_dashboard_expressions())))
    assert used - served == set()
