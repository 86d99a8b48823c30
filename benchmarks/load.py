"""Load: concurrent clients mixing quality ingest, reads, approvals and heartbeats against a real `optiinfra serve`
process on loopback, for a bounded time; then a reconciliation that every acknowledged record is stored exactly once.

Reports throughput, p50 / p99 latency per endpoint and the error count (which must be 0).

    .venv/bin/python benchmarks/load.py [--seconds 60] [--clients 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from _support import fresh_database, running_server, write_results
from sqlalchemy import text

from optiinfra.client import ApiError, OptiInfraClient
from optiinfra.models import AgentType


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    acknowledged: set[str] = set()
    lock = threading.Lock()

    with fresh_database() as engine, running_server(engine) as (base_url, operator_key):
        with OptiInfraClient(base_url, operator_key) as operator:
            customer = operator.create_customer("Load Co", f"load-{uuid.uuid4().hex[:6]}@load.example")
            agent = operator.register_agent(AgentType.COST, f"load-cost-{uuid.uuid4().hex[:6]}")
            app_agent = operator.register_agent(AgentType.APPLICATION, f"load-app-{uuid.uuid4().hex[:6]}")
        assert agent.api_key
        assert app_agent.api_key
        deadline = time.monotonic() + args.seconds

        def timed(name: str, call):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                result = call()
            except (ApiError, OSError) as error:
                with lock:
                    errors.append(f"{name}: {error}")
                return None
            with lock:
                latencies[name].append(time.perf_counter() - started)
            return result

        def worker(number: int) -> None:
            rng = random.Random(number)  # noqa: S311 (load mix, not security)
            as_customer = OptiInfraClient(base_url, customer.api_key)
            as_agent = OptiInfraClient(base_url, agent.api_key)
            as_app = OptiInfraClient(base_url, app_agent.api_key)
            sequence = 0
            while time.monotonic() < deadline:
                roll = rng.random()
                if roll < 0.4:
                    now = datetime.now(UTC)
                    records = [
                        {
                            "request_id": f"w{number}-{sequence}-{i}",
                            "model_name": "load-model",
                            "model_version": "v1",
                            "timestamp": (now - timedelta(seconds=i)).isoformat(),
                            "overall_quality_score": rng.uniform(0.6, 1.0),
                            "latency_ms": rng.uniform(200, 1500),
                        }
                        for i in range(args.batch)
                    ]
                    sequence += 1
                    result = timed(
                        "POST /quality/metrics",
                        lambda records=records: as_app.ingest_quality_metrics(records, customer_id=customer.id),
                    )
                    if result is not None:
                        with lock:
                            acknowledged.update(r["request_id"] for r in records)
                elif roll < 0.6:
                    timed("GET /recommendations", lambda: as_customer.list_recommendations(limit=20))
                elif roll < 0.7:
                    timed("GET /events", lambda: as_customer.list_events(limit=20))
                elif roll < 0.85:
                    recommendation = timed(
                        "POST /recommendations",
                        lambda: as_agent.create_recommendation(
                            customer.id, "rightsizing", "load", confidence_score=0.5
                        ),
                    )
                    if recommendation is not None:
                        timed(
                            "POST /recommendations/{id}/decision",
                            lambda recommendation=recommendation: as_customer.approve(recommendation.id, "ok"),
                        )
                else:
                    timed("POST /agents/{id}/heartbeat", lambda: as_agent.heartbeat(agent.id))
            for client in (as_customer, as_agent, as_app):
                client.close()

        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT request_id, count(*) FROM quality_metrics WHERE customer_id = :c GROUP BY request_id"),
                {"c": customer.id},
            ).all()
    stored = {request_id: count for request_id, count in rows}
    missing = acknowledged - set(stored)
    duplicated = [request_id for request_id, count in stored.items() if count > 1]
    requests = sum(len(values) for values in latencies.values())
    per_endpoint = {
        name: {
            "requests": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p99_ms": round(sorted(values)[max(0, int(len(values) * 0.99) - 1)] * 1000, 1),
        }
        for name, values in sorted(latencies.items())
    }
    payload = {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "requests": requests,
        "requests_per_second": round(requests / elapsed, 1),
        "records_acknowledged": len(acknowledged),
        "records_per_second": round(len(acknowledged) / elapsed, 1),
        "errors": len(errors),
        "error_samples": errors[:10],
        "reconciliation": {
            "missing": len(missing),
            "duplicated": len(duplicated),
            "stored": len(stored),
            "clean": not missing and not duplicated,
        },
        "per_endpoint": per_endpoint,
    }
    for name, figures in per_endpoint.items():
        print(
            f"{name:40s} {figures['requests']:6d} req  p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms"
        )
    print(
        f"{requests} requests in {elapsed:.0f} s ({requests / elapsed:.0f}/s), {len(errors)} errors; "
        f"{len(acknowledged)} records acknowledged, {len(missing)} missing, {len(duplicated)} duplicated"
    )
    print(f"results in {write_results('load', payload)}")


if __name__ == "__main__":
    main()
