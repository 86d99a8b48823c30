"""`optiinfra db ...`: migrate, inspect, seed and reset the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from optiinfra.cli.context import console, error_console, open_engine, reports_errors
from optiinfra.errors import OptiInfraError

# The database modules (SQLAlchemy, Alembic, the models) are imported inside the commands, so that
# `optiinfra db --help` starts at once.

db_app = typer.Typer(help="Create, migrate, check, seed and reset the OptiInfra database.", no_args_is_help=True)


def _check_revision(revision: str, allowed_aliases: set[str]) -> None:
    from optiinfra.db import migrations

    if revision in allowed_aliases or revision in migrations.known_revisions():
        return
    raise OptiInfraError(
        f"Unknown revision {revision!r}.",
        fix="Use one of: " + ", ".join([*sorted(allowed_aliases), *migrations.known_revisions()]),
    )


@db_app.command()
@reports_errors
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision id, or 'head'.")] = "head",
) -> None:
    """Upgrade the schema to REVISION (default: the newest)."""
    from optiinfra.db import migrations

    _check_revision(revision, {"head"})
    engine = open_engine()
    before = migrations.current_revision(engine)
    migrations.upgrade(engine, revision)
    after = migrations.current_revision(engine)
    if before == after:
        console.print(f"Schema already at [bold]{after}[/bold]; nothing to do.")
    else:
        console.print(f"Schema upgraded from [bold]{before or 'empty'}[/bold] to [bold green]{after}[/bold green].")


@db_app.command()
@reports_errors
def downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision id, or 'base' to remove every table.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Downgrade the schema to REVISION ('base' removes every OptiInfra table and type). Data in what it removes is
    lost: it asks first (--yes skips the question)."""
    from optiinfra.db import migrations

    _check_revision(revision, {"base"})
    engine = open_engine()
    before = migrations.current_revision(engine)
    if before is None:
        console.print("The database has no OptiInfra schema: nothing to downgrade.")
        return
    what = "every OptiInfra table and its data" if revision == "base" else f"the schema changes after {revision}"
    if not yes and not typer.confirm(f"This removes {what} (now at {before}). Continue?", default=False):
        console.print("Nothing changed.")
        raise typer.Exit(1)
    migrations.downgrade(engine, revision)
    after = migrations.current_revision(engine)
    console.print(f"Schema downgraded from [bold]{before or 'empty'}[/bold] to [bold]{after or 'base'}[/bold].")


@db_app.command()
@reports_errors
def current() -> None:
    """Show the database's schema revision and whether it is the newest."""
    from optiinfra.db import migrations

    engine = open_engine()
    revision = migrations.current_revision(engine)
    head = migrations.head_revision()
    if revision == head:
        console.print(f"[bold green]{revision}[/bold green] (head)")
    elif revision is None:
        console.print("No OptiInfra schema yet. Run: [bold]optiinfra db upgrade[/bold]")
    else:
        console.print(
            f"[bold yellow]{revision}[/bold yellow], behind head {head}. Run: [bold]optiinfra db upgrade[/bold]"
        )


@db_app.command()
@reports_errors
def check() -> None:
    """Compare the models with the migrated database; exit 1 and list the differences if they disagree."""
    from optiinfra.db import migrations

    engine = open_engine()
    differences = migrations.schema_differences(engine)
    if not differences:
        console.print("[bold green]No differences:[/bold green] the database matches the models.")
        return
    table = Table(title=f"{len(differences)} difference(s) between the models and the database")
    table.add_column("change needed")
    table.add_column("object", overflow="fold")
    for difference in differences:
        table.add_row(difference.operation, difference.subject)
    console.print(table)
    revision = migrations.current_revision(engine)
    if revision != migrations.head_revision():
        error_console.print(f"The schema is at {revision or 'no revision'}. Fix: optiinfra db upgrade")
    else:
        error_console.print("The models changed without a migration. Fix: add an Alembic revision for them.")
    raise typer.Exit(1)


@db_app.command()
@reports_errors
def seed() -> None:
    """Load the demo data into every table. Running it again changes nothing."""
    from optiinfra.db import migrations
    from optiinfra.demo.seed import seed_demo_data

    engine = open_engine()
    migrations.require_current_schema(engine)
    report = seed_demo_data(engine)
    table = Table(title="Demo data")
    table.add_column("table")
    table.add_column("rows added", justify="right")
    table.add_column("rows now", justify="right")
    for name, (added, total) in report.items():
        table.add_row(name, str(added), str(total))
    console.print(table)
    added_total = sum(added for added, _ in report.values())
    if added_total == 0:
        console.print("The demo data was already there; nothing changed.")


@db_app.command("backup")
@reports_errors
def backup_command(
    file: Annotated[Path, typer.Argument(help="Where to write the backup (pg_dump custom format).")],
) -> None:
    """Back up the whole database to FILE with pg_dump (custom format, restorable with `optiinfra db restore`)."""
    from optiinfra.db import backup

    engine = open_engine()
    size = backup.backup(engine, file)
    console.print(f"Backup written to [bold]{file}[/bold] ({size:,} bytes).")


@db_app.command("restore")
@reports_errors
def restore_command(
    file: Annotated[Path, typer.Argument(help="A backup written by `optiinfra db backup`.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace the database's OptiInfra data with a backup's, in one transaction (all or nothing)."""
    from optiinfra.db import backup, migrations

    engine = open_engine()
    where = engine.url.render_as_string(hide_password=True)
    if not yes and not typer.confirm(f"This replaces all OptiInfra data in {where} with {file}. Continue?"):
        error_console.print("Nothing was changed.")
        raise typer.Exit(1)
    backup.restore(engine, file)
    revision = migrations.current_revision(engine)
    console.print(f"Restored {file}; schema at [bold]{revision}[/bold].")
    if revision != migrations.head_revision():
        error_console.print("The backup is from an older schema. Fix: optiinfra db upgrade")


@db_app.command()
@reports_errors
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every OptiInfra table and its data, then recreate the empty schema at head."""
    from optiinfra.db import migrations

    engine = open_engine()
    where = engine.url.render_as_string(hide_password=True)
    if not yes and not typer.confirm(f"This deletes all OptiInfra data in {where}. Continue?", default=False):
        error_console.print("Nothing was changed.")
        raise typer.Exit(1)
    migrations.downgrade(engine, "base")
    migrations.upgrade(engine, "head")
    console.print(f"Database reset: empty schema at [bold green]{migrations.head_revision()}[/bold green].")
