"""Events as sentences: who did what to which subject, the subject a link to its page, and the change in words
("status from approved to executing"), never a Python dict. Every text from the event is escaped."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

# What each event type says its actor did (the subject follows). Unknown types read as their name in words.
VERBS = {
    "agent.registered": "registered",
    "agent.status_changed": "saw the health of",
    "agent.state_changed": "changed the state of",
    "agent.failed": "saw a failure of",
    "agent.key_rotated": "rotated the key of",
    "agent.customer_assigned": "assigned a customer to",
    "agent.customer_unassigned": "removed a customer from",
    "agent.config_changed": "changed the configuration of",
    "agent.capability_changed": "changed a capability of",
    "agent.lock_acquired": "took a lock for",
    "agent.lock_released": "released a lock of",
    "agent.lock_expired": "saw a lock expire for",
    "customer.created": "created",
    "customer.updated": "updated",
    "customer.key_rotated": "rotated the key of",
    "recommendation.created": "proposed",
    "recommendation.approved": "approved",
    "recommendation.rejected": "rejected",
    "recommendation.status_changed": "changed the status of",
    "optimization.queued": "queued",
    "optimization.started": "started",
    "optimization.executing": "started",
    "optimization.progress": "reported progress on",
    "optimization.completed": "completed",
    "optimization.failed": "saw the failure of",
    "optimization.rolled_back": "rolled back",
    "optimization.status_changed": "changed the status of",
    "quality.regression_detected": "detected",
    "quality.regression_updated": "updated",
    "quality.regression_reopened": "reopened",
    "quality.regression_resolved": "resolved",
    "quality.rollback_triggered": "rolled back, because of a regression,",
    "quality.baseline_established": "established",
    "quality.baseline_ended": "ended",
    "quality.settings_updated": "changed the quality settings of",
    "otlp.settings_updated": "changed the OpenTelemetry settings of",
    "workflow.created": "created",
    "workflow.started": "started",
    "workflow.waiting": "is waiting in",
    "workflow.resumed": "resumed",
    "workflow.aborted": "aborted",
    "workflow.completed": "completed",
    "workflow.failed": "saw the failure of",
    "workflow.cancel_requested": "asked to cancel",
    "rollout.paused": "paused",
    "resource.scaling_recorded": "recorded",
    "alert.redelivery_requested": "asked to redeliver",
    "alert_route.created": "created",
    "alert_route.updated": "changed",
    "alert_route.deleted": "deleted",
}


def _short(value: Any) -> str:
    return str(value)[:8]


def _link(href: str, text: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(href, text)


def subject_of(data: dict[str, Any], customer_names: dict[str, str] | None = None) -> Markup:
    """The event's subject as a link to its page (or plain words when it has no page)."""
    # Events name their subject in `subject`; older ones (and agents' own events) put its ids at the top level.
    subject = data.get("subject") or {key: value for key, value in data.items() if key != "actor"}
    if not isinstance(subject, dict):
        return Markup("{}").format(str(subject))
    names = customer_names or {}
    if subject.get("regression_id") and not subject.get("optimization_id"):
        metric = subject.get("metric_name") or "a metric"
        model = " ".join(str(subject[k]) for k in ("model_name", "model_version") if subject.get(k))
        words = f"a regression of {metric}" + (f" on {model}" if model else "")
        return _link(f"/incidents/{subject['regression_id']}", words)
    if subject.get("optimization_id"):
        words = _link(
            f"/optimizations/{subject['optimization_id']}", f"optimization {_short(subject['optimization_id'])}"
        )
        if subject.get("regression_id"):
            words += Markup(" (") + _link(f"/incidents/{subject['regression_id']}", "the incident") + Markup(")")
        return words
    if subject.get("recommendation_id"):
        kind = str(subject.get("type") or "").replace("_", " ")
        text = f"the {kind} recommendation" if kind else "a recommendation"
        return _link(
            f"/recommendations/{subject['recommendation_id']}", f"{text} {_short(subject['recommendation_id'])}"
        )
    if subject.get("workflow_execution_id"):
        name = subject.get("workflow") or "workflow"
        return _link(f"/workflows/{subject['workflow_execution_id']}", f"the {name} run")
    if subject.get("baseline_id"):
        model = " ".join(str(subject[k]) for k in ("model_name", "model_version") if subject.get(k))
        query = f"?model={subject.get('model_name')}:{subject.get('model_version')}" if model else ""
        return _link(f"/quality{query}", f"the baseline of {model}" if model else "a baseline")
    if subject.get("agent_id"):
        name = subject.get("name") or _short(subject["agent_id"])
        words = _link(f"/agents#agent-{subject['agent_id']}", f"agent {name}")
        extra = subject.get("config_key") or subject.get("capability_name")
        if extra:
            words += Markup(" ({})").format(extra)
        return words
    if subject.get("resource"):
        return Markup("{}").format(str(subject["resource"]))
    if subject.get("route_id") or subject.get("alert_id"):
        name = subject.get("name") or subject.get("kind") or "alert"
        return _link("/alerts", f"alert route {name}" if subject.get("name") else f"alert {name}")
    if subject.get("scaling_event_id"):
        kind = str(subject.get("event_type") or "").replace("_", " ")
        return Markup("a {} scaling event").format(kind or "")
    if subject.get("customer_id"):
        customer = str(subject["customer_id"])
        return _link(f"/quality?customer={customer}", f"customer {names.get(customer, _short(customer))}")
    return Markup("")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_value(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(_value(item) for item in value)
    return str(value)


def changes_of(data: dict[str, Any]) -> str:
    """`before` and `after` in words: "status from approved to executing; progress from 10 to 40"."""
    before = data.get("before")
    after = data.get("after")
    if not isinstance(after, dict):
        return "" if after is None else f"now {_value(after)}"
    old = before if isinstance(before, dict) else {}
    parts = []
    for key, value in after.items():
        name = str(key).replace("_", " ")
        if key in old and old[key] != value:
            parts.append(f"{name} from {_value(old[key])} to {_value(value)}")
        elif key not in old:
            parts.append(f"{name} {_value(value)}")
    text = "; ".join(parts)
    return text if len(text) <= 400 else text[:399] + "…"


def describe(event: Any, customer_names: dict[str, str] | None = None) -> Markup:
    """The event as one sentence: "Acme (customer) approved the spot migration recommendation 1a2b3c4d: status from
    pending to approved. “Go ahead”"."""
    data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    actor = data.get("actor")
    who = str(actor.get("name") or actor.get("role") or "someone") if isinstance(actor, dict) else str(actor or "")
    verb = VERBS.get(event.event_type) or str(event.event_type).replace(".", " ").replace("_", " ")
    sentence = Markup("{} {}").format(who or "The system", verb)
    subject = subject_of(data, customer_names)
    if subject:
        sentence += Markup(" ") + subject
    changes = changes_of(data)
    if not changes and not subject:
        # An event that names no known subject: its fields, in words.
        changes = "; ".join(
            f"{str(key).replace('_', ' ')} {_value(value)}"
            for key, value in data.items()
            if key not in {"actor", "subject", "before", "after", "reason", "comment", "notes", "message"}
        )[:400]
    if changes:
        sentence += Markup(": {}").format(changes)
    for key in ("reason", "comment", "notes", "message"):
        text = data.get(key)
        if isinstance(text, str) and text:
            sentence += Markup(" “{}”").format(text[:300])
            break
    return sentence + Markup(".")


MAX_OUTPUT_LINES = 30


def output_lines(data: Any) -> list[tuple[str, str]]:
    """A step's output (or error) as labelled lines: nested objects flattened to "gate verdict", lists counted and
    listed briefly, at most MAX_OUTPUT_LINES lines; an empty output gives none."""
    lines: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any, depth: int) -> None:
        if len(lines) >= MAX_OUTPUT_LINES:
            return
        if isinstance(value, dict) and value and depth < 2:
            for key, item in value.items():
                walk(f"{prefix} {key}".strip().replace("_", " "), item, depth + 1)
            return
        if isinstance(value, list):
            shown = ", ".join(_value(item) for item in value[:5])
            more = f" and {len(value) - 5} more" if len(value) > 5 else ""
            text = f"{len(value)}: {shown}{more}" if value else "none"
        elif isinstance(value, dict):
            text = _value(value) if value else "none"
        elif value is None:
            text = "none"
        else:
            text = _value(value)
        lines.append((prefix or "value", text[:300]))

    if isinstance(data, dict):
        if data:
            walk("", data, 0)
    elif data is not None:
        lines.append(("value", _value(data)[:300]))
    return lines
