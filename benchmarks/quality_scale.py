"""quality_metrics at scale (issue 16): every read of the table EXPLAINed, and ingest, detection, a worker pass and
the dashboard's quality page timed, with the seeds' 13 indexes (revision 014) and with the lean set (015), side by
side in one run on one table.

The table is filled by the traffic simulator (`optiinfra.quality.traffic`): 3 customers x 4 models x 2 versions
(24 model versions) over 30 days, in time order (as ingest writes it), `--rows` in total. Then, for each index set
(lean, seeds', lean again, so neither always runs on a warmer cache):

- every read the project runs on quality_metrics (`READS`: ingest's duplicate check and agent lookup, detection,
  the worker's version scan and one version's monitoring, the dashboard's queries, the gates, attribution, OTLP's
  span lookup, deleting an agent) is run once with its SQL captured, and each captured statement is run again under
  `EXPLAIN (ANALYZE, BUFFERS)`: its time, the indexes its plan uses, its buffers;
- `detect` on one model version (last 500 records, last day, dry run), a worker monitoring pass over all versions
  (the first pass, which sets the initial baselines, is not counted), and `GET /quality` (the dashboard page, signed
  in as the customer): medians of warm runs;
- API ingest (`POST /api/v1/quality/metrics`, a real `optiinfra serve` on loopback, 5,000-record batches) and a raw
  COPY of as many rows into the same table, alternating which goes first; the ingested rows (all in the last hour)
  are deleted afterwards, so every pass reads the same table.

    .venv/bin/python benchmarks/quality_scale.py [--rows 1000000] [--ingest-rows 50000] [--rounds 3] [--runs 5]

Results: results/quality_scale.json (docs/scale.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
from _support import fresh_database, median, running_server, write_results
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Principal, Role
from optiinfra.db import migrations
from optiinfra.models import Agent, AgentCustomer, AgentType, Customer
from optiinfra.otlp import repository as otlp_repository
from optiinfra.quality import detection, monitoring_pass, repository, service
from optiinfra.quality.repository import INGEST_COLUMNS
from optiinfra.quality.schemas import BaselineCreate, BaselineWindow, DetectRequest
from optiinfra.quality.traffic import Effect, TrafficModel, generate
from optiinfra.recommendations.service import rollback_for_quality
from optiinfra.workflows import phase_gate

CUSTOMERS = 3
MODELS = ("model-a", "model-b", "model-c", "model-d")
VERSIONS = ("v1", "v2")
DAYS = 30
CHUNK = 100_000
LEAN = "015_quality_index_diet"
SEEDS = "014_alerts"
CANARY_INSTANCE = "i-canary"
CANARY_OPTIMIZATION = str(uuid.UUID(int=16))


@dataclass
class Fleet:
    """What populate() made: the tenants (id, agent id, key), an agent with no metrics, and `now`."""

    now: datetime
    customers: list[tuple[uuid.UUID, uuid.UUID, str]]
    idle_agent: uuid.UUID
    rows: int = 0
    load_seconds: float = 0.0
    sample_request_ids: list[str] = field(default_factory=list)

    @property
    def first(self) -> tuple[uuid.UUID, uuid.UUID, str]:
        return self.customers[0]


def _tenants(engine: Engine) -> tuple[list[tuple[uuid.UUID, uuid.UUID, str]], uuid.UUID]:
    out = []
    with Session(engine) as session, session.begin():
        for index in range(CUSTOMERS):
            key = generate_key(Role.CUSTOMER)
            customer = Customer(name=f"Scale {index}", email=f"scale-{index}@example.com", api_key=key_digest(key))
            agent = Agent(type=AgentType.APPLICATION, name=f"scale-app-{index}")
            session.add_all([customer, agent])
            session.flush()
            session.add(AgentCustomer(agent_id=agent.id, customer_id=customer.id))
            out.append((customer.id, agent.id, key))
        idle = Agent(type=AgentType.COST, name="scale-idle")
        session.add(idle)
        session.flush()
        return out, idle.id


def populate(engine: Engine, rows: int, seed: int = 16) -> Fleet:
    """Fill quality_metrics with `rows` simulated records of 24 model versions over DAYS days, in time order."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    customers, idle = _tenants(engine)
    per_day = rows / (len(customers) * len(MODELS) * len(VERSIONS) * DAYS)
    columns: dict[str, list[Any]] = {name: [] for name in ("t", "agent", "customer", "rid", "model", "version")}
    numbers: dict[str, list[Any]] = {
        name: [] for name in ("lat", "rel", "coh", "fac", "hal", "tox", "ov", "route", "inst", "opt")
    }
    routes: tuple[str, ...] = ()
    for c_index, (customer_id, agent_id, _) in enumerate(customers):
        for m_index, model in enumerate(MODELS):
            for v_index, version in enumerate(VERSIONS):
                # The first version of the first model has a canary instance for the last 6 hours (phase gate).
                canary = c_index == 0 and m_index == 0 and v_index == 0
                effects = (
                    (
                        Effect(
                            "latency_factor",
                            1.0,
                            now - timedelta(hours=6),
                            instance_id=CANARY_INSTANCE,
                            optimization_id=CANARY_OPTIMIZATION,
                        ),
                    )
                    if canary
                    else ()
                )
                traffic = generate(
                    TrafficModel(requests_per_day=per_day),
                    start,
                    DAYS,
                    seed=seed + 100 * c_index + 10 * m_index + v_index,
                    effects=effects,
                )
                traffic.timestamp = np.minimum(traffic.timestamp, now.timestamp() - 1)
                routes = traffic.route_names
                n = traffic.size
                columns["t"].append(traffic.timestamp)
                columns["agent"].extend([agent_id] * n)
                columns["customer"].extend([customer_id] * n)
                columns["rid"].extend(f"c{c_index}-{model}-{version}-{i:08d}" for i in range(n))
                columns["model"].extend([model] * n)
                columns["version"].extend([version] * n)
                for name, values in (
                    ("lat", traffic.latency_ms),
                    ("rel", traffic.relevance),
                    ("coh", traffic.coherence),
                    ("fac", traffic.factuality),
                    ("hal", traffic.hallucination),
                    ("tox", traffic.toxicity),
                    ("ov", traffic.overall),
                    ("route", traffic.route),
                ):
                    numbers[name].append(values)
                numbers["inst"].extend(traffic.instance_id or [None] * n)
                numbers["opt"].extend(traffic.optimization_id or [None] * n)
    timestamps = np.concatenate(columns["t"])
    order = np.argsort(timestamps, kind="stable")
    arrays = {name: np.concatenate(values) for name, values in numbers.items() if name not in ("inst", "opt")}
    total = int(order.size)
    copy_sql = f"COPY quality_metrics ({', '.join(INGEST_COLUMNS)}) FROM STDIN"
    for offset in range(0, total, CHUNK):
        with engine.begin() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for i in order[offset : offset + CHUNK].tolist():
                    metadata: dict[str, Any] = {"route": routes[int(arrays["route"][i])]}
                    if numbers["inst"][i]:
                        metadata["instance_id"] = numbers["inst"][i]
                        metadata["optimization_id"] = numbers["opt"][i]
                    copy.write_row(
                        (
                            columns["agent"][i],
                            columns["customer"][i],
                            columns["rid"][i],
                            columns["model"][i],
                            columns["version"][i],
                            512,
                            128,
                            float(arrays["lat"][i]),
                            float(arrays["rel"][i]),
                            float(arrays["coh"][i]),
                            float(arrays["fac"][i]),
                            bool(arrays["hal"][i]),
                            float(arrays["tox"][i]),
                            float(arrays["ov"][i]),
                            datetime.fromtimestamp(float(timestamps[i]), UTC),
                            Jsonb(metadata),
                        )
                    )
        print(f"  loaded {min(offset + CHUNK, total):,} / {total:,} rows", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE quality_metrics"))
    first_customer = customers[0][0]
    sample = [
        columns["rid"][i] for i in range(0, total, max(1, total // 2_500)) if columns["customer"][i] == first_customer
    ]
    fleet = Fleet(now=now, customers=customers, idle_agent=idle, rows=total, sample_request_ids=sample)
    with Session(engine) as session, session.begin():
        service.establish_baseline(
            session,
            Principal.operator(),
            BaselineCreate(
                customer_id=first_customer,
                model_name=MODELS[0],
                model_version=VERSIONS[0],
                window=BaselineWindow(start=now - timedelta(days=DAYS - 1), end=now - timedelta(days=DAYS - 3)),
            ),
        )
    fleet.load_seconds = time.perf_counter() - started
    return fleet


# --- the reads -------------------------------------------------------------------------------------------------

Read = Callable[[Session, Fleet], object]


def _detect(window: BaselineWindow) -> Read:
    def run(session: Session, fleet: Fleet) -> object:
        request = DetectRequest(
            customer_id=fleet.first[0], model_name=MODELS[0], model_version=VERSIONS[0], window=window, dry_run=True
        )
        return detection.detect(session, Principal.operator(), request)

    return run


def _last_day(fleet: Fleet) -> BaselineWindow:
    return BaselineWindow(start=fleet.now - timedelta(days=1), end=fleet.now + timedelta(minutes=1))


READS: dict[str, Read] = {
    "ingest: duplicate check of 5,000 request ids": lambda session, fleet: repository.stored_request_ids(
        session, fleet.first[0], [*fleet.sample_request_ids[:2_500], *(f"new-{i}" for i in range(2_500))]
    ),
    "ingest: the customer's default application agent": lambda session, fleet: repository.default_application_agent(
        session, fleet.first[0]
    ),
    "detect: last 500 records": lambda session, fleet: _detect(BaselineWindow(last_n=500))(session, fleet),
    "detect: last day": lambda session, fleet: _detect(_last_day(fleet))(session, fleet),
    "worker: versions with recent records": lambda session, fleet: monitoring_pass.model_versions_to_judge(
        session, fleet.now
    ),
    "worker: monitoring of one version": lambda session, fleet: monitoring_pass.monitor_version(
        session, fleet.first[0], MODELS[1], VERSIONS[1], fleet.now, rollback_for_quality
    ),
    "dashboard: the customer's model versions": lambda session, fleet: repository.model_versions_of(
        session, fleet.first[0]
    ),
    "dashboard: hourly series over 7 days": lambda session, fleet: repository.bucketed_series(
        session, fleet.first[0], MODELS[0], VERSIONS[0], fleet.now - timedelta(days=7), timedelta(hours=1)
    ),
    "gate: versions with records in the last hour": lambda session, fleet: repository.model_versions_since(
        session, fleet.first[0], fleet.now - timedelta(hours=1)
    ),
    "phase gate: arms of the last 6 hours": lambda session, fleet: phase_gate.count_arms(
        session,
        fleet.first[0],
        fleet.now - timedelta(hours=6),
        fleet.now,
        phase_gate.changed_condition(CANARY_OPTIMIZATION, [CANARY_INSTANCE]),
        phase_gate.control_condition(CANARY_OPTIMIZATION, [CANARY_INSTANCE]),
    ),
    "attribution: tags of a day's window": lambda session, fleet: __import__(
        "optiinfra.quality.attribution", fromlist=["window_tags"]
    ).window_tags(session, fleet.first[0], MODELS[0], VERSIONS[0], fleet.now - timedelta(days=1), fleet.now),
    "otlp: records by span id (7 days)": lambda session, fleet: otlp_repository.stored_records(
        session, fleet.first[0], [], ["0af7651916cd43dd8448eb211c80319c"], fleet.now - timedelta(days=7)
    ),
    "delete an agent without metrics (foreign key check)": lambda session, fleet: session.execute(
        text("DELETE FROM agents WHERE id = :id"), {"id": fleet.idle_agent}
    ),
}


@contextmanager
def _captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        reads_metrics = "quality_metrics" in statement and head in ("SELECT", "WITH")
        if reads_metrics or statement.startswith("DELETE FROM agents"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    indexes: set[str] = set()
    scans: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        if node.get("Relation Name") == "quality_metrics":
            scans.add(node["Node Type"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    triggers = {t["Trigger Name"]: round(t["Time"], 2) for t in plan.get("Triggers", [])}
    return {
        "ms": round(plan["Execution Time"] + sum(triggers.values()), 2),
        "indexes": sorted(indexes),
        "quality_metrics_scans": sorted(scans),
        "shared_buffers": plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0),
        **({"trigger_ms": triggers} if triggers else {}),
    }


def explain_reads(engine: Engine, fleet: Fleet) -> dict[str, list[dict[str, Any]]]:
    """Per read: each statement it ran on quality_metrics, EXPLAIN (ANALYZE, BUFFERS)ed (after one warm run)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, read in READS.items():
        with _captured(engine) as statements, Session(engine) as session:
            read(session, fleet)
            session.rollback()
        plans = []
        with engine.connect() as connection:
            for statement, parameters in statements:
                result = connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters
                ).scalar_one()
                plans.append(_plan_summary(result[0]))
            connection.rollback()
        out[name] = plans
        print(f"  {name}: " + "; ".join(f"{p['ms']} ms {'+'.join(p['indexes']) or 'no index'}" for p in plans))
    return out


# --- timed operations ------------------------------------------------------------------------------------------


def _copy_text(customer_id: uuid.UUID, agent_id: uuid.UUID, records: list[dict[str, Any]]) -> bytes:
    """The records as COPY text, rendered before the clock starts: the raw COPY times the server, not Python."""

    def field(value: Any) -> str:
        if value is None:
            return "\\N"
        if isinstance(value, bool):
            return "t" if value else "f"
        text_value = json.dumps(value) if isinstance(value, dict) else str(value)
        return text_value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    lines = []
    for r in records:
        values = (
            agent_id,
            customer_id,
            r["request_id"],
            r["model_name"],
            r["model_version"],
            None,
            None,
            r["latency_ms"],
            r["relevance_score"],
            r["coherence_score"],
            r["factuality_score"],
            r["hallucination_detected"],
            r["toxicity_score"],
            r["overall_quality_score"],
            r["timestamp"],
            r["metadata"],
        )
        lines.append("\t".join(field(value) for value in values))
    return ("\n".join(lines) + "\n").encode()


def _copy_rows(engine: Engine, data: bytes) -> None:
    with engine.begin() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY quality_metrics ({', '.join(INGEST_COLUMNS)}) FROM STDIN") as copy,
        ):
            copy.write(data)


def _fresh_records(fleet: Fleet, n: int, prefix: str, seed: int) -> list[dict[str, Any]]:
    """n new records of one version over the last hour (what a busy application sends)."""
    per_day = n * 24 * 3.0  # the daily cycle's trough is a third of the mean: enough records at any hour
    traffic = generate(TrafficModel(requests_per_day=per_day), fleet.now - timedelta(hours=1), 1 / 24, seed=seed)
    records = traffic.records(MODELS[2], VERSIONS[0], prefix=prefix)[:n]
    assert len(records) == n, f"the simulator made {len(records)} records, not {n}"
    return records


def time_ingest(
    engine: Engine, base_url: str, fleet: Fleet, rows: int, batch: int, label: str, round_number: int
) -> tuple[float, float]:
    """(API rows/s, raw COPY rows/s) for `rows` new records each, alternating which goes first."""
    customer_id, agent_id, key = fleet.first
    api_records = _fresh_records(fleet, rows, f"api-{label}-{round_number}-", seed=round_number)
    copy_records = _fresh_records(fleet, rows, f"copy-{label}-{round_number}-", seed=round_number)

    def api() -> float:
        started = time.perf_counter()
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as client:
            for offset in range(0, rows, batch):
                response = client.post(
                    "/api/v1/quality/metrics", json={"records": api_records[offset : offset + batch]}
                )
                assert response.status_code == 200, response.text
                assert response.json()["inserted"] == len(api_records[offset : offset + batch]), response.text
        return rows / (time.perf_counter() - started)

    copy_data = _copy_text(customer_id, agent_id, copy_records)

    def raw() -> float:
        started = time.perf_counter()
        _copy_rows(engine, copy_data)
        return rows / (time.perf_counter() - started)

    if round_number % 2 == 0:
        api_rate = api()
        copy_rate = raw()
    else:
        copy_rate = raw()
        api_rate = api()
    return api_rate, copy_rate


def remove_ingested(engine: Engine) -> None:
    """Delete the rows the ingest rounds added (all in the last hour), so every pass reads the populated table."""
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM quality_metrics WHERE request_id LIKE 'api-%' OR request_id LIKE 'copy-%'")
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE quality_metrics"))


def _timed(runs: int, action: Callable[[], object]) -> list[float]:
    action()  # warm
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        out.append(time.perf_counter() - started)
    return out


def time_operations(engine: Engine, base_url: str, fleet: Fleet, runs: int) -> dict[str, list[float]]:
    factory = sessionmaker(engine)

    def in_rolled_back_session(read: Read) -> Callable[[], object]:
        def run() -> object:
            with factory() as session:
                try:
                    return read(session, fleet)
                finally:
                    session.rollback()

        return run

    def worker_pass() -> object:
        return monitoring_pass.run_monitoring_pass(factory, fleet.now, rollback=rollback_for_quality)

    with httpx.Client(base_url=base_url, timeout=120, follow_redirects=False) as browser:
        signed_in = browser.post("/login", data={"api_key": fleet.first[2]})
        assert signed_in.status_code == 303, signed_in.text

        def quality_page() -> object:
            response = browser.get("/quality", params={"model": f"{MODELS[0]}:{VERSIONS[0]}", "days": 7})
            assert response.status_code == 200, response.text[:500]
            return response

        out = {
            "detect_last_500_records": _timed(runs, in_rolled_back_session(READS["detect: last 500 records"])),
            "detect_last_day": _timed(runs, in_rolled_back_session(READS["detect: last day"])),
            "dashboard_quality_page": _timed(runs, quality_page),
            # The first pass (warm-up, not counted) sets the initial baselines; the timed ones judge.
            "worker_pass_24_versions": _timed(max(1, runs // 2), worker_pass),
        }
    return out


# --- index sets ------------------------------------------------------------------------------------------------


def index_set(engine: Engine, revision: str) -> list[str]:
    """Move quality_metrics to the index set of `revision`; returns its indexes."""
    current = migrations.current_revision(engine)
    if current != revision:
        if revision == SEEDS:
            migrations.downgrade(engine, revision)
        else:
            migrations.upgrade(engine, revision)
    with engine.connect() as connection:
        return sorted(
            connection.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'quality_metrics'")).all()
        )


def _sizes(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                # Summed over the partitions (016), or the one table before it.
                "SELECT sum(pg_relation_size(relid)), sum(pg_indexes_size(relid)), sum(pg_total_relation_size(relid)), "
                "coalesce(pg_total_relation_size(to_regclass('quality_request_keys')), 0) "
                "FROM pg_partition_tree('quality_metrics') WHERE isleaf"
            )
        ).one()
    return {
        "heap_bytes": int(row[0]),
        "index_bytes": int(row[1]),
        "total_bytes": int(row[2]),
        "request_keys_total_bytes": int(row[3]),
    }


# --- ingest at scale (issue 16's "Done when": 10,000,000 rows) ---------------------------------------------------

_GENERATE = text(
    "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, prompt_tokens, "
    "completion_tokens, latency_ms, relevance_score, coherence_score, factuality_score, hallucination_detected, "
    "toxicity_score, overall_quality_score, timestamp, metadata) "
    "SELECT t.agent_id, t.customer_id, 'gen-' || i, (ARRAY['model-a','model-b','model-c','model-d'])[1 + i % 4], "
    "(ARRAY['v1','v2'])[1 + (i / 4) % 2], 200 + i % 300, 100 + i % 200, 300 + (i % 997), "
    "0.7 + (i % 29) / 100.0, 0.7 + (i % 31) / 100.0, 0.7 + (i % 23) / 100.0, i % 50 = 0, (i % 13) / 1000.0, "
    "0.75 + (i % 19) / 100.0, :start + (i * :step) * interval '1 second', "
    "jsonb_build_object('route', 'chat', 'instance_id', 'i-' || (i % 7)) "
    "FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint) - 1) AS i "
    "CROSS JOIN LATERAL (SELECT (CAST(:tenants AS uuid[]))[1 + i % :n] AS customer_id, "
    "(CAST(:agents AS uuid[]))[1 + i % :n] AS agent_id) AS t"
)


def populate_server_side(engine: Engine, rows: int) -> Fleet:
    """Fill quality_metrics with `rows` records generated by PostgreSQL (generate_series), in time order over DAYS
    days, through the same triggers as any insert (so quality_request_keys holds their keys)."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    customers, idle = _tenants(engine)
    step = DAYS * 86_400 / rows
    chunk = 500_000
    for low in range(0, rows, chunk):
        high = min(rows, low + chunk)
        with engine.begin() as connection:
            connection.execute(
                _GENERATE,
                {
                    "start": start,
                    "step": step,
                    "low": low,
                    "high": high,
                    "tenants": [str(c) for c, _, _ in customers],
                    "agents": [str(a) for _, a, _ in customers],
                    "n": len(customers),
                },
            )
        print(f"  {high:,} rows ({time.perf_counter() - started:,.0f} s)", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE quality_metrics"))
        connection.execute(text("VACUUM ANALYZE quality_request_keys"))
    return Fleet(now, customers, idle, rows=rows, load_seconds=time.perf_counter() - started)


def ingest_only(args: argparse.Namespace) -> None:
    """`--ingest-only`: fill the table at head (partitioned, migration 016), then API ingest against a raw COPY
    into the same table, alternating which goes first; results to results/quality_ingest.json."""
    load_average = os.getloadavg()
    with fresh_database() as engine:
        migrations.upgrade(engine)
        print(f"populating {args.rows:,} rows server-side ...", flush=True)
        fleet = populate_server_side(engine, args.rows)
        with running_server(engine, args.port, ["--otlp-grpc-port", "0"]) as (base_url, _operator_key):
            rounds = []
            for r in range(args.rounds):
                api_rate, copy_rate = time_ingest(engine, base_url, fleet, args.ingest_rows, args.batch, "ingest", r)
                print(f"  ingest: API {api_rate:,.0f} rows/s, raw COPY {copy_rate:,.0f} rows/s", flush=True)
                rounds.append({"api_rows_per_second": round(api_rate), "raw_copy_rows_per_second": round(copy_rate)})
        sizes = _sizes(engine)
    api = median([r["api_rows_per_second"] for r in rounds])
    raw = median([r["raw_copy_rows_per_second"] for r in rounds])
    results = {
        "command": f"benchmarks/quality_scale.py --ingest-only --rows {args.rows} --ingest-rows {args.ingest_rows} "
        f"--rounds {args.rounds}",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "table": {"rows": fleet.rows, "load_seconds": round(fleet.load_seconds, 1), "sizes": sizes},
        "batch": args.batch,
        "rounds": rounds,
        "api_rows_per_second_median": round(api),
        "raw_copy_rows_per_second_median": round(raw),
        "api_over_raw_copy": round(api / raw, 2),
        "api_over_issue_baseline_4958": round(api / 4958, 2),
        "load_average_start": [round(value, 1) for value in load_average],
        "load_average_end": [round(value, 1) for value in os.getloadavg()],
    }
    write_results("quality_ingest", results)
    print(json.dumps({k: v for k, v in results.items() if k != "rounds"}, indent=2), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--ingest-only", action="store_true", help="only ingest against raw COPY, on a table filled server-side"
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ingest-rows", type=int, default=50_000, help="rows per ingest round, API and COPY each")
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds per index set and pass")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each read")
    parser.add_argument("--port", type=int, default=None, help="the server's port (default: a free one)")
    args = parser.parse_args()
    if args.ingest_only:
        ingest_only(args)
        return
    load_average = os.getloadavg()
    free_bytes = shutil.disk_usage(tempfile.gettempdir()).free
    results: dict[str, Any] = {"passes": []}
    with fresh_database() as engine:
        print(f"populating {args.rows:,} rows ...", flush=True)
        fleet = populate(engine, args.rows)
        results["table"] = {"rows": fleet.rows, "load_seconds": round(fleet.load_seconds, 1)}
        # A port of this benchmark's own (--port), and no OTLP/gRPC listener (its default port is shared).
        with running_server(engine, args.port, ["--otlp-grpc-port", "0"]) as (base_url, _operator_key):
            for label, revision in (("lean", LEAN), ("seeds", SEEDS), ("lean", LEAN)):
                started = time.perf_counter()
                indexes = index_set(engine, revision)
                switch_seconds = time.perf_counter() - started
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.execute(text("ANALYZE quality_metrics"))
                print(f"{label} ({len(indexes)} indexes, switched in {switch_seconds:.0f} s)", flush=True)
                plans = explain_reads(engine, fleet)
                timings = time_operations(engine, base_url, fleet, args.runs)
                for name, values in timings.items():
                    print(f"  {name}: median {median(values) * 1000:,.0f} ms", flush=True)
                ingest = [
                    time_ingest(
                        engine, base_url, fleet, args.ingest_rows, args.batch, f"{label}{len(results['passes'])}", r
                    )
                    for r in range(args.rounds)
                ]
                for api_rate, copy_rate in ingest:
                    print(f"  ingest: API {api_rate:,.0f} rows/s, raw COPY {copy_rate:,.0f} rows/s", flush=True)
                sizes = _sizes(engine)
                remove_ingested(engine)  # the next pass reads the same table
                results["passes"].append(
                    {
                        "index_set": label,
                        "revision": revision,
                        "indexes": indexes,
                        "switch_seconds": round(switch_seconds, 1),
                        "sizes": sizes,
                        "api_rows_per_second": [round(a) for a, _ in ingest],
                        "raw_copy_rows_per_second": [round(c) for _, c in ingest],
                        "median_api_rows_per_second": round(median([a for a, _ in ingest])),
                        "median_raw_copy_rows_per_second": round(median([c for _, c in ingest])),
                        "seconds": timings,
                        "median_ms": {name: round(median(values) * 1000, 1) for name, values in timings.items()},
                        "plans": plans,
                    }
                )
    lean = [p for p in results["passes"] if p["index_set"] == "lean"]
    seeds = [p for p in results["passes"] if p["index_set"] == "seeds"]

    def pooled(passes: list[dict[str, Any]], key: str) -> float:
        return median([value for p in passes for value in p[key]])

    summary = {
        "median_api_rows_per_second": {
            "seeds": pooled(seeds, "api_rows_per_second"),
            "lean": pooled(lean, "api_rows_per_second"),
        },
        "median_raw_copy_rows_per_second": {
            "seeds": pooled(seeds, "raw_copy_rows_per_second"),
            "lean": pooled(lean, "raw_copy_rows_per_second"),
        },
        "median_ms": {
            name: {
                "seeds": round(median([v for p in seeds for v in p["seconds"][name]]) * 1000, 1),
                "lean": round(median([v for p in lean for v in p["seconds"][name]]) * 1000, 1),
            }
            for name in lean[0]["seconds"]
        },
    }
    summary["api_ingest_ratio_lean_to_seeds"] = round(
        summary["median_api_rows_per_second"]["lean"] / summary["median_api_rows_per_second"]["seeds"], 2
    )
    summary["raw_copy_ratio_lean_to_seeds"] = round(
        summary["median_raw_copy_rows_per_second"]["lean"] / summary["median_raw_copy_rows_per_second"]["seeds"], 2
    )
    for label, key in (("seeds", "seeds"), ("lean", "lean")):
        summary[f"api_to_raw_copy_{label}"] = round(
            summary["median_api_rows_per_second"][key] / summary["median_raw_copy_rows_per_second"][key], 2
        )
    path = write_results(
        "quality_scale",
        {
            "arguments": vars(args),
            "load_average_at_start": load_average,
            "load_average_at_end": os.getloadavg(),
            "free_disk_bytes_at_start": free_bytes,
            "summary": summary,
            **results,
        },
    )
    print(summary)
    print(f"results in {path}")


if __name__ == "__main__":
    main()
