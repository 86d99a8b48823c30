"""`optiinfra quality ...` and `optiinfra worker` against a fresh database."""

from __future__ import annotations

import csv
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from optiinfra.cli import app
from optiinfra.cli.context import console
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory
from optiinfra.models import AgentType, QualityMetric, QualityRegression
from optiinfra.quality.monitoring_pass import run_monitoring_pass
from optiinfra.quality.simulation import Traffic, simulate
from optiinfra.recommendations.service import rollback_for_quality
from tests.conftest import DatabaseFactory, url_for_env
from tests.factories import assign, make_agent, make_customer

runner = CliRunner()


@dataclass
class World:
    url: URL
    engine: Engine
    customer_email: str
    customer_id: uuid.UUID

    def cli(self, *args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, list(args), env={"OPTIINFRA_DATABASE_URL": url_for_env(self.url), "COLUMNS": "200"})


@pytest.fixture
def world(create_database: DatabaseFactory) -> Iterator[World]:
    url = create_database()
    engine = create_engine(url)
    migrations.upgrade(engine)
    with Session(engine) as session, session.begin():
        customer = make_customer(session)
        assign(session, make_agent(session, type=AgentType.APPLICATION), customer)
        email, customer_id = customer.email, customer.id
    yield World(url=url, engine=engine, customer_email=email, customer_id=customer_id)
    engine.dispose()


def records(
    n: int, traffic: Traffic, start: datetime, seed: int, model: str = "gpt-4o", version: str = "v1"
) -> list[dict]:
    columns = simulate(np.random.default_rng(seed), n, traffic)
    return [
        {
            "request_id": f"{version}-{seed}-{i}",
            "model_name": model,
            "model_version": version,
            "timestamp": (start + timedelta(seconds=10 * i)).isoformat(),
            "latency_ms": round(float(columns["latency_ms"][i]), 2),
            "relevance_score": round(float(columns["relevance"][i]), 4),
            "coherence_score": round(float(columns["coherence"][i]), 4),
            "factuality_score": round(float(columns["factuality"][i]), 4),
            "hallucination_detected": bool(columns["hallucination"][i]),
            "toxicity_score": round(float(columns["toxicity"][i]), 4),
            "overall_quality_score": round(float(columns["overall"][i]), 4),
            "metadata": {"route": "chat"},
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def count(world: World) -> int:
    with world.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(QualityMetric)).scalar_one()


def test_import_jsonl_then_again_stores_each_record_once(world: World, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "metrics.jsonl", records(300, Traffic(), datetime.now(UTC) - timedelta(hours=2), 1))
    first = world.cli("quality", "import", str(path), "--customer", world.customer_email)
    assert first.exit_code == 0, first.output
    assert "Imported 300 records (0 already stored)" in first.output
    second = world.cli("quality", "import", str(path), "--customer", str(world.customer_id))
    assert second.exit_code == 0, second.output
    assert "Imported 0 records (300 already stored)" in second.output
    assert count(world) == 300


def test_import_csv_with_computed_overall_score(world: World, tmp_path: Path) -> None:
    rows = records(60, Traffic(), datetime.now(UTC) - timedelta(hours=1), 2)
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[k for k in rows[0] if k != "overall_quality_score"])
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **{k: v for k, v in row.items() if k != "overall_quality_score"},
                    "metadata": json.dumps(row["metadata"]),
                }
            )
    result = world.cli("quality", "import", str(path), "--customer", world.customer_email)
    assert result.exit_code == 0, result.output
    with world.engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*), min(overall_quality_score) FROM quality_metrics")).one()
    assert stored[0] == 60
    assert 0 < stored[1] <= 1


def test_import_refuses_the_whole_file_when_any_line_is_invalid(world: World, tmp_path: Path) -> None:
    rows = records(100, Traffic(), datetime.now(UTC) - timedelta(hours=1), 3)
    rows[10]["relevance_score"] = 1.7
    rows[42]["timestamp"] = "2026-01-01T00:00:00"  # no time zone
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    result = world.cli("quality", "import", str(path), "--customer", world.customer_email)
    assert result.exit_code == 1
    assert "line 11" in result.output
    assert "line 43" in result.output
    assert "nothing was imported" in result.output
    assert "Traceback" not in result.output
    assert count(world) == 0


