"""A client generated from our OpenAPI document by openapi-python-client (code no one here wrote) talks to a real
server: every schema name and operation id is unique, and three calls (a read of one's own row, a list, a write
with a nested body) come back parsed into the generated models (issue 17)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from optiinfra.enums import AgentType
from tests.api.conftest import AgentHandle, Server, Tenant

PACKAGE = "optiinfra_generated_client"


@pytest.fixture(scope="module")
def spec(api_server: Server) -> dict[str, Any]:
    return httpx.get(f"{api_server.base_url}/openapi.json", timeout=30).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def generated(spec: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("generated")
    (root / "openapi.json").write_text(json.dumps(spec))
    tool = Path(sys.executable).parent / "openapi-python-client"
    result = subprocess.run(
        [str(tool), "generate", "--path", "openapi.json", "--output-path", PACKAGE, "--meta", "none"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tool.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The only pieces it cannot generate are the OTLP endpoints' protobuf bodies (OTLP clients are the SDKs).
    output = (result.stdout + result.stderr).splitlines()
    warnings = [line for line in output if line.startswith("WARNING parsing")]
    assert {line.split()[3] for line in warnings} <= {"/v1/traces", "/v1/logs"}, warnings
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_operation_ids_are_short_stable_and_unique(spec: dict[str, Any]) -> None:
    ids = [operation["operationId"] for item in spec["paths"].values() for operation in item.values()]
    assert not [name for name, count in Counter(ids).items() if count > 1]
    assert "recommendations_decide" in ids
    assert all("api_v1" not in name for name in ids)


def test_schema_names_are_unique_without_module_prefixes(spec: dict[str, Any]) -> None:
    names = list(spec["components"]["schemas"])
    assert not [name for name in names if "__" in name]
    assert {"QualityIngestResult", "ResourceIngestResult", "AgentMetricsIngestResult"} <= set(names)


def test_operations_declare_only_the_errors_they_can_give(spec: dict[str, Any]) -> None:
    health = spec["paths"]["/healthz"]["get"]["responses"]
    assert set(health) == {"200", "503"}  # 503: answered by the front while no API process runs
    assert not {"401", "403", "429", "404"} & set(spec["paths"]["/readyz"]["get"]["responses"])
    listing = spec["paths"]["/api/v1/recommendations"]["get"]["responses"]
    assert not {"409", "413"} & set(listing)
    assert "401" in listing
    decide = spec["paths"]["/api/v1/recommendations/{recommendation_id}/decision"]["post"]["responses"]
    assert {"401", "404", "409", "413", "422"} <= set(decide)


def test_three_calls_through_the_generated_client(
    generated: ModuleType, api_server: Server, tenant: Tenant, make_agent: Any
) -> None:
    agent: AgentHandle = make_agent(AgentType.COST, serves=[tenant])
    client_module = importlib.import_module(f"{PACKAGE}.client")
    get_me = importlib.import_module(f"{PACKAGE}.api.customers.customers_get_me")
    append_event = importlib.import_module(f"{PACKAGE}.api.events.events_append_event")
    list_events = importlib.import_module(f"{PACKAGE}.api.events.events_list_events")
    models = importlib.import_module(f"{PACKAGE}.models")

    as_customer = client_module.AuthenticatedClient(base_url=api_server.base_url, token=tenant.customer.api_key)
    as_agent = client_module.AuthenticatedClient(base_url=api_server.base_url, token=agent.key)

    me = get_me.sync(client=as_customer)
    assert isinstance(me, models.Customer)
    assert str(me.id) == str(tenant.id)

    body = models.EventCreate.from_dict(
        {"event_type": "generated.client", "customer_id": str(tenant.id), "data": {"note": "from a generated client"}}
    )
    created = append_event.sync(client=as_agent, body=body)
    assert isinstance(created, models.Event), created
    assert created.event_type == "generated.client"

    page = list_events.sync(client=as_customer, event_type="generated.client")
    assert [str(item.id) for item in page.items] == [str(created.id)]
    assert page.items[0].data.to_dict()["payload"] == {"note": "from a generated client"}
