"""What the rollup triggers (migration 017) cost ingest: batches written by `repository.bulk_insert_metrics` (the
API's COPY path) with the triggers on and off, alternating, on one table.

    .venv/bin/python benchmarks/rollup_overhead.py [--batches 20] [--batch 5000]

Results: results/rollup_overhead.json (docs/scale.md quotes them).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _support import fresh_database, median, write_results
from sqlalchemy import text
from sqlalchemy.orm import Session

from optiinfra.models import Agent, AgentType, Customer
from optiinfra.quality import repository
from optiinfra.quality.repository import INGEST_COLUMNS
from optiinfra.quality.traffic import TrafficModel, generate

TRIGGERS = ("quality_rollups_insert", "quality_rollups_delete", "quality_rollups_update")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=20, help="batches per setting")
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()
    load_start = os.getloadavg()
    rates: dict[str, list[float]] = {"on": [], "off": []}
    with fresh_database() as engine:
        with Session(engine) as session, session.begin():
            customer = Customer(name="Overhead", email="overhead@example.com", api_key="e" * 64)
            agent = Agent(type=AgentType.APPLICATION, name="overhead-app")
            session.add_all([customer, agent])
            session.flush()
            customer_id, agent_id = customer.id, agent.id
        total = args.batch * args.batches * 2
        traffic = generate(
            TrafficModel(requests_per_day=total * 1.05), datetime.now(UTC) - timedelta(days=1), 1, seed=17
        )
        records = traffic.records("model-a", "v1", prefix="o-")[:total]
        ids = {"agent_id": agent_id, "customer_id": customer_id}
        rows: list[tuple[Any, ...]] = [
            tuple(ids[name] if name in ids else record.get(name) for name in INGEST_COLUMNS) for record in records
        ]
        for index in range(args.batches * 2):
            setting = "on" if index % 2 == 0 else "off"
            batch = rows[index * args.batch : (index + 1) * args.batch]
            with engine.begin() as connection:
                for trigger in TRIGGERS:
                    action = "ENABLE" if setting == "on" else "DISABLE"
                    connection.execute(text(f"ALTER TABLE quality_metrics {action} TRIGGER {trigger}"))
            with Session(engine) as session, session.begin():
                started = time.perf_counter()
                assert repository.bulk_insert_metrics(session, batch) == len(batch)
                session.commit()
                rates[setting].append(len(batch) / (time.perf_counter() - started))
        with engine.begin() as connection:
            for trigger in TRIGGERS:
                connection.execute(text(f"ALTER TABLE quality_metrics ENABLE TRIGGER {trigger}"))
    summary = {
        "median_rows_per_second_triggers_on": round(median(rates["on"])),
        "median_rows_per_second_triggers_off": round(median(rates["off"])),
    }
    summary["on_to_off"] = round(
        summary["median_rows_per_second_triggers_on"] / summary["median_rows_per_second_triggers_off"], 3
    )
    print(summary)
    path = write_results(
        "rollup_overhead",
        {
            "arguments": vars(args),
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
            "rows_per_second": {k: [round(v) for v in values] for k, values in rates.items()},
            "summary": summary,
        },
    )
    print(f"results in {path}")


if __name__ == "__main__":
    main()