def test_import_reports_malformed_json_with_its_line(world: World, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"request_id": "a"}\n{not json\n')
    result = world.cli("quality", "import", str(path), "--customer", world.customer_email)
    assert result.exit_code == 1
    assert "line 2: not valid JSON" in result.output
    assert "Traceback" not in result.output


def test_import_reports_up_to_50_bad_lines_in_one_pass_syntax_errors_included(world: World, tmp_path: Path) -> None:
    # 70 bad lines of three kinds spread over the file: the first 50 by line number are listed in one run, syntax
    # errors in their place among the others, and the count covers all 70. Nothing is stored.
    rows = records(200, Traffic(), datetime.now(UTC) - timedelta(hours=1), 9)
    lines = [json.dumps(row) for row in rows]
    bad_lines: set[int] = set()
    for i in range(0, 200, 3)[:70]:
        if i % 2 == 0:
            lines[i] = lines[i][:-5]  # truncated: not JSON
        elif i % 5 == 0:
            lines[i] = "[1, 2]"  # JSON, not an object
        else:
            rows[i]["relevance_score"] = 2.5
            lines[i] = json.dumps(rows[i])
        bad_lines.add(i + 1)
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = world.cli("quality", "import", str(path), "--customer", world.customer_email)
    assert result.exit_code == 1
    listed = {int(line.split()[1].rstrip(":")) for line in result.output.splitlines() if line.startswith("  line ")}
    assert listed == set(sorted(bad_lines)[:50])
    assert "not valid JSON" in result.output
    assert "must be a JSON object" in result.output
    assert "relevance_score" in result.output
    assert f"... and {len(bad_lines) - 50} more bad lines" in result.output
    assert f"{len(bad_lines)} of 200 lines" in result.output
    assert "nothing was imported" in result.output
    assert count(world) == 0


def test_detect_without_a_baseline_says_how_to_make_one_and_exits_1(world: World, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", records(120, Traffic(), datetime.now(UTC) - timedelta(hours=1), 10))
    world.cli("quality", "import", str(path), "-c", world.customer_email)
    result = world.cli("quality", "detect", "-c", world.customer_email, "-m", "gpt-4o", "-v", "v1")
    assert result.exit_code == 1
    assert "has no active baseline" in result.output
    assert f"optiinfra quality baseline -c {world.customer_email} -m gpt-4o -v v1" in result.output


def test_abtest_on_a_version_without_records_is_an_error_naming_it(world: World, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", records(120, Traffic(), datetime.now(UTC) - timedelta(hours=1), 11))
    world.cli("quality", "import", str(path), "-c", world.customer_email)
    result = world.cli(
        "quality", "abtest", "-c", world.customer_email, "-m", "gpt-4o",
        "--control-version", "v1", "--candidate-version", "v9",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "No records for" in result.output
    assert "v9" in result.output
    assert "more samples" not in result.output


def test_baseline_detect_and_regressions_from_the_cli(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 80)  # the console is made once per process: a terminal of 80 columns
    now = datetime.now(UTC)
    healthy = records(300, Traffic(), now - timedelta(hours=5), 4)
    degraded = records(300, replace(Traffic(), overall_factor=0.8, hallucination_rate=0.2), now - timedelta(hours=1), 5)
    world.cli("quality", "import", str(write_jsonl(tmp_path / "a.jsonl", healthy)), "-c", world.customer_email)
    too_small = world.cli("quality", "baseline", "-c", world.customer_email, "-m", "gpt-4o", "-v", "v1", "--last", "20")
    assert too_small.exit_code == 1
    assert "at least 50 records" in too_small.output
    made = world.cli("quality", "baseline", "-c", world.customer_email, "-m", "gpt-4o", "-v", "v1", "--last", "300")
    assert made.exit_code == 0, made.output
    assert "initial" in made.output
    world.cli("quality", "import", str(write_jsonl(tmp_path / "b.jsonl", degraded)), "-c", world.customer_email)
    judged = world.cli("quality", "detect", "-c", world.customer_email, "-m", "gpt-4o", "-v", "v1", "--last", "300")
    assert judged.exit_code == 0, judged.output
    assert "gpt-4o v1: regression" in judged.output
    listed = world.cli("quality", "regressions", "-c", world.customer_email, "--open")
    assert listed.exit_code == 0, listed.output
    assert "Regressions" in listed.output
    with world.engine.connect() as connection:
        some_id = str(
            connection.execute(
                text("SELECT id FROM quality_regressions WHERE resolved_at IS NULL LIMIT 1")
            ).scalar_one()
        )
    assert some_id[:8] in listed.output
    assert some_id not in listed.output
    monkeypatch.setattr(console, "width", 200)
    wide = world.cli("quality", "regressions", "-c", world.customer_email, "--open", "--wide")
    assert some_id in wide.output
    by_prefix = world.cli("quality", "regressions", "-c", str(world.customer_id)[:8], "--open")
    assert by_prefix.exit_code == 0
    assert some_id[:8] in by_prefix.output
    with world.engine.connect() as connection:
        metrics = set(connection.execute(text("SELECT metric_name FROM quality_regressions")).scalars())
    assert {"overall_quality_score", "hallucination_rate"} <= metrics


def test_two_workers_at_once_never_duplicate_regressions(world: World, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    for version, seed in (("v1", 6), ("v2", 7), ("v3", 8)):
        world.cli(
            "quality",
            "import",
            str(
                write_jsonl(
                    tmp_path / f"{version}.jsonl",
                    records(200, Traffic(), now - timedelta(hours=6), seed, version=version),
                )
            ),
            "-c",
            world.customer_email,
        )
        world.cli("quality", "baseline", "-c", world.customer_email, "-m", "gpt-4o", "-v", version, "--last", "200")
        world.cli(
            "quality",
            "import",
            str(
                write_jsonl(
                    tmp_path / f"{version}-bad.jsonl",
                    records(
                        200,
                        replace(Traffic(), overall_factor=0.75),
                        now - timedelta(minutes=50),
                        seed + 10,
                        version=version,
                    ),
                )
            ),
            "-c",
            world.customer_email,
        )
    factory = make_session_factory(world.engine)
    barrier = threading.Barrier(2)
    reports = []

    def work() -> None:
        barrier.wait()
        reports.append(run_monitoring_pass(factory, rollback=rollback_for_quality))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(r.judged for r in reports) + sum(r.skipped_busy for r in reports) == 6
    with world.engine.connect() as connection:
        open_per_key = connection.execute(
            select(QualityRegression.model_version, QualityRegression.metric_name, func.count())
            .where(QualityRegression.resolved_at.is_(None))
            .group_by(QualityRegression.model_version, QualityRegression.metric_name)
        ).all()
    assert {row[0] for row in open_per_key} == {"v1", "v2", "v3"}
    assert all(row[2] == 1 for row in open_per_key)
    # A second pass updates the same rows instead of adding new ones.
    run_monitoring_pass(factory, rollback=rollback_for_quality)
    with world.engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(QualityRegression)).scalar_one()
    assert total == len(open_per_key)


def test_worker_once_prints_a_pass_summary(world: World) -> None:
    result = world.cli("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "pass: 0 judged" in result.output
