"""Detection time for one model version over a large table: 1,000,000 stored rows of that version (plus other
versions' rows), an active baseline, then `detect` on the last hour and on the last 500 records, warm, median of
several runs.

Target (issue 4): under 1 s warm.

    .venv/bin/python benchmarks/detection_latency.py [--rows 1000000] [--runs 7]
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

from _support import fresh_database, make_tenant, median, quality_records, write_results
from psycopg.types.json import Jsonb
from sqlalchemy import text
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.quality import detection, service
from optiinfra.quality.repository import INGEST_COLUMNS
from optiinfra.quality.schemas import BaselineCreate, BaselineWindow, DetectRequest

CHUNK = 100_000


def load(engine, customer_id: uuid.UUID, agent_id: uuid.UUID, rows: int, start: datetime, version: str) -> None:  # type: ignore[no-untyped-def]
    step = (datetime.now(UTC) - start).total_seconds() / rows
    for offset in range(0, rows, CHUNK):
        records = quality_records(
            min(CHUNK, rows - offset),
            seed=offset,
            start=start + timedelta(seconds=step * offset),
            version=version,
            step_seconds=step,
            prefix=f"{version}-{offset}",
        )
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
        print(f"  loaded {offset + len(records):,} / {rows:,} rows of {version}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--other-rows", type=int, default=200_000, help="rows of another version in the table")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    now = datetime.now(UTC)
    with fresh_database() as engine:
        customer_id, agent_id, _ = make_tenant(engine)
        load_started = time.perf_counter()
        load(engine, customer_id, agent_id, args.rows, now - timedelta(days=30), "v1")
        load(engine, customer_id, agent_id, args.other_rows, now - timedelta(days=30), "v0")
        with engine.begin() as connection:
            connection.execute(text("ANALYZE quality_metrics"))
        load_seconds = time.perf_counter() - load_started
        with Session(engine) as session, session.begin():
            service.establish_baseline(
                session,
                Principal.operator(),
                BaselineCreate(
                    customer_id=customer_id,
                    model_name="bench-model",
                    model_version="v1",
                    window=BaselineWindow(start=now - timedelta(days=29), end=now - timedelta(days=28)),
                ),
            )
        timings: dict[str, list[float]] = {}
        windows = {
            "last_hour": BaselineWindow(start=now - timedelta(hours=1), end=now + timedelta(minutes=1)),
            "last_500_records": BaselineWindow(last_n=500),
            "last_day": BaselineWindow(start=now - timedelta(days=1), end=now + timedelta(minutes=1)),
        }
        for name, window in windows.items():
            request = DetectRequest(
                customer_id=customer_id, model_name="bench-model", model_version="v1", window=window
            )
            runs = []
            for run in range(args.runs + 1):  # the first run warms the cache and is not counted
                started = time.perf_counter()
                with Session(engine) as session, session.begin():
                    report = detection.detect(session, Principal.operator(), request)
                if run:
                    runs.append(time.perf_counter() - started)
            timings[name] = runs
            print(
                f"{name}: median {median(runs) * 1000:.0f} ms over {report.window['sample_size']} rows "
                f"(verdict {report.verdict})"
            )
    path = write_results(
        "detection_latency",
        {
            "rows_of_the_version": args.rows,
            "other_rows": args.other_rows,
            "load_seconds": load_seconds,
            "runs": args.runs,
            "seconds": timings,
            "median_seconds": {name: median(values) for name, values in timings.items()},
            "target_seconds": 1.0,
            "meets_target": all(median(values) < 1.0 for values in timings.values()),
        },
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
