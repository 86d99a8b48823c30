"""Events read as sentences that link to their subject; step outputs read as labelled lines."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from optiinfra.dashboard.wording import describe, output_lines


def _event(event_type: str, data: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(event_type=event_type, data=data, created_at=datetime.now(UTC))


def test_an_event_reads_as_a_sentence_linking_to_its_subject() -> None:
    text = describe(
        _event(
            "recommendation.approved",
            {
                "actor": {"role": "customer", "name": "ops@acme.example"},
                "subject": {"recommendation_id": "1a2b3c4d-0000-0000-0000-000000000000", "type": "spot_migration"},
                "before": {"status": "pending"},
                "after": {"status": "approved"},
                "comment": "Go ahead",
            },
        )
    )
    assert str(text) == (
        'ops@acme.example approved <a href="/recommendations/1a2b3c4d-0000-0000-0000-000000000000">the spot '
        "migration recommendation 1a2b3c4d</a>: status from pending to approved “Go ahead”."
    )


def test_each_kind_of_subject_links_to_its_page() -> None:
    cases = {
        "/incidents/r1": {"regression_id": "r1", "metric_name": "p95_latency_ms", "model_name": "m"},
        "/optimizations/o1": {"optimization_id": "o1"},
        "/workflows/w1": {"workflow_execution_id": "w1", "workflow": "canary_rollout"},
        "/agents#agent-a1": {"agent_id": "a1", "name": "cost-1"},
        "/quality?model=m:v": {"baseline_id": "b1", "model_name": "m", "model_version": "v"},
        "/alerts": {"route_id": "x", "name": "pager"},
    }
    for href, subject in cases.items():
        text = str(describe(_event("something.happened", {"actor": {"name": "system"}, "subject": subject})))
        assert f'href="{href}"' in text, (href, text)
        assert "{" not in text


def test_nothing_reads_as_a_python_dict_and_every_text_is_escaped() -> None:
    text = str(
        describe(
            _event(
                "agent.registered",
                {
                    "actor": {"name": "<script>"},
                    "subject": {"agent_id": "a1", "name": "<b>cost</b>"},
                    "after": {"status": "healthy", "limits": {"cpu": 2}},
                },
            )
        )
    )
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "&lt;b&gt;cost&lt;/b&gt;" in text
    assert "{" not in text
    assert "limits cpu 2" in text
    unknown = str(describe(_event("scaling.scale_up", {"instance_count": 3, "resolved": True})))
    assert unknown == "The system scaling scale up: instance count 3; resolved yes."


def test_step_outputs_read_as_labelled_lines() -> None:
    assert output_lines({}) == []
    lines = output_lines(
        {"gate": {"verdict": "passed", "samples": {"changed": 120}}, "instances": ["a", "b"], "note": None}
    )
    assert lines == [
        ("gate verdict", "passed"),
        ("gate samples", "changed 120"),
        ("instances", "2: a, b"),
        ("note", "none"),
    ]
