"""The read side of issue 16 at 1,000,000 and 10,000,000 records, on PostgreSQL (records + hourly rollups) and on
ClickHouse (the real engine in-process, chdb), side by side.

The records are generated server-side (INSERT ... SELECT FROM generate_series on PostgreSQL, FROM numbers() on
ClickHouse: the same formulas), in time order: 4 customers x 5 models x 5 versions = 100 model versions over 30
days, 3 routes, scores and latencies drawn by the server. PostgreSQL's rollups are kept by migration 017's
triggers during the load. At each size, medians of `--runs` warm runs of:

- detection of one version's last day (`detect`, dry run) and its last 500 records;
- the dashboard's quality page (`GET /quality`, range 7d, a real `optiinfra serve` on loopback, signed in);
- the page's data alone (`bucketed_series`, 7 days) and on ClickHouse (`series` of ClickHouseStore);
- fleet-wide aggregates of the last 7 days: from the rollups (`PostgresStore.fleet_summary`), from the raw records
  (the same GROUP BY over quality_metrics), and on ClickHouse (`ClickHouseStore.fleet_summary`);
- a window read (the last day of one version) on both stores;
- a worker monitoring pass over the 100 versions (PostgreSQL only: the monitoring reads PostgreSQL), up to
  `--worker-max-rows`.

    .venv/bin/python benchmarks/quality_store_scale.py [--sizes 1000000 10000000] [--runs 5] [--worker-max-rows 1000000]

Results: results/quality_store_scale.json (docs/scale.md quotes them).
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from _support import fresh_database, median, running_server, write_results
from quality_scale import _copy_rows, _copy_text
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.keys import generate_key, key_digest
from optiinfra.auth.principal import Principal, Role
from optiinfra.models import Agent, AgentCustomer, AgentType, Customer
from optiinfra.quality import detection, monitoring_pass, partitions, repository, service
from optiinfra.quality.clickhouse import ChdbClickHouse
from optiinfra.quality.schemas import BaselineCreate, BaselineWindow, DetectRequest
from optiinfra.quality.store import ClickHouseStore, PostgresStore, series
from optiinfra.quality.traffic import TrafficModel, generate
from optiinfra.recommendations.service import rollback_for_quality

CUSTOMERS, MODELS, VERSIONS, DAYS = 4, 5, 5, 30
VERSION_COUNT = CUSTOMERS * MODELS * VERSIONS
CHUNK = 500_000

# Row i of n: version v (i % 100, and every 20th row to version 0: the version detection and the quality page read
# has about 20,000 records a day at 10,000,000 rows, more than the 14,000), time start + i * span / n (time
# order), scores from the server's random().
_PG_ROWS = (
    "INSERT INTO quality_metrics (agent_id, customer_id, request_id, model_name, model_version, prompt_tokens, "
    "completion_tokens, latency_ms, relevance_score, coherence_score, factuality_score, hallucination_detected, "
    "toxicity_score, overall_quality_score, timestamp, metadata) "
    "SELECT (CAST(:agents AS uuid[]))[1 + v / 25], (CAST(:customers AS uuid[]))[1 + v / 25], "
    "'r-' || i, 'model-' || ((v % 25) / 5), 'v' || (v % 5), 200 + (i % 300), 50 + (i % 200), "
    "-ln(1 - random()) * 700 + 80, random(), random(), random(), random() < 0.05, random() ^ 4, "
    "0.55 + 0.4 * random(), CAST(:start AS timestamptz) + (i * CAST(:step AS double precision)) * interval '1 second', "
    "CASE i % 3 WHEN 0 THEN '{}'::jsonb WHEN 1 THEN '{\"route\": \"search\"}'::jsonb "
    'ELSE \'{"route": "support"}\'::jsonb END '
    "FROM (SELECT i, CASE WHEN i % 20 = 0 THEN 0 ELSE i % 100 END AS v "
    "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i) AS numbered"
)
_CH_ROWS = (
    "INSERT INTO quality_metrics (customer_id, agent_id, request_id, model_name, model_version, route, timestamp, "
    "prompt_tokens, completion_tokens, latency_ms, relevance_score, coherence_score, factuality_score, "
    "hallucination_detected, toxicity_score, overall_quality_score, scores_pending, metadata) "
    "SELECT {customers:Array(UUID)}[1 + intDiv(v, 25)], {agents:Array(UUID)}[1 + intDiv(v, 25)], "
    "concat('r-', toString(number)), concat('model-', toString(intDiv(v % 25, 5))), "
    "concat('v', toString(v % 5)), ['', 'search', 'support'][1 + number % 3], "
    "addMicroseconds({start:DateTime64(6, 'UTC')}, toInt64(number * {step:Float64} * 1000000)), "
    "200 + number % 300, 50 + number % 200, -log(1 - randCanonical()) * 700 + 80, randCanonical(), randCanonical(), "
    "randCanonical(), randCanonical() < 0.05, pow(randCanonical(), 4), 0.55 + 0.4 * randCanonical(), false, '{}' "
    "FROM (SELECT number, if(number % 20 = 0, 0, number % 100) AS v FROM numbers({first:UInt64}, {count:UInt64}))"
)


def tenants(engine: Engine) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    out = []
    with Session(engine) as session, session.begin():
        for index in range(CUSTOMERS):
            key = generate_key(Role.CUSTOMER)
            customer = Customer(name=f"Store {index}", email=f"store-{index}@example.com", api_key=key_digest(key))
            agent = Agent(type=AgentType.APPLICATION, name=f"store-app-{index}")
            session.add_all([customer, agent])
            session.flush()
            session.add(AgentCustomer(agent_id=agent.id, customer_id=customer.id))
            out.append((customer.id, agent.id, key))
    return out


ROLLUP_TRIGGERS = ("quality_rollups_insert", "quality_rollups_delete", "quality_rollups_update")
# The secondary indexes of quality_metrics (migration 015), dropped during a load and built again after it.
INDEXES = (
    (
        "DROP INDEX ix_quality_metrics_customer_model_version_timestamp",
        "CREATE INDEX ix_quality_metrics_customer_model_version_timestamp "
        "ON quality_metrics (customer_id, model_name, model_version, timestamp)",
    ),
    (
        "DROP INDEX ix_quality_metrics_timestamp_brin",
        "CREATE INDEX ix_quality_metrics_timestamp_brin ON quality_metrics USING brin (timestamp) "
        "WITH (pages_per_range = 32, autosummarize = on)",
    ),
)


def rollup_sql() -> str:
    """Migration 017's roll-up of every stored record (the SQL its upgrade runs)."""
    module = importlib.import_module("optiinfra.migrations.versions.017_quality_rollups")
    return str(module._merge("SELECT 1 AS sign, * FROM quality_metrics"))


