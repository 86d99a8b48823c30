"""`optiinfra quality ...` and `optiinfra worker`: the quality engine from the command line (as the operator)."""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.cli.context import console, error_console, open_engine, reports_errors
from optiinfra.config import load_settings
from optiinfra.db import migrations
from optiinfra.db.engine import make_session_factory, resolve_database_url, unit_of_work
from optiinfra.errors import InvalidInputError, NotFoundError
from optiinfra.metrics import counters
from optiinfra.models import Customer
from optiinfra.quality import abtest, detection, service
from optiinfra.quality import schemas as quality_schemas
from optiinfra.quality.backtest import run_backtest
from optiinfra.quality.schemas import MAX_BATCH
from optiinfra.quality.settings import QualitySettings

quality_app = typer.Typer(help="Ingest quality metrics, establish baselines, detect regressions, run A/B tests.")
CLI = Principal.system("cli")

CustomerOption = Annotated[str, typer.Option("--customer", "-c", help="Customer id or email.")]
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model name.")]
VersionOption = Annotated[str, typer.Option("--version", "-v", help="Model version.")]
LastOption = Annotated[int | None, typer.Option("--last", help="Use the last N records.", min=1)]
SinceOption = Annotated[datetime | None, typer.Option("--since", help="Window start (UTC if no zone given).")]
UntilOption = Annotated[datetime | None, typer.Option("--until", help="Window end (UTC if no zone given).")]


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _customer_id(session: Session, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        found = session.scalar(select(Customer.id).where(Customer.email == value.lower()))
        if found is None:
            raise NotFoundError(f"No customer with id or email {value!r}.") from None
        return found


def _window(
    last: int | None, since: datetime | None, until: datetime | None, default_last: int
) -> quality_schemas.BaselineWindow:
    if last is None and since is None and until is None:
        return quality_schemas.BaselineWindow(last_n=default_last)
    try:
        return quality_schemas.BaselineWindow(last_n=last, start=_aware(since), end=_aware(until))
    except ValueError as error:
        raise InvalidInputError(str(error).splitlines()[-1]) from None


def _session_factory() -> sessionmaker[Session]:
    engine = open_engine()
    migrations.require_current_schema(engine)
    return make_session_factory(engine)


# --- import ------------------------------------------------------------------------------------------------------


def _read_records(path: Path, file_format: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, raw record) from a JSON Lines or CSV file."""
    with path.open(encoding="utf-8", newline="") as handle:
        if file_format == "jsonl":
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    raise InvalidInputError(f"{path}:{number}: not valid JSON ({error.msg}).") from None
                if not isinstance(value, dict):
                    raise InvalidInputError(f"{path}:{number}: each line must be a JSON object.")
                yield number, value
        else:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                record: dict[str, Any] = {key: value for key, value in row.items() if key and value not in ("", None)}
                if "metadata" in record:
                    try:
                        record["metadata"] = json.loads(record["metadata"])
                    except json.JSONDecodeError:
                        raise InvalidInputError(f"{path}:{number}: metadata is not valid JSON.") from None
                yield number, record


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )


@quality_app.command("import")
@reports_errors
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSON Lines or CSV file.")],
    customer: CustomerOption,
    agent: Annotated[uuid.UUID | None, typer.Option(help="Agent to attribute the records to.")] = None,
    file_format: Annotated[
        str | None, typer.Option("--format", help="jsonl or csv (default: from the suffix).")
    ] = None,
) -> None:
    """Import quality metrics. The whole file is validated first; any invalid record refuses it all."""
    chosen = (file_format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")).lower()
    if chosen not in {"jsonl", "csv"}:
        raise InvalidInputError(f"Unknown format {chosen!r}: use jsonl or csv.")
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    with _progress() as progress:
        task = progress.add_task("reading", total=None)
        for number, record in _read_records(file, chosen):
            records.append(record)
            lines.append(number)
            progress.advance(task)
        progress.update(task, total=len(records))
    if not records:
        raise InvalidInputError(f"{file} holds no records.")
    factory = _session_factory()
    started = time.perf_counter()
    try:
        service.validate_file_records(records, datetime.now().astimezone())
    except InvalidInputError as error:
        with unit_of_work(factory) as session:
            refused = int(error.details.get("invalid_count") or 0)
            counters.add(session, "optiinfra_quality_records_rejected", {"source": "import"}, refused)
        for bad in error.details.get("records", [])[:20]:
            reasons = "; ".join(f"{p['field']}: {p['message']}" for p in bad["problems"])
            error_console.print(f"  line {lines[bad['index']]}: {reasons}", highlight=False)
        raise InvalidInputError(
            f"{error.details.get('invalid_count')} of {len(records)} records in {file} are invalid; nothing was "
            "imported.",
            fix="Correct the lines listed above and import the file again.",
        ) from None
    inserted = 0
    with unit_of_work(factory) as session, _progress() as progress:
        customer_id = _customer_id(session, customer)
        task = progress.add_task("storing", total=len(records))
        for offset in range(0, len(records), MAX_BATCH):
            batch = records[offset : offset + MAX_BATCH]
            result = service.ingest(session, CLI, batch, customer_id=customer_id, agent_id=agent, source="import")
            inserted += result.inserted
            progress.advance(task, len(batch))
    elapsed = time.perf_counter() - started
    console.print(
        f"Imported {inserted} records ({len(records) - inserted} already stored) in {elapsed:.1f} s "
        f"({len(records) / max(elapsed, 1e-9):,.0f} records/s)."
    )


# --- baselines, detection, regressions, A/B --------------------------------------------------------------------


@quality_app.command()
@reports_errors
def baseline(
    customer: CustomerOption,
    model: ModelOption,
    version: VersionOption,
    last: LastOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Establish a baseline for a model version (default window: the last 1,000 records)."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        request = quality_schemas.BaselineCreate(
            customer_id=_customer_id(session, customer),
            model_name=model,
            model_version=version,
            window=_window(last, since, until, 1000),
        )
        result = service.establish_baseline(session, CLI, request)
    table = Table(title=f"Baseline {result.model_name} {result.model_version} ({result.baseline_type})")
    table.add_column("metric", overflow="fold")
    table.add_column("value", justify="right")
    for name, value in (
        ("sample size", result.sample_size),
        ("overall score", f"{result.avg_overall_score:.4f}"),
        ("relevance", result.avg_relevance_score),
        ("coherence", result.avg_coherence_score),
        ("factuality", result.avg_factuality_score),
        ("p95 latency ms", result.p95_latency_ms),
        ("hallucination rate", result.metadata["hallucination"]["rate"]),
    ):
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def _findings_table(report: quality_schemas.DetectionReport) -> Table:
    table = Table(title=f"{report.model_name} {report.model_version}: {report.verdict}")
    for column in ("metric", "verdict", "baseline", "current", "change", "p (Holm)", "severity"):
        table.add_column(column, overflow="fold")
    for finding in report.findings:
        table.add_row(
            finding.metric_name,
            finding.verdict,
            f"{finding.baseline_value:.4g}" if finding.baseline_value is not None else "",
            f"{finding.current_value:.4g}" if finding.current_value is not None else "",
            quality_schemas.change_words(finding.delta_percent),
            f"{finding.p_value_adjusted:.2g}" if finding.p_value_adjusted is not None else (finding.note or ""),
            str(finding.severity or ""),
        )
    return table


@quality_app.command()
@reports_errors
def detect(
    customer: CustomerOption,
    model: ModelOption,
    version: VersionOption,
    last: LastOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Judge only; record and do nothing.")] = False,
) -> None:
    """Judge a window (default: the last 500 records) against the active baseline, record and act."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        request = quality_schemas.DetectRequest(
            customer_id=_customer_id(session, customer),
            model_name=model,
            model_version=version,
            window=_window(last, since, until, 500),
            dry_run=dry_run,
        )
        report = detection.detect(session, CLI, request)
    console.print(_findings_table(report))
    if report.rolled_back_optimization_id:
        console.print(f"[bold red]Rolled back optimization {report.rolled_back_optimization_id}[/bold red]")
    for regression in report.regressions:
        console.print(
            f"Regression {regression.id}: {regression.metric_name} {regression.severity}, "
            f"action {regression.action_taken}"
        )


