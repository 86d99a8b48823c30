"""Ingest throughput: POST /api/v1/quality/metrics (HTTP, JSON, validation, COPY + ON CONFLICT) versus a raw COPY
straight into quality_metrics, side by side on the same machine and database, alternating, medians reported.

Target (issue 4): the API reaches at least 50 % of raw COPY's rows per second.

    .venv/bin/python benchmarks/ingest_throughput.py [--rows 50000] [--batch 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from _support import fresh_database, make_tenant, median, quality_records, running_server, write_results
from psycopg.types.json import Jsonb

from optiinfra.quality.repository import INGEST_COLUMNS


def raw_copy(engine, customer_id: uuid.UUID, agent_id: uuid.UUID, records: list[dict]) -> float:  # type: ignore[no-untyped-def]
    """Rows/s of a plain COPY of the same records into quality_metrics (no validation, no idempotency)."""
    started = time.perf_counter()
    with engine.begin() as connection:
        driver = connection.connection.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY quality_metrics ({', '.join(INGEST_COLUMNS)}) FROM STDIN") as copy,
        ):
            for r in records:
                copy.write_row(
                    (
                        uuid.uuid4(),
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
    return len(records) / (time.perf_counter() - started)


def api_ingest(base_url: str, key: str, records: list[dict], batch: int) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        for offset in range(0, len(records), batch):
            response = client.post("/api/v1/quality/metrics", json={"records": records[offset : offset + batch]})
            response.raise_for_status()
            assert response.json()["inserted"] == len(records[offset : offset + batch])
    return len(records) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    start = datetime.now(UTC) - timedelta(days=2)
    api_rates, copy_rates = [], []
    with fresh_database() as engine, running_server(engine) as (base_url, _operator_key):
        customer_id, agent_id, key = make_tenant(engine)
        for round_number in range(args.rounds):
            api_records = quality_records(args.rows, seed=round_number, start=start, prefix=f"api{round_number}")
            copy_records = quality_records(args.rows, seed=round_number, start=start, prefix=f"copy{round_number}")
            # Alternate which goes first so neither always meets a warmer cache.
            if round_number % 2 == 0:
                api_rates.append(api_ingest(base_url, key, api_records, args.batch))
                copy_rates.append(raw_copy(engine, customer_id, agent_id, copy_records))
            else:
                copy_rates.append(raw_copy(engine, customer_id, agent_id, copy_records))
                api_rates.append(api_ingest(base_url, key, api_records, args.batch))
            print(f"round {round_number + 1}: API {api_rates[-1]:,.0f} rows/s, raw COPY {copy_rates[-1]:,.0f} rows/s")
    ratio = median(api_rates) / median(copy_rates)
    path = write_results(
        "ingest_throughput",
        {
            "rows_per_round": args.rows,
            "batch_size": args.batch,
            "rounds": args.rounds,
            "api_rows_per_second": api_rates,
            "raw_copy_rows_per_second": copy_rates,
            "median_api_rows_per_second": median(api_rates),
            "median_raw_copy_rows_per_second": median(copy_rates),
            "api_to_copy_ratio": ratio,
            "target_ratio": 0.5,
            "meets_target": ratio >= 0.5,
        },
    )
    print(f"median API/COPY = {ratio:.2f} (target >= 0.50); results in {path}")


if __name__ == "__main__":
    main()
