"""Ingest throughput: POST /api/v1/quality/metrics (HTTP, JSON, validation, COPY + ON CONFLICT) versus a raw COPY
straight into quality_metrics, side by side on the same machine and database, alternating, medians reported.

Target (issue 4): the API reaches at least 50 % of raw COPY's rows per second.

    .venv/bin/python benchmarks/ingest_throughput.py [--rows 50000] [--batch 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from _support import fresh_database, make_tenant, median, quality_records, running_server, write_results
from psycopg.types.json import Jsonb

from optiinfra.client import OptiInfraClient
from optiinfra.quality.repository import INGEST_COLUMNS


def _in_parallel(work, chunks: list[list[dict]]) -> None:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        for future in [pool.submit(work, chunk) for chunk in chunks]:
            future.result()


def _split(records: list[dict], parts: int) -> list[list[dict]]:
    size = -(-len(records) // parts)
    return [records[i : i + size] for i in range(0, len(records), size)]


def raw_copy(engine, customer_id: uuid.UUID, agent_id: uuid.UUID, records: list[dict], clients: int) -> float:  # type: ignore[no-untyped-def]
    """Rows/s of a plain COPY of the same records into quality_metrics (no validation, no idempotency), over
    `clients` connections at once."""
    started = time.perf_counter()
    _in_parallel(lambda chunk: _raw_copy_one(engine, customer_id, agent_id, chunk), _split(records, clients))
    return len(records) / (time.perf_counter() - started)


def _raw_copy_one(engine, customer_id: uuid.UUID, agent_id: uuid.UUID, records: list[dict]) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as connection:
        driver = connection.connection.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY quality_metrics ({', '.join(INGEST_COLUMNS)}) FROM STDIN") as copy,
        ):
            for r in records:
                copy.write_row(
                    (
                        agent_id,
                        customer_id,
                        r["request_id"],
                        r["model_name"],
                        r["model_version"],
                        r["prompt_tokens"],
                        r["completion_tokens"],
                        r["latency_ms"],
                        r["relevance_score"],
                        r["coherence_score"],
                        r["factuality_score"],
                        r["hallucination_detected"],
                        r["toxicity_score"],
                        r["overall_quality_score"],
                        r["timestamp"],
                        Jsonb(r["metadata"]),
                    )
                )


def api_ingest(base_url: str, key: str, records: list[dict], batch: int, clients: int) -> float:
    """Rows/s through the API with OptiInfra's Python client (encoding included), `clients` clients at once."""

    def send(chunk: list[dict]) -> None:
        with OptiInfraClient(base_url, key, timeout=120) as client:
            for offset in range(0, len(chunk), batch):
                result = client.ingest_quality_metrics(chunk[offset : offset + batch])
                assert result.inserted == len(chunk[offset : offset + batch])

    started = time.perf_counter()
    _in_parallel(send, _split(records, clients))
    return len(records) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2], help="concurrent clients/connections")
    args = parser.parse_args()
    start = datetime.now(UTC) - timedelta(days=2)
    by_clients: dict[str, dict[str, object]] = {}
    with fresh_database() as engine, running_server(engine) as (base_url, _operator_key):
        customer_id, agent_id, key = make_tenant(engine)
        for clients in args.clients:
            api_rates, copy_rates = [], []
            for round_number in range(args.rounds):
                tag = f"{clients}-{round_number}"
                api_records = quality_records(args.rows, seed=round_number, start=start, prefix=f"api{tag}")
                copy_records = quality_records(args.rows, seed=round_number, start=start, prefix=f"copy{tag}")
                # Alternate which goes first so neither always meets a warmer cache.
                if round_number % 2 == 0:
                    api_rates.append(api_ingest(base_url, key, api_records, args.batch, clients))
                    copy_rates.append(raw_copy(engine, customer_id, agent_id, copy_records, clients))
                else:
                    copy_rates.append(raw_copy(engine, customer_id, agent_id, copy_records, clients))
                    api_rates.append(api_ingest(base_url, key, api_records, args.batch, clients))
                print(
                    f"{clients} client(s), round {round_number + 1}: API {api_rates[-1]:,.0f} rows/s, "
                    f"raw COPY {copy_rates[-1]:,.0f} rows/s"
                )
            ratio = median(api_rates) / median(copy_rates)
            by_clients[str(clients)] = {
                "api_rows_per_second": api_rates,
                "raw_copy_rows_per_second": copy_rates,
                "median_api_rows_per_second": median(api_rates),
                "median_raw_copy_rows_per_second": median(copy_rates),
                "api_to_copy_ratio": ratio,
                "meets_target": ratio >= 0.5,
            }
            print(f"{clients} client(s): median API/COPY = {ratio:.2f} (target >= 0.50)")
    path = write_results(
        "ingest_throughput",
        {
            "rows_per_round": args.rows,
            "batch_size": args.batch,
            "rounds": args.rounds,
            "target_ratio": 0.5,
            "by_concurrent_clients": by_clients,
        },
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
