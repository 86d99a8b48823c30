"""Load: many concurrent clients against a real `optiinfra serve` process on loopback, then reconciliation.

For each level of concurrency (default 50, 200 and 500 clients, 60 s each, a fresh database and server per level)
every client loops over a mix of 1,000-record quality ingests (40 %), reads (35 %: recommendations, events, agents),
a recommendation and its approval (15 %) and heartbeats (10 %). A separate process asks `/healthz` every 50 ms
throughout. A 503 must carry `Retry-After` (the client then waits that long, with jitter, and goes on); every other
5xx, time-out or dropped connection counts as an error. Afterwards every acknowledged record must be stored exactly
once and every batch must be stored whole or not at all.

    .venv/bin/python benchmarks/load.py [--clients 50,200,500] [--seconds 60] [--batch 1000] [--client-nice 10]
        [--name load]

The clients run in their own processes (asyncio, raw HTTP/1.1, `--processes` of them), so that their CPU use does not
distort the server's latencies more than two shared cores must; they run at niceness 10 (`--client-nice`), standing
in for clients on other machines, while the server and the `/healthz` prober run at normal priority.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import random
import statistics
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from _support import fresh_database, running_server, write_results
from sqlalchemy import text

READS = (
    ("GET /recommendations", "/api/v1/recommendations?limit=20"),
    ("GET /events", "/api/v1/events?limit=20"),
    ("GET /agents", "/api/v1/agents?limit=20"),
)
CLIENT_TIMEOUT = 120.0
INGEST = "POST /quality/metrics"
# The last revision whose `optiinfra serve` ran everything in one process (API, /healthz, workflow worker).
BEFORE_FRONT = "85fb659"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(len(ordered) * fraction) - 1))]


def _summary(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"requests": 0}
    return {
        "requests": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(_percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


PREFIX = b"@@BATCH@@"


def _batch_template(customer_id: str, batch: int, rng: random.Random) -> bytes:
    """An ingest body whose request ids carry PREFIX, replaced per batch: building 1,000 records per request would
    cost the client processes more CPU than the server has to spare on a shared machine."""
    now = datetime.now(UTC)
    records = orjson.dumps(
        [
            {
                "request_id": f"{PREFIX.decode()}-{i}",
                "model_name": "load-model",
                "model_version": "v1",
                "timestamp": (now - timedelta(milliseconds=i)).isoformat(),
                "overall_quality_score": rng.uniform(0.6, 1.0),
                "latency_ms": rng.uniform(200, 1500),
            }
            for i in range(batch)
        ]
    )
    return b'{"customer_id":"%s","records":%s}' % (customer_id.encode(), records)


class StaleConnectionError(ConnectionResetError):
    """The server had closed the connection before the request (nothing of an answer arrived)."""


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection, written directly on asyncio streams: a general client (httpx) costs the
    client processes more CPU per request than two shared cores can give while the server runs beside them."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Answer:
        reused = self.writer is not None
        try:
            return await asyncio.wait_for(self._exchange(method, path, headers, body), CLIENT_TIMEOUT)
        except (ConnectionResetError, BrokenPipeError):
            self.close()
            # The server closes keep-alive connections idle for 5 s (a client waiting out a long Retry-After): like
            # any HTTP client, send again once on a fresh connection when the reused one turns out closed.
            if not reused:
                raise
            return await asyncio.wait_for(self._exchange(method, path, headers, body), CLIENT_TIMEOUT)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise StaleConnectionError("the server closed the connection before answering")
        status = int(status_line.split()[1])
        answer_headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        content = await self.reader.readexactly(int(answer_headers.get("content-length", "0")))
        if answer_headers.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, answer_headers, content)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _client_loop(number: int, tenant: dict[str, Any], deadline: float, batch: int, out: dict[str, Any]) -> None:
    rng = random.Random(number)  # noqa: S311 (load mix, not security)
    headers = {role: {"Authorization": f"Bearer {tenant[role]}"} for role in ("customer_key", "agent_key", "app_key")}
    sequence = 0
    template = _batch_template(tenant["customer_id"], batch, rng)
    address = urlsplit(tenant["base_url"])
    connection = Connection(address.hostname or "127.0.0.1", address.port or 80)
    try:

        async def call(
            name: str, method: str, path: str, role: str, json: Any = None, content: bytes | None = None
        ) -> Answer | None:
            body = content if content is not None else (orjson.dumps(json) if json is not None else b"")
            request_headers = {**headers[role], "Content-Type": "application/json"} if body else headers[role]
            started = time.perf_counter()
            try:
                response = await connection.request(method, path, request_headers, body)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError) as error:
                out["errors"].append(f"{name}: {type(error).__name__}")
                return None
            elapsed = time.perf_counter() - started
            if response.status_code == 503 and response.headers.get("retry-after"):
                out["refused"][name] += 1
                out["refused_latencies"][name].append(elapsed)
                await asyncio.sleep(float(response.headers["retry-after"]) * rng.uniform(0.5, 1.5))
                return None
            if response.status_code >= 400:
                out["errors"].append(f"{name}: {response.status_code} {response.body[:200].decode(errors='replace')}")
                return None
            out["latencies"][name].append(elapsed)
            return response

        while time.monotonic() < deadline:
            roll = rng.random()
            if roll < 0.4:
                prefix = f"c{number}-b{sequence}"
                sequence += 1
                body = template.replace(PREFIX, prefix.encode())
                out["batches_sent"].append(prefix)
                response = await call(INGEST, "POST", "/api/v1/quality/metrics", "app_key", content=body)
                if response is not None and response.json().get("inserted") == batch:
                    out["acknowledged"].append(prefix)
            elif roll < 0.75:
                name, path = READS[rng.randrange(len(READS))]
                await call(name, "GET", path, "customer_key")
            elif roll < 0.9:
                response = await call(
                    "POST /recommendations",
                    "POST",
                    "/api/v1/recommendations",
                    "agent_key",
                    json={
                        "customer_id": tenant["customer_id"],
                        "type": "rightsizing",
                        "title": "load",
                        "confidence_score": 0.5,
                    },
                )
                if response is not None:
                    await call(
                        "POST /recommendations/{id}/decision",
                        "POST",
                        f"/api/v1/recommendations/{response.json()['id']}/decision",
                        "customer_key",
                        json={"decision": "approve", "comment": "ok"},
                    )
            else:
                await call(
                    "POST /agents/{id}/heartbeat",
                    "POST",
                    f"/api/v1/agents/{tenant['agent_id']}/heartbeat",
                    "agent_key",
                    json={"status": "healthy"},
                )
    finally:
        connection.close()


def _client_process(
    first: int, count: int, tenant: dict[str, Any], deadline_in: float, batch: int, nice: int, queue: Any
) -> None:
    # The load generators stand in for clients on other machines: at a lower CPU priority they take what the server
    # (and the /healthz prober, at normal priority like an external probe) leave, instead of competing with them.
    os.nice(nice)
    out: dict[str, Any] = {
        "latencies": defaultdict(list),
        "refused": defaultdict(int),
        "refused_latencies": defaultdict(list),
        "errors": [],
        "acknowledged": [],
        "batches_sent": [],
    }
    deadline = time.monotonic() + deadline_in
    out["started"] = time.time()

    async def run() -> None:
        await asyncio.gather(*(_client_loop(first + n, tenant, deadline, batch, out) for n in range(count)))

    asyncio.run(run())
    out["ended"] = time.time()
    out["latencies"] = dict(out["latencies"])
    out["refused"] = dict(out["refused"])
    out["refused_latencies"] = dict(out["refused_latencies"])
    queue.put(out)


def _health_process(base_url: str, seconds: float, queue: Any) -> None:
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT) as http:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = http.get("/healthz")
                if response.status_code != 200:
                    failures.append(str(response.status_code))
            except httpx.HTTPError as error:
                failures.append(type(error).__name__)
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    queue.put({"healthz": latencies, "healthz_failures": failures})


def _server_side_latency(base_url: str) -> dict[str, dict[str, float]]:
    """Mean time the server itself spent per route and status class (its /metrics histogram), to tell time spent
    working from time spent waiting to be read or answered."""
    sums: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], float] = defaultdict(float)
    text_ = httpx.get(f"{base_url}/metrics", timeout=CLIENT_TIMEOUT).text
    for line in text_.splitlines():
        for suffix, into in (("_sum{", sums), ("_count{", counts)):
            marker = f"optiinfra_http_request_duration_seconds{suffix}"
            if line.startswith(marker):
                labels, value = line[len(marker) :].rsplit("} ", 1)
                fields = dict(part.split("=", 1) for part in labels.split(","))
                into[(fields["method"].strip('"'), fields["route"].strip('"'))] += float(value)
    return {
        f"{method} {route}": {"requests": counts[key], "mean_ms": round(sums[key] / counts[key] * 1000, 1)}
        for key in sorted(counts)
        if counts[key]
        for method, route in [key]
    }


def run_level(
    clients: int,
    seconds: float,
    batch: int,
    processes: int,
    port: int,
    nice: int,
    server_args: list[str],
    source: Path | None = None,
) -> dict[str, Any]:
    with (
        fresh_database() as engine,
        running_server(engine, port, server_args, source) as (base_url, operator_key),
    ):
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {operator_key}"}) as operator:
            suffix = uuid.uuid4().hex[:6]
            customer = operator.post(
                "/api/v1/customers", json={"name": "Load Co", "email": f"load-{suffix}@load.example"}
            ).json()
            # Both agents serve the load customer (an agent acts only for its customers).
            serves = [customer["id"]]
            agent = operator.post(
                "/api/v1/agents", json={"type": "cost", "name": f"load-cost-{suffix}", "customer_ids": serves}
            ).json()
            app_agent = operator.post(
                "/api/v1/agents", json={"type": "application", "name": f"load-app-{suffix}", "customer_ids": serves}
            ).json()
        tenant = {
            "base_url": base_url,
            "customer_id": customer["id"],
            "customer_key": customer["api_key"],
            "agent_id": agent["id"],
            "agent_key": agent["api_key"],
            "app_key": app_agent["api_key"],
        }
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        per_process = [clients // processes + (1 if n < clients % processes else 0) for n in range(processes)]
        workers = []
        first = 0
        for count in per_process:
            workers.append(
                context.Process(target=_client_process, args=(first, count, tenant, seconds, batch, nice, queue))
            )
            first += count
        prober = context.Process(target=_health_process, args=(base_url, seconds, queue))
        for process in [*workers, prober]:
            process.start()
        results = [queue.get(timeout=seconds + CLIENT_TIMEOUT + 120) for _ in range(len(workers) + 1)]
        for process in [*workers, prober]:
            process.join()
        server_side = _server_side_latency(base_url)
        clients_results = [result for result in results if "started" in result]
        elapsed = max(r["ended"] for r in clients_results) - min(r["started"] for r in clients_results)
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT split_part(request_id, '-', 1) || '-' || split_part(request_id, '-', 2) AS batch, "
                    "count(*) AS stored, count(DISTINCT request_id) AS distinct_ids "
                    "FROM quality_metrics WHERE customer_id = :c GROUP BY 1"
                ),
                {"c": customer["id"]},
            ).all()
    latencies: dict[str, list[float]] = defaultdict(list)
    refused: dict[str, int] = defaultdict(int)
    errors: list[str] = []
    refusal_latencies: dict[str, list[float]] = defaultdict(list)
    acknowledged: set[str] = set()
    health: list[float] = []
    health_failures: list[str] = []
    for result in results:
        if "healthz" in result:
            health, health_failures = result["healthz"], result["healthz_failures"]
            continue
        for name, values in result["latencies"].items():
            latencies[name].extend(values)
        for name, count in result["refused"].items():
            refused[name] += count
        errors.extend(result["errors"])
        for name, values in result["refused_latencies"].items():
            refusal_latencies[name].extend(values)
        acknowledged.update(result["acknowledged"])
    stored = {batch_id: (count, distinct) for batch_id, count, distinct in rows}
    missing = [b for b in acknowledged if stored.get(b, (0, 0))[0] != batch]
    duplicated = [b for b, (count, distinct) in stored.items() if count != distinct]
    partial = [b for b, (count, _) in stored.items() if count != batch]
    answered = sum(len(values) for values in latencies.values())
    reads = [value for name, values in latencies.items() if name.startswith("GET") for value in values]
    return {
        "clients": clients,
        "client_nice": nice,
        "seconds": round(elapsed, 1),
        "answered": answered,
        "answered_per_second": round(answered / elapsed, 1),
        "refused_503": sum(refused.values()),
        "refused_by_endpoint": dict(sorted(refused.items())),
        # How long a 503 took to arrive: a refused ingest is answered only once its 150 KB body is read.
        "refusals": _summary([value for values in refusal_latencies.values() for value in values]),
        "refusals_of_small_requests": _summary(
            [value for name, values in refusal_latencies.items() if name != INGEST for value in values]
        ),
        "refusals_by_endpoint": {name: _summary(values) for name, values in sorted(refusal_latencies.items())},
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:10],
        "records_acknowledged": len(acknowledged) * batch,
        "records_per_second": round(len(acknowledged) * batch / elapsed, 1),
        "reads": _summary(reads),
        "healthz": {**_summary(health), "failures": len(health_failures)},
        "reconciliation": {
            "batches_acknowledged": len(acknowledged),
            "batches_stored": len(stored),
            "acknowledged_missing": len(missing),
            "duplicated": len(duplicated),
            "partial": len(partial),
            "clean": not missing and not duplicated and not partial,
        },
        "per_endpoint": {name: _summary(values) for name, values in sorted(latencies.items())},
        "server_side_mean_ms": server_side,
    }


def _source_of(revision: str, into: Path) -> tuple[str, Path]:
    """The package of git revision `revision` of this repository, extracted into `into`: (commit, its src)."""
    repository = Path(__file__).resolve().parent.parent
    commit = subprocess.run(  # noqa: S603 (git, with a revision the user named)
        ["git", "-C", str(repository), "rev-parse", "--verify", f"{revision}^{{commit}}"],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = subprocess.run(  # noqa: S603
        ["git", "-C", str(repository), "archive", commit, "src"],  # noqa: S607
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit, into / "src"


def _ratio(old: float | None, new: float | None) -> float | None:
    return round(old / new, 2) if old and new else None


def _print_level(label: str, level: dict[str, Any]) -> None:
    print(
        f"{label}{level['clients']} clients, {level['seconds']:.0f} s: {level['answered']} answered "
        f"({level['answered_per_second']}/s), {level['refused_503']} refused (503 + Retry-After, p99 "
        f"{level['refusals'].get('p99_ms')} ms, of small requests {level['refusals_of_small_requests'].get('p99_ms')} "
        f"ms), {level['errors']} errors; reads p50 {level['reads'].get('p50_ms')} ms "
        f"p99 {level['reads'].get('p99_ms')} ms; /healthz p50 {level['healthz'].get('p50_ms')} ms p99 "
        f"{level['healthz'].get('p99_ms')} ms ({level['healthz']['failures']} failed); "
        f"{level['records_acknowledged']} records acknowledged, reconciliation {level['reconciliation']}"
    )
    for name, figures in level["per_endpoint"].items():
        print(f"    {name:40s} {figures}")
    for name, figures in level["refusals_by_endpoint"].items():
        print(f"    refused {name:32s} {figures}")
    for sample in level["error_samples"]:
        print(f"    error: {sample}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="50,200,500", help="comma-separated levels of concurrency")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument(
        "--client-nice", type=int, default=10, help="CPU niceness of the client processes (0: same as the server)"
    )
    parser.add_argument("--port", type=int, default=18300, help="the server's port on 127.0.0.1")
    parser.add_argument("--name", default="load", help="results file: benchmarks/results/<name>.json")
    parser.add_argument("--server-args", default="", help="extra arguments for `optiinfra serve`")
    parser.add_argument(
        "--compare-with",
        metavar="REVISION",
        help="also run the server of this git revision at every level, right before or after this one (in turn), "
        f"and report old/new ratios (e.g. {BEFORE_FRONT}, the single-process server)",
    )
    args = parser.parse_args()
    levels: list[dict[str, Any]] = []
    old_levels: list[dict[str, Any]] = []
    comparison: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="optiinfra-load-old-") as directory:
        source = None
        if args.compare_with:
            commit, source = _source_of(args.compare_with, Path(directory))
            comparison = {"revision": commit}
        for index, clients in enumerate(int(part) for part in args.clients.split(",")):
            runs = [("new", args.server_args.split(), None)]
            if source is not None:
                runs.insert(index % 2, ("old", [], source))  # who goes first alternates between levels
            for label, server_args, from_source in runs:
                level = run_level(
                    clients,
                    args.seconds,
                    args.batch,
                    args.processes,
                    args.port,
                    args.client_nice,
                    server_args,
                    from_source,
                )
                (levels if label == "new" else old_levels).append(level)
                _print_level(f"[{label}] " if source is not None else "", level)
    payload: dict[str, Any] = {"batch": args.batch, "server_args": args.server_args, "levels": levels}
    if comparison:
        payload["compared_with"] = {
            **comparison,
            "levels": old_levels,
            # Old over new: above 1, the new server is faster (latencies) or the old one answered more (throughput).
            "ratios_old_over_new": [
                {
                    "clients": new["clients"],
                    "healthz_p50": _ratio(old["healthz"].get("p50_ms"), new["healthz"].get("p50_ms")),
                    "healthz_p99": _ratio(old["healthz"].get("p99_ms"), new["healthz"].get("p99_ms")),
                    "refusals_p99": _ratio(old["refusals"].get("p99_ms"), new["refusals"].get("p99_ms")),
                    "small_refusals_p99": _ratio(
                        old["refusals_of_small_requests"].get("p99_ms"), new["refusals_of_small_requests"].get("p99_ms")
                    ),
                    "reads_p99": _ratio(old["reads"].get("p99_ms"), new["reads"].get("p99_ms")),
                    "answered_per_second": _ratio(old["answered_per_second"], new["answered_per_second"]),
                    "records_per_second": _ratio(old["records_per_second"], new["records_per_second"]),
                }
                for old, new in zip(old_levels, levels, strict=True)
            ],
        }
        for ratio in payload["compared_with"]["ratios_old_over_new"]:
            print(f"old/new at {ratio['clients']} clients: {ratio}")
    print(f"results in {write_results(args.name, payload)}")


if __name__ == "__main__":
    main()
