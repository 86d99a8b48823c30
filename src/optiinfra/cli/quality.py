"""`optiinfra quality ...` and `optiinfra worker`: the quality engine from the command line (as the operator)."""

from __future__ import annotations

import csv
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from optiinfra.cli.common import WideOption, add_columns, cli_principal, customer_id, session_factory, short
from optiinfra.cli.context import console, error_console, reports_errors
from optiinfra.errors import InvalidInputError
from optiinfra.validation import MAX_BATCH

if TYPE_CHECKING:
    from optiinfra.quality import schemas as quality_schemas

# The statistics, the database layer and the services are imported by the commands that run them, so that
# `optiinfra quality --help` starts at once.

MAX_REPORTED_LINES = 50


quality_app = typer.Typer(
    help="Ingest quality metrics, establish baselines, detect regressions, run A/B tests.", no_args_is_help=True
)

CustomerOption = Annotated[str, typer.Option("--customer", "-c", help="Customer id or email.")]
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model name.")]
VersionOption = Annotated[str, typer.Option("--version", "-v", help="Model version.")]
LastOption = Annotated[int | None, typer.Option("--last", help="Use the last N records.", min=1)]
SinceOption = Annotated[datetime | None, typer.Option("--since", help="Window start (UTC if no zone given).")]
UntilOption = Annotated[datetime | None, typer.Option("--until", help="Window end (UTC if no zone given).")]


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _window(
    last: int | None, since: datetime | None, until: datetime | None, default_last: int
) -> quality_schemas.BaselineWindow:
    from optiinfra.quality import schemas as quality_schemas

    if last is None and since is None and until is None:
        return quality_schemas.BaselineWindow(last_n=default_last)
    try:
        return quality_schemas.BaselineWindow(last_n=last, start=_aware(since), end=_aware(until))
    except ValueError as error:
        raise InvalidInputError(str(error).splitlines()[-1]) from None


def _change_words(delta_percent: float | None) -> str:
    from optiinfra.quality.schemas import change_words

    return change_words(delta_percent)


# --- import ------------------------------------------------------------------------------------------------------


@dataclass
class FileRecords:
    """What a file holds: its records with their line numbers, and the lines that are not records at all."""

    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    unreadable: dict[int, str] = field(default_factory=dict)  # line number -> why