@quality_app.command()
@reports_errors
def regressions(
    customer: CustomerOption,
    open_only: Annotated[bool, typer.Option("--open", help="Only unresolved regressions.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List a customer's regressions, newest first."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        page = service.list_regressions(
            session,
            CLI,
            customer_id=_customer_id(session, customer),
            model_name=None,
            is_open=True if open_only else None,
            cursor=None,
            limit=limit,
        )
    table = Table(title="Regressions")
    for column in ("detected", "model", "metric", "severity", "baseline", "current", "change", "action", "resolved"):
        table.add_column(column, overflow="fold")
    for r in page.items:
        table.add_row(
            r.detected_at.strftime("%Y-%m-%d %H:%M"),
            f"{r.model_name} {r.model_version}",
            r.metric_name,
            str(r.severity),
            f"{r.baseline_value:.4g}",
            f"{r.current_value:.4g}",
            quality_schemas.change_words(r.delta_percent),
            str(r.action_taken),
            r.resolved_at.strftime("%Y-%m-%d %H:%M") if r.resolved_at else "open",
        )
    console.print(table)


@quality_app.command("abtest")
@reports_errors
def ab_test(
    customer: CustomerOption,
    model: ModelOption,
    control_version: Annotated[str, typer.Option(help="Control arm: model version.")],
    candidate_version: Annotated[str, typer.Option(help="Candidate arm: model version.")],
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Compare two versions of a model: promote, reject or inconclusive."""
    factory = _session_factory()
    with unit_of_work(factory) as session:
        request = quality_schemas.ABTestRequest(
            customer_id=_customer_id(session, customer),
            model_name=model,
            control=quality_schemas.Arm(model_version=control_version),
            candidate=quality_schemas.Arm(model_version=candidate_version),
            start=_aware(since),
            end=_aware(until),
        )
        result = abtest.run_ab_test(session, CLI, request)
    table = Table(title=f"A/B {model}: {result.verdict}")
    for column in ("arm", "n", "overall mean", "95 % CI", "p95 ms", "hallucination"):
        table.add_column(column, overflow="fold")
    for arm in (result.control, result.candidate):
        low, high = arm.overall.get("ci95_low"), arm.overall.get("ci95_high")
        table.add_row(
            arm.label,
            str(arm.count),
            f"{arm.overall.get('mean') or 0:.4f}",
            f"[{low:.4f}, {high:.4f}]" if low is not None and high is not None else "",
            f"{arm.p95_latency_ms or 0:.0f}",
            f"{arm.hallucination_rate or 0:.3f}",
        )
    console.print(table)
    console.print(result.reason)
    if result.extra_samples_needed:
        console.print(f"Extra samples needed per arm: {result.extra_samples_needed}")


# --- backtest ----------------------------------------------------------------------------------------------------


@quality_app.command()
@reports_errors
def backtest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSON Lines or CSV file.")],
    settings_file: Annotated[
        Path | None,
        typer.Option("--settings", exists=True, dir_okay=False, readable=True, help="Quality settings (JSON)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on standard output.")] = False,
    file_format: Annotated[
        str | None, typer.Option("--format", help="jsonl or csv (default: from the suffix).")
    ] = None,
) -> None:
    """Replay recorded traffic through exactly the worker's monitoring, in a scratch database, and report every
    regression it would open and resolve, with the action it would take (docs/quality.md, "Backtest")."""
    chosen = (file_format or ("csv" if file.suffix.lower() == ".csv" else "jsonl")).lower()
    if chosen not in {"jsonl", "csv"}:
        raise InvalidInputError(f"Unknown format {chosen!r}: use jsonl or csv.")
    settings = QualitySettings()
    if settings_file is not None:
        try:
            settings = QualitySettings.model_validate_json(settings_file.read_bytes())
        except ValueError as error:
            raise InvalidInputError(
                f"{settings_file} is not valid quality settings: {str(error).splitlines()[-1]}",
                fix="Write the settings as GET /api/v1/quality/settings returns them (unknown keys are refused).",
            ) from None
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, record in _read_records(file, chosen):
        records.append(record)
        lines.append(number)
    if not records:
        raise InvalidInputError(f"{file} holds no records.")
    try:
        service.validate_file_records(records, datetime.now(UTC) + timedelta(days=36_500))
    except InvalidInputError as error:
        for bad in error.details.get("records", [])[:20]:
            reasons = "; ".join(f"{p['field']}: {p['message']}" for p in bad["problems"])
            error_console.print(f"  line {lines[bad['index']]}: {reasons}", highlight=False)
        raise InvalidInputError(
            f"{error.details.get('invalid_count')} of {len(records)} records in {file} are invalid; nothing was "
            "replayed.",
            fix="Correct the lines listed above and run the backtest again.",
        ) from None
    server = resolve_database_url(load_settings())
    if as_json:
        result = run_backtest(records, settings, server)
        typer.echo(json.dumps(result.to_json()))
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=error_console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = run_backtest(records, settings, server, progress=report)
    table = Table(title=f"Backtest: {result.records:,} records over {result.days:.2f} days, {result.passes:,} passes")
    for column in ("detected", "resolved", "model", "type", "metric", "severity", "action"):
        table.add_column(column, overflow="fold")
    for r in result.regressions:
        table.add_row(
            r["detected_at"][:16].replace("T", " "),
            r["resolved_at"][:16].replace("T", " ") if r["resolved_at"] else "open",
            f"{r['model_name']} {r['model_version']}",
            r["regression_type"],
            r["metric_name"],
            r["severity"],
            r["action"],
        )
    console.print(table)
    summary = Table(title="Per model version and day")
    for column in ("model", "day", "records", "regressions", "by severity"):
        summary.add_column(column, overflow="fold")
    for row in result.summary:
        summary.add_row(
            f"{row['model_name']} {row['model_version']}",
            row["day"],
            f"{row['records']:,}",
            str(row["regressions"]),
            ", ".join(f"{k} {v}" for k, v in sorted(row["by_severity"].items())) or "-",
        )
    console.print(summary)