def load_postgres(
    engine: Engine,
    fleet: list[tuple[uuid.UUID, uuid.UUID, str]],
    start: datetime,
    first: int,
    last: int,
    total: int,
) -> dict[str, float]:
    """Load rows [first, last) as a bulk load is done: secondary indexes and rollup triggers off, then the indexes
    built and the rollups made again from every record (exactly what the triggers would have written)."""
    started = time.perf_counter()
    params = {
        "customers": [c for c, _, _ in fleet],
        "agents": [a for _, a, _ in fleet],
        "start": start,
        "step": DAYS * 86400 / total,
    }
    with engine.begin() as connection:
        for drop, _ in INDEXES:
            connection.execute(text(drop))
        for trigger in ROLLUP_TRIGGERS:
            connection.execute(text(f"ALTER TABLE quality_metrics DISABLE TRIGGER {trigger}"))
    for chunk in range(first, last, CHUNK):
        with engine.begin() as connection:
            connection.execute(text(_PG_ROWS), {**params, "first": chunk, "last": min(chunk + CHUNK, last) - 1})
        print(f"  PostgreSQL: {min(chunk + CHUNK, last):,} rows", flush=True)
    loaded = time.perf_counter()
    with engine.begin() as connection:
        for _, create in INDEXES:
            connection.execute(text(create))
    indexed = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM quality_rollups"))
        connection.execute(text(rollup_sql()))
        for trigger in ROLLUP_TRIGGERS:
            connection.execute(text(f"ALTER TABLE quality_metrics ENABLE TRIGGER {trigger}"))
    rolled_up = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # All three, as autovacuum would after a load this size: left to autovacuum, the keys table's vacuum (a
        # gigabyte at 10,000,000 records) runs during the measurements and takes a core from them.
        connection.execute(text("VACUUM ANALYZE quality_metrics"))
        connection.execute(text("VACUUM ANALYZE quality_request_keys"))
        connection.execute(text("VACUUM ANALYZE quality_rollups"))
    return {
        "insert_seconds": round(loaded - started, 1),
        "index_seconds": round(indexed - loaded, 1),
        "rollup_seconds": round(rolled_up - indexed, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def load_clickhouse(
    client: ChdbClickHouse,
    fleet: list[tuple[uuid.UUID, uuid.UUID, str]],
    start: datetime,
    first: int,
    last: int,
    total: int,
) -> float:
    started = time.perf_counter()
    client.command(
        _CH_ROWS,
        {
            "customers": [str(c) for c, _, _ in fleet],
            "agents": [str(a) for _, a, _ in fleet],
            "start": start,
            "step": DAYS * 86400 / total,
            "first": first,
            "count": last - first,
        },
    )
    client.command("OPTIMIZE TABLE quality_metrics FINAL")
    return time.perf_counter() - started


TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


class CpuMeter:
    """CPU seconds spent by this process (with chdb's threads), the server's process and the database's backends:
    what an operation costs, which the wall clock of a loaded machine does not tell."""

    def __init__(self, engine: Engine, server_port: int | None) -> None:
        self.engine = engine
        fronts = {
            int(path.parent.name)
            for path in Path("/proc").glob("[0-9]*/cmdline")
            if server_port and f"--port\0{server_port}\0".encode() in _read(path) and b"optiinfra" in _read(path)
        }
        # `serve` runs a front process and its children (API processes, through a fork server): count them all.
        self.server_pids = sorted(fronts | _descendants(fronts))

    def _backends(self) -> dict[int, float]:
        with self.engine.connect() as connection:
            pids = connection.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).all()
        return {int(pid): _process_cpu(int(pid)) for pid in pids}

    def snapshot(self) -> tuple[float, float, dict[int, float]]:
        return (
            time.process_time(),
            sum(_process_cpu(pid) for pid in self.server_pids),
            self._backends(),
        )

    def since(self, before: tuple[float, float, dict[int, float]]) -> dict[str, float]:
        after = self.snapshot()
        backends = sum(cpu - before[2].get(pid, 0.0) for pid, cpu in after[2].items())
        return {"client": after[0] - before[0], "server": after[1] - before[1], "postgresql": backends}


def _descendants(roots: set[int]) -> set[int]:
    parents: dict[int, int] = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(path.parent.name)] = int(path.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def timed(
    runs: int, action: Callable[[], object], meter: CpuMeter | None = None
) -> tuple[list[float], dict[str, float]]:
    """Wall-clock seconds of each warm run, and the CPU seconds per run (averaged over the runs)."""
    action()
    out = []
    before = meter.snapshot() if meter else None
    for _ in range(runs):
        started = time.perf_counter()
        action()
        out.append(time.perf_counter() - started)
    cpu = {k: round(v / runs, 4) for k, v in meter.since(before).items()} if meter and before else {}
    return out, cpu


RAW_FLEET = (
    "SELECT customer_id, model_name, model_version, count(*), avg(overall_quality_score), "
    "avg(hallucination_detected::int), percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), "
    "sum(prompt_tokens), sum(completion_tokens) FROM quality_metrics WHERE timestamp >= :since AND timestamp < :until "
    "GROUP BY 1, 2, 3"
)


def measure(
    engine: Engine,
    meter: CpuMeter,
    store: ClickHouseStore,
    base_url: str,
    fleet: list[tuple[uuid.UUID, uuid.UUID, str]],
    now: datetime,
    runs: int,
    skip_worker: bool,
    with_clickhouse: bool = True,
) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    factory = sessionmaker(engine)
    customer_id, _, key = fleet[0]
    model, version = "model-0", "v0"
    week = now - timedelta(days=7)
    postgres = PostgresStore()

    def in_session(read: Callable[[Session], object]) -> Callable[[], object]:
        def run() -> object:
            with factory() as session:
                try:
                    return read(session)
                finally:
                    session.rollback()

        return run

    def detect(window: BaselineWindow) -> Callable[[Session], object]:
        request = DetectRequest(
            customer_id=customer_id, model_name=model, model_version=version, window=window, dry_run=True
        )
        return lambda session: detection.detect(session, Principal.operator(), request, rollback_for_quality)

    last_day = BaselineWindow(start=now - timedelta(days=1), end=now + timedelta(minutes=1))
    out: dict[str, list[float]] = {}
    cpu: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=base_url, timeout=300, follow_redirects=False) as browser:
        assert browser.post("/login", data={"api_key": key}).status_code == 303

        def page() -> object:
            response = browser.get("/quality", params={"model": f"{model}:{version}", "range": "7d"})
            assert response.status_code == 200, response.text[:300]
            return response

        cases: dict[str, Callable[[], object]] = {
            "postgresql_detect_last_day": in_session(detect(last_day)),
            "postgresql_detect_last_500": in_session(detect(BaselineWindow(last_n=500))),
            "postgresql_quality_page": page,
            "postgresql_chart_data_7_days": in_session(
                lambda s: repository.bucketed_series(s, customer_id, model, version, week, timedelta(hours=1))
            ),
            "clickhouse_chart_data_7_days": lambda: series(store, None, customer_id, model, version, week),  # type: ignore[arg-type]
            "postgresql_fleet_7_days_rollups": in_session(lambda s: postgres.fleet_summary(s, week, now)),
            "postgresql_fleet_7_days_raw": in_session(
                lambda s: s.execute(text(RAW_FLEET), {"since": week, "until": now}).all()
            ),
            "clickhouse_fleet_7_days": lambda: store.fleet_summary(None, week, now),  # type: ignore[arg-type]
            "postgresql_window_last_day": in_session(
                lambda s: postgres.read_window(
                    s, customer_id, model, model_version=version, start=now - timedelta(days=1)
                )
            ),
            "clickhouse_window_last_day": lambda: store.read_window(
                None,
                customer_id,
                model,
                model_version=version,
                start=now - timedelta(days=1),  # type: ignore[arg-type]
            ),
        }
        for name, action in cases.items():
            if name.startswith("clickhouse_") and not with_clickhouse:
                continue
            out[name], cpu[name] = timed(runs, action, meter)
            print(
                f"  {name}: median {median(out[name]) * 1000:,.1f} ms, CPU per run "
                + ", ".join(f"{k} {v * 1000:,.0f} ms" for k, v in cpu[name].items()),
                flush=True,
            )
    if not skip_worker:
        name = "postgresql_worker_pass_100_versions"
        out[name], cpu[name] = timed(
            1, lambda: monitoring_pass.run_monitoring_pass(factory, now, rollback=rollback_for_quality), meter
        )
        print(f"  worker pass: {out['postgresql_worker_pass_100_versions'][0]:,.1f} s", flush=True)
    return out, cpu