def _read_records(path: Path, file_format: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, raw record) from a JSON Lines or CSV file, or (line number, why) for a line that is not one:
    a syntax error does not stop the reading, so that one pass reports every bad line."""
    with path.open(encoding="utf-8", newline="") as handle:
        if file_format == "jsonl":
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    yield number, f"not valid JSON ({error.msg} at column {error.colno})"
                    continue
                if not isinstance(value, dict):
                    yield number, "each line must be a JSON object"
                    continue
                yield number, value
        else:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                if None in row:
                    yield number, "more values than the header has columns"
                    continue
                record: dict[str, Any] = {key: value for key, value in row.items() if key and value not in ("", None)}
                if "metadata" in record:
                    try:
                        record["metadata"] = json.loads(record["metadata"])
                    except json.JSONDecodeError as error:
                        yield number, f"metadata is not valid JSON ({error.msg})"
                        continue
                yield number, record


def _read_file(path: Path, file_format: str | None, progress: Progress | None = None) -> FileRecords:
    chosen = (file_format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")).lower()
    if chosen not in {"jsonl", "csv"}:
        raise InvalidInputError(f"Unknown format {chosen!r}.", fix="Use --format jsonl or --format csv.")
    read = FileRecords()
    task = progress.add_task("reading", total=None) if progress is not None else None
    try:
        for number, item in _read_records(path, chosen):
            if isinstance(item, str):
                read.unreadable[number] = item
            else:
                read.records.append(item)
                read.lines.append(number)
            if progress is not None and task is not None:
                progress.advance(task)
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path} is not UTF-8 text.", fix="Save the file as UTF-8 and try again.") from None
    if progress is not None and task is not None:
        progress.update(task, total=len(read.records) + len(read.unreadable))
    if not read.records and not read.unreadable:
        raise InvalidInputError(
            f"{path} holds no records.", fix="Give a JSON Lines or CSV file with one record a line."
        )
    return read


def _refuse(path: Path, read: FileRecords, now: datetime, verb: str) -> None:
    """Validate every record; if any line is bad (syntax and values alike), list up to 50 of them and refuse the
    whole file with an error whose details carry the count."""
    from optiinfra.quality import service

    bad: dict[int, str] = dict(read.unreadable)
    if read.records:
        try:
            service.validate_file_records(read.records, now)
        except InvalidInputError as error:
            if "invalid_count" not in error.details:
                raise
            for item in error.details.get("records", []):
                reasons = "; ".join(f"{p['field']}: {p['message']}" for p in item["problems"])
                bad[read.lines[int(item["index"])]] = reasons
    if not bad:
        return
    for number in sorted(bad)[:MAX_REPORTED_LINES]:
        error_console.print(f"  line {number}: {bad[number]}", highlight=False, soft_wrap=True)
    if len(bad) > MAX_REPORTED_LINES:
        error_console.print(f"  ... and {len(bad) - MAX_REPORTED_LINES} more bad lines", highlight=False)
    total = len(read.records) + len(read.unreadable)
    raise InvalidInputError(
        f"{len(bad)} of {total} lines in {path} are invalid; nothing was {verb}.",
        fix="Correct the lines listed above and run the command again.",
        details={"invalid_count": len(bad)},
    )


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
    """Import quality metrics. The whole file is checked first; any bad line refuses it all (up to 50 are listed)."""
    from optiinfra.db.engine import unit_of_work
    from optiinfra.metrics import counters
    from optiinfra.quality import service

    with _progress() as progress:
        read = _read_file(file, file_format, progress)
    factory = session_factory()
    started = time.perf_counter()
    try:
        _refuse(file, read, datetime.now().astimezone(), "imported")
    except InvalidInputError as error:
        with unit_of_work(factory) as session:
            refused = int(error.details.get("invalid_count") or 0)
            counters.add(session, "optiinfra_quality_records_rejected", {"source": "import"}, refused)
        raise
    records = read.records
    inserted = 0
    with unit_of_work(factory) as session, _progress() as progress:
        owner = customer_id(session, customer)
        task = progress.add_task("storing", total=len(records))
        for offset in range(0, len(records), MAX_BATCH):
            batch = records[offset : offset + MAX_BATCH]
            result = service.ingest(session, cli_principal(), batch, customer_id=owner, agent_id=agent, source="import")
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
    from optiinfra.db.engine import unit_of_work
    from optiinfra.quality import schemas as quality_schemas
    from optiinfra.quality import service

    factory = session_factory()
    with unit_of_work(factory) as session:
        request = quality_schemas.BaselineCreate(
            customer_id=customer_id(session, customer),
            model_name=model,
            model_version=version,
            window=_window(last, since, until, 1000),
        )
        result = service.establish_baseline(session, cli_principal(), request)
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
            _change_words(finding.delta_percent),
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
    wide: WideOption = False,
) -> None:
    """Judge a window (default: the last 500 records) against the active baseline, record and act.

    Exits 1 when there is nothing to judge against (no baseline) or too little to judge (insufficient_data)."""
    from optiinfra.db.engine import unit_of_work
    from optiinfra.quality import detection
    from optiinfra.quality import schemas as quality_schemas
    from optiinfra.recommendations.service import rollback_for_quality

    factory = session_factory()
    with unit_of_work(factory) as session:
        request = quality_schemas.DetectRequest(
            customer_id=customer_id(session, customer),
            model_name=model,
            model_version=version,
            window=_window(last, since, until, 500),
            dry_run=dry_run,
        )
        report = detection.detect(session, cli_principal(), request, rollback_for_quality)
    if report.baseline_id is None:
        error_console.print(
            f"[bold red]Error:[/bold red] {model} {version} has no active baseline, so there is nothing to judge "
            "against.",
            highlight=False,
            soft_wrap=True,
        )
        error_console.print(
            f"[bold]Fix:[/bold] establish one from a healthy period: optiinfra quality baseline -c {customer} "
            f"-m {model} -v {version} (or let the worker establish it once the version has enough traffic)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    console.print(_findings_table(report))
    if report.rolled_back_optimization_id:
        console.print(
            f"[bold red]Rolled back optimization {short(report.rolled_back_optimization_id, wide)}[/bold red]"
        )
    for regression in report.regressions:
        console.print(
            f"Regression {short(regression.id, wide)}: {regression.metric_name} {regression.severity}, "
            f"action {regression.action_taken}"
        )
    if report.verdict == "insufficient_data":
        error_console.print(
            f"[bold yellow]Not judged:[/bold yellow] the window holds {report.window.get('sample_size', 0)} records, "
            "fewer than the minimum (quality settings: min_samples). Not enough evidence is never a pass.",
            highlight=False,
            soft_wrap=True,
        )
        error_console.print(
            "[bold]Fix:[/bold] wait for more traffic, or widen the window with --last N or --since", highlight=False
        )
        sys.exit(1)


@quality_app.command()
@reports_errors
def regressions(
    customer: CustomerOption,
    open_only: Annotated[bool, typer.Option("--open", help="Only unresolved regressions.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    wide: WideOption = False,
) -> None:
    """List a customer's regressions, newest first."""
    from optiinfra.db.engine import unit_of_work
    from optiinfra.quality import service
    from optiinfra.quality.schemas import RegressionFilters

    factory = session_factory()
    with unit_of_work(factory) as session:
        filters = RegressionFilters(
            customer_id=customer_id(session, customer), open=True if open_only else None, limit=limit
        )
        page = service.list_regressions(session, cli_principal(), filters)
    if not page.items:
        console.print(
            "No open regressions." if open_only else "No regressions: nothing has been flagged for this customer."
        )
        return
    table = Table(title="Regressions")
    add_columns(table, ("id", "detected", "model", "metric", "severity", "change", "action", "resolved"), wide)
    for r in page.items:
        table.add_row(
            short(r.id, wide),
            r.detected_at.strftime("%m-%d %H:%M"),
            f"{r.model_name} {r.model_version}",
            r.metric_name,
            str(r.severity),
            _change_words(r.delta_percent),
            str(r.action_taken),
            r.resolved_at.strftime("%m-%d %H:%M") if r.resolved_at else "open",
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
    """Compare two versions of a model: promote, reject or inconclusive.

    Exits 1 when an arm has no records at all (a wrong model or version name, or a period with no traffic)."""
    from optiinfra.db.engine import unit_of_work
    from optiinfra.quality import abtest
    from optiinfra.quality import schemas as quality_schemas

    factory = session_factory()
    with unit_of_work(factory) as session:
        request = quality_schemas.ABTestRequest(
            customer_id=customer_id(session, customer),
            model_name=model,
            control=quality_schemas.Arm(model_version=control_version),
            candidate=quality_schemas.Arm(model_version=candidate_version),
            start=_aware(since),
            end=_aware(until),
        )
        result = abtest.run_ab_test(session, cli_principal(), request)
    empty = [arm.label for arm in (result.control, result.candidate) if arm.count == 0]
    if empty:
        period = " in that period" if since or until else ""
        raise InvalidInputError(
            f"No records for {' or '.join(empty)} of {model}{period}: there is nothing to compare.",
            fix="Check the model and version names (optiinfra quality regressions, or the dashboard's quality page "
            "lists them) and the --since/--until period.",
        )
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
    from optiinfra.config import load_settings
    from optiinfra.db.engine import resolve_database_url
    from optiinfra.quality.backtest import run_backtest
    from optiinfra.quality.settings import QualitySettings
    from optiinfra.recommendations.service import rollback_for_quality

    settings = QualitySettings()
    if settings_file is not None:
        try:
            settings = QualitySettings.model_validate_json(settings_file.read_bytes())
        except ValueError as error:
            raise InvalidInputError(
                f"{settings_file} is not valid quality settings: {str(error).splitlines()[-1]}",
                fix="Write the settings as GET /api/v1/quality/settings returns them (unknown keys are refused).",
            ) from None
    read = _read_file(file, file_format)
    _refuse(file, read, datetime.now(UTC) + timedelta(days=36_500), "replayed")
    records = read.records
    server = resolve_database_url(load_settings())
    if as_json:
        result = run_backtest(records, settings, server, rollback=rollback_for_quality)
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

        result = run_backtest(records, settings, server, rollback=rollback_for_quality, progress=report)
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


# --- deletion ------------------------------------------------------------------------------------------------------


@quality_app.command("delete-records")
@reports_errors
def delete_records(
    customer: CustomerOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every per-request quality record of one customer stored until now (with their texts). Baselines,
    regressions and other customers' records stay."""
    from optiinfra.db.engine import unit_of_work
    from optiinfra.quality import partitions

    factory = session_factory()
    stored_until = datetime.now(UTC)
    with unit_of_work(factory) as session:
        owner = customer_id(session, customer)
        total = partitions.count_customer_records(session, owner, stored_until)
    if total == 0:
        console.print("The customer has no quality records; nothing to delete.")
        return
    if not yes and not typer.confirm(f"This deletes {total:,} quality records of customer {owner}. Continue?"):
        error_console.print("Nothing was deleted.")
        raise typer.Exit(1)
    with _progress() as progress:
        task = progress.add_task("deleting", total=total)
        deleted, _ = partitions.delete_customer_records(
            factory, owner, stored_until, progress=lambda count: progress.advance(task, count)
        )
    console.print(f"Deleted {deleted:,} quality records of customer {owner}.")
