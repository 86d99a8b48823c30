"""What an alert looks like on the wire, per destination, and how a webhook is signed.

- `webhook`: the alert as JSON, signed: `OptiInfra-Signature: t=<unix seconds>,v1=<hex>` where the hex is
  HMAC-SHA256 with the route's signing secret over `<t>.` followed by the exact body bytes (docs/alerts.md has the
  receiver's check). Every destination also gets `Idempotency-Key: <alert id>`: the same alert redelivered (a retry
  after a lost answer, a worker killed mid-call) carries the same key, so a receiver can drop duplicates.
- `slack`: Slack's incoming-webhook message (`text` plus Block Kit `blocks`).
- `teams`: a Microsoft Teams incoming-webhook (Workflows) message carrying an Adaptive Card.
- `email`: a plain-text message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_HEADER = "OptiInfra-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_MARK = {
    "info": ":information_source:",
    "warning": ":warning:",
    "error": ":exclamation:",
    "critical": ":rotating_light:",
}
_COLOR = {"info": "Accent", "warning": "Warning", "error": "Attention", "critical": "Attention"}


@dataclass(frozen=True)
class Message:
    content: bytes
    headers: dict[str, str]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `OptiInfra-Signature` header's value for a body sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """A receiver's check of a signature header (what docs/alerts.md shows, for tests and Python receivers)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


def mask_url(url: str | None) -> str | None:
    """A URL as the API shows it: scheme and host, and the last 4 characters (the rest may hold a token)."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…{url[-4:]}"


def _body(alert_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"id": alert_id, **payload}


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _details(payload: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [("Kind", str(payload.get("kind"))), ("Severity", str(payload.get("severity")))]
    if payload.get("model_name"):
        facts.append(("Model", str(payload["model_name"])))
    return facts


def render_http(destination: str, alert_id: str, payload: dict[str, Any], secret: str | None, now: int) -> Message:
    """The POST body and headers of an alert for a webhook, Slack or Teams route."""
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: alert_id}
    title = str(payload.get("title", "OptiInfra alert"))
    text = str(payload.get("text", ""))
    severity = str(payload.get("severity", "info"))
    if destination == "webhook":
        content = _json(_body(alert_id, payload))
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, now, content)
        return Message(content, headers)
    if destination == "slack":
        facts = " · ".join(f"*{name}:* {value}" for name, value in _details(payload))
        message = {
            "text": f"{_MARK.get(severity, '')} {title}",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"{_MARK.get(severity, '')} *{title}*"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900] or " "}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{facts} · alert {alert_id}"}]},
            ],
        }
        return Message(_json(message), headers)
    if destination == "teams":
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {
                    "type": "TextBlock",
                    "text": title,
                    "weight": "Bolder",
                    "size": "Medium",
                    "wrap": True,
                    "color": _COLOR.get(severity, "Default"),
                },
                {"type": "TextBlock", "text": text or " ", "wrap": True},
                {
                    "type": "FactSet",
                    "facts": [{"title": name, "value": value} for name, value in _details(payload)]
                    + [{"title": "Alert", "value": alert_id}],
                },
            ],
        }
        message = {
            "type": "message",
            "summary": title,
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
            ],
        }
        return Message(_json(message), headers)
    raise ValueError(f"no HTTP format for {destination!r}")


def render_email(alert_id: str, payload: dict[str, Any], sender: str, recipient: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[OptiInfra] {payload.get('title', 'alert')}"
    message["From"] = sender
    message["To"] = recipient
    message["Message-ID"] = f"<{alert_id}@optiinfra>"  # the same alert is the same message: duplicates collapse
    lines = [str(payload.get("text", "")), ""] + [f"{name}: {value}" for name, value in _details(payload)]
    lines.append(f"Alert: {alert_id}")
    message.set_content("\n".join(lines))
    return message
