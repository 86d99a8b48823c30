"""Prometheus's HTTP API, the part the collector uses: range queries (`GET /api/v1/query_range`).

Every call goes through `optiinfra.net.endpoints` (the URL checked again, the address connected to checked, no
redirects followed, a bounded answer), with the source's authentication: HTTP basic or a bearer token.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpcore

from optiinfra.net import endpoints

MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_POINTS_PER_SERIES = 11_000  # Prometheus refuses range queries that would return more points per series


class PrometheusError(Exception):
    """The query could not be answered (server down, refused, bad answer); the message says why, in words."""


@dataclass(frozen=True)
class Connection:
    base_url: str
    auth_type: str = "none"
    auth_username: str | None = None
    auth_secret: str | None = None
    timeout: float = 30.0

    def headers(self) -> dict[str, str]:
        if self.auth_type == "basic" and self.auth_secret is not None:
            pair = f"{self.auth_username or ''}:{self.auth_secret}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        if self.auth_type == "bearer" and self.auth_secret is not None:
            return {"Authorization": f"Bearer {self.auth_secret}"}
        return {}


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[datetime, float]]  # finite values only, oldest first


def query_range(connection: Connection, query: str, start: datetime, end: datetime, step_seconds: int) -> list[Series]:
    """The matrix a PromQL range query returns over [start, end] (both evaluated) every `step_seconds`."""
    if (end - start).total_seconds() / step_seconds + 1 > MAX_POINTS_PER_SERIES:
        raise ValueError("too many points per series for one range query; split the range")
    parameters = urlencode(
        {"query": query, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}", "step": step_seconds}
    )
    url = f"{connection.base_url}/api/v1/query_range?{parameters}"
    try:
        response = endpoints.get(
            url, headers=connection.headers(), timeout=connection.timeout, max_response_bytes=MAX_ANSWER_BYTES
        )
    except endpoints.UnsafeEndpointError as error:
        raise PrometheusError(str(error)) from error
    except endpoints.ResponseTooLargeError as error:
        raise PrometheusError(f"Prometheus answered with too much data: {error}.") from error
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as error:
        raise PrometheusError(
            f"Prometheus at {connection.base_url} cannot be reached: {error or type(error).__name__}."
        ) from error
    return parse_matrix(response.status_code, response.body)


def parse_matrix(status_code: int, body: bytes) -> list[Series]:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise PrometheusError(f"Prometheus answered HTTP {status_code} with something that is not its JSON API.")
    if status_code != 200 or answer.get("status") != "success":
        message = str(answer.get("error") or "no error message")[:500]
        raise PrometheusError(
            f"Prometheus refused the query (HTTP {status_code}, {answer.get('errorType')}): {message}"
        )
    data = answer.get("data") or {}
    if data.get("resultType") != "matrix":
        raise PrometheusError(f"Prometheus answered a {data.get('resultType')!r}, not a matrix.")
    found = []
    for item in data.get("result") or []:
        points = []
        for stamp, text in item.get("values") or []:
            value = float(text)
            if math.isfinite(value):
                points.append((datetime.fromtimestamp(float(stamp), UTC), value))
        found.append(Series(labels={str(k): str(v) for k, v in (item.get("metric") or {}).items()}, points=points))
    return found