def remove_ingested(engine: Engine) -> None:
    """Delete what the ingest rounds stored (request ids api-* and copy-*, in the last hour): the next size's reads
    must see the generated records only."""
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM quality_metrics WHERE request_id LIKE 'api-%' OR request_id LIKE 'copy-%'")
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("quality_metrics", "quality_request_keys", "quality_rollups"):
            connection.execute(text(f"VACUUM ANALYZE {table}"))


def _fresh_records(now: datetime, n: int, prefix: str, seed: int) -> list[dict[str, Any]]:
    """n new records of the busy version over the hour before `now`, with random request ids (as clients send)."""
    traffic = generate(TrafficModel(requests_per_day=n * 24 * 3.0), now - timedelta(hours=1), 1 / 24, seed=seed)
    records = traffic.records("model-0", "v0", prefix=prefix)[:n]
    assert len(records) == n, f"the simulator made {len(records)} records, not {n}"
    for record in records:
        record["request_id"] = f"{prefix}{uuid.uuid4().hex}"
    return records


def time_ingest(
    engine: Engine,
    base_url: str,
    fleet: list[tuple[uuid.UUID, uuid.UUID, str]],
    now: datetime,
    rows: int,
    batch: int,
    rounds: int,
    label: str,
    clients: int = 1,
) -> list[dict[str, int]]:
    """Per round: API ingest (`POST /api/v1/quality/metrics`, `batch` records a request, one client, bodies encoded
    before the clock starts) against a raw text COPY of as many rows into the same table (rendered before the clock
    starts), alternating which goes first. Both time the server, not the client's JSON or COPY encoding. With
    `clients` > 1, as many clients send the batches side by side (and as many COPYs run side by side)."""
    customer_id, agent_id, key = fleet[0]
    out = []
    with httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=300,
        limits=httpx.Limits(max_connections=clients),
    ) as client:
        for round_number in range(rounds):
            api_records = _fresh_records(now, rows, f"api-{label}-{round_number}-", seed=round_number)
            bodies = [orjson.dumps({"records": api_records[i : i + batch]}) for i in range(0, rows, batch)]
            copy_data = _copy_text(
                customer_id,
                agent_id,
                _fresh_records(now, rows, f"copy-{label}-{round_number}-", seed=100 + round_number),
            )

            def send(body: bytes) -> None:
                response = client.post("/api/v1/quality/metrics", content=body)
                assert response.status_code == 200, response.text[:500]
                assert response.json()["inserted"] == batch, response.text[:500]

            def api(bodies: list[bytes] = bodies) -> float:
                started = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(send, bodies))
                return rows / (time.perf_counter() - started)

            def raw(copy_data: bytes = copy_data) -> float:
                lines = copy_data.splitlines(keepends=True)
                share = -(-len(lines) // clients)
                parts = [b"".join(lines[i : i + share]) for i in range(0, len(lines), share)]
                started = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(lambda part: _copy_rows(engine, part), parts))
                return rows / (time.perf_counter() - started)

            if round_number % 2 == 0:
                api_rate, copy_rate = api(), raw()
            else:
                copy_rate = raw()
                api_rate = api()
            print(f"  ingest: API {api_rate:,.0f} records/s, raw COPY {copy_rate:,.0f} rows/s", flush=True)
            out.append({"api_records_per_second": round(api_rate), "raw_copy_rows_per_second": round(copy_rate)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--worker-max-rows", type=int, default=1_000_000, help="time the worker pass only up to this size"
    )
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--ingest-rows", type=int, default=50_000, help="records per ingest round, API and COPY each")
    parser.add_argument("--ingest-rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5_000, help="records per API request")
    parser.add_argument("--no-clickhouse", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--ingest-clients",
        type=int,
        nargs="+",
        default=[1, 2],
        help="ingest with each of these numbers of concurrent clients (and as many side-by-side COPYs)",
    )
    parser.add_argument("--api-processes", type=int, default=2, help="the server's --api-processes")
    args = parser.parse_args()
    results: dict[str, Any] = {"arguments": vars(args), "load_average_at_start": os.getloadavg(), "sizes": []}
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    largest = max(args.sizes)
    with fresh_database() as engine, tempfile.TemporaryDirectory() as chdb_dir:
        client = ChdbClickHouse(chdb_dir)
        store = ClickHouseStore(client)
        store.ensure_schema()
        fleet = tenants(engine)
        # Daily partitions over the 30 days, as the worker would have created them while the records came in (its
        # pass creates them 7 days ahead); without them every record would land in the default partition.
        with Session(engine) as session, session.begin():
            for part in partitions.partitions(session):
                # Migration 016's partition for rows older than its day, empty in a fresh database: its range would
                # take the whole backfill (and today's records), where a running system has one partition a day.
                if part.start is None and not part.is_default:
                    # The name is the catalog's.
                    session.execute(text(f'ALTER TABLE quality_metrics DETACH PARTITION "{part.name}"'))
                    session.execute(text(f'DROP TABLE "{part.name}"'))
            partitions.ensure_partitions(session, start - timedelta(days=1), days_ahead=DAYS + 9)
        loaded = 0
        server_args = ["--otlp-grpc-port", "0", "--no-worker", "--api-processes", str(args.api_processes)]
        with running_server(engine, args.port, server_args) as (base_url, _):
            for size in sorted(args.sizes):
                # Rows are numbered over the largest size, which spans the 30 days up to now; a size holds the last
                # `size` of them (the last days, as dense as at the largest size), so the dashboard's ranges, which
                # end now, always read records.
                print(f"loading to {size:,} rows ...", flush=True)
                pg_seconds = load_postgres(engine, fleet, start, largest - size, largest - loaded, largest)
                ch_seconds = (
                    0.0
                    if args.no_clickhouse
                    else load_clickhouse(client, fleet, start, largest - size, largest - loaded, largest)
                )
                loaded = size
                horizon = start + timedelta(days=DAYS)
                if size == sorted(args.sizes)[0]:
                    with Session(engine) as session, session.begin():
                        service.establish_baseline(
                            session,
                            Principal.operator(),
                            BaselineCreate(
                                customer_id=fleet[0][0],
                                model_name="model-0",
                                model_version="v0",
                                window=BaselineWindow(
                                    start=horizon - timedelta(days=2.9), end=horizon - timedelta(days=1.5)
                                ),
                            ),
                        )
                with engine.connect() as connection:
                    sizes = connection.execute(
                        text(
                            "SELECT (SELECT sum(pg_total_relation_size(relid)) "
                            "FROM pg_partition_tree('quality_metrics') "
                            "WHERE isleaf), "
                            "pg_total_relation_size('quality_rollups'), (SELECT count(*) FROM quality_rollups)"
                        )
                    ).one()
                ch_bytes = client.rows(
                    "SELECT sum(bytes_on_disk) FROM system.parts WHERE table = 'quality_metrics' AND active"
                )[0][0]
                print(f"measuring at {size:,} rows (data up to {horizon:%Y-%m-%d %H:%M}) ...", flush=True)
                skip_worker = size > args.worker_max_rows
                port = int(base_url.rsplit(":", 1)[1].split("/")[0])
                timings, cpu = measure(
                    engine,
                    CpuMeter(engine, port),
                    store,
                    base_url,
                    fleet,
                    horizon,
                    args.runs,
                    skip_worker,
                    with_clickhouse=not args.no_clickhouse,
                )
                # Last: the ingested records (in the last hour) would change what the reads above see.
                print(f"ingest at {size:,} rows ...", flush=True)
                ingest: dict[str, Any] = {}
                for clients in args.ingest_clients:
                    rounds = time_ingest(
                        engine,
                        base_url,
                        fleet,
                        horizon,
                        args.ingest_rows,
                        args.batch,
                        args.ingest_rounds,
                        f"{size}-{clients}",
                        clients,
                    )
                    remove_ingested(engine)
                    api_median = median([r["api_records_per_second"] for r in rounds])
                    copy_median = median([r["raw_copy_rows_per_second"] for r in rounds])
                    ingest[f"{clients}_clients"] = {
                        "rounds": rounds,
                        "api_records_per_second_median": round(api_median),
                        "raw_copy_rows_per_second_median": round(copy_median),
                        "api_over_raw_copy": round(api_median / copy_median, 2),
                        "api_over_issue_baseline_4958": round(api_median / 4958, 2),
                    }
                results["sizes"].append(
                    {
                        "rows": size,
                        "postgresql_load": pg_seconds,
                        "clickhouse_load_seconds": round(ch_seconds, 1),
                        "postgresql_quality_metrics_bytes": int(sizes[0]),
                        "postgresql_rollups_bytes": int(sizes[1]),
                        "rollup_rows": int(sizes[2]),
                        "clickhouse_bytes": int(ch_bytes),
                        "seconds": timings,
                        "median_ms": {k: round(median(v) * 1000, 1) for k, v in timings.items()},
                        "cpu_ms_per_run": {k: {p: round(c * 1000, 1) for p, c in v.items()} for k, v in cpu.items()},
                        "ingest": ingest,
                        "load_average": os.getloadavg(),
                    }
                )
                write_results("quality_store_scale", results)  # each size as soon as it is measured
        client.close()
    results["load_average_at_end"] = os.getloadavg()
    path = write_results("quality_store_scale", results)
    print(f"results in {path}")


if __name__ == "__main__":
    main()
