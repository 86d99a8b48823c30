"""Records sent with text over HTTP: stored waiting for the scorers, scored by the scoring job, and readable with their
text (kept by setting) by their tenant only."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from optiinfra.client import ApiError
from optiinfra.enums import AgentType
from tests.api.conftest import AgentHandle, Tenant

RECORD = {
    "request_id": "chat-1",
    "model_name": "support-bot",
    "model_version": "2024-06",
    "latency_ms": 640,
    "prompt": "Which planet is the hottest?",
    "response": "Venus, at about 465 degrees Celsius.",
    "context": "Venus is the hottest planet, with surface temperatures around 465 degrees Celsius.",
}


def test_text_sent_without_scores_is_scored_and_kept_for_its_tenant_only(
    tenant: Tenant,
    other_tenant: Tenant,
    make_agent: Callable[..., AgentHandle],
) -> None:
    make_agent(AgentType.APPLICATION, serves=[tenant])
    tenant.client.request("PUT", "/quality/settings", json={"scoring": {"keep_text": True, "text_retention_days": 2}})
    record = {**RECORD, "timestamp": datetime.now(UTC).isoformat()}
    assert tenant.client.request("POST", "/quality/metrics", json=record)["inserted"] == 1

    waiting = tenant.client.request("GET", "/quality/metrics/chat-1")
    assert waiting["scores_pending"] is True
    assert waiting["overall_quality_score"] is None
    assert waiting["text"]["response"] == RECORD["response"]
    assert waiting["text"]["scored_at"] is None
    with pytest.raises(ApiError) as refused:
        other_tenant.client.request("GET", "/quality/metrics/chat-1")
    assert refused.value.status_code == 404

    # The server's in-process worker (as with `optiinfra serve`) takes the scoring job the ingest deferred.
    deadline = time.monotonic() + 120
    scored = waiting
    while scored["scores_pending"] and time.monotonic() < deadline:
        time.sleep(0.5)
        scored = tenant.client.request("GET", "/quality/metrics/chat-1")
    assert scored["scores_pending"] is False
    assert scored["factuality_score"] == 1.0
    assert scored["hallucination_detected"] is False
    assert 0 <= scored["relevance_score"] <= 1
    assert set(scored["metadata"]["scorers"]) == {"relevance", "coherence", "groundedness", "hallucination", "toxicity"}
    assert scored["text"]["scored_at"] is not None  # kept for drill-down, by the tenant's setting


def test_text_over_its_size_limit_is_refused_whole(tenant: Tenant) -> None:
    record = {**RECORD, "request_id": "too-long", "timestamp": datetime.now(UTC).isoformat(), "response": "x" * 16_001}
    with pytest.raises(ApiError) as refused:
        tenant.client.request("POST", "/quality/metrics", json=record)
    assert refused.value.status_code == 422


def test_a_request_id_with_a_nul_character_is_refused_not_a_server_error(tenant: Tenant) -> None:
    with pytest.raises(ApiError) as refused:
        tenant.client.request("GET", "/quality/metrics/bad%00id")
    assert refused.value.status_code == 422
