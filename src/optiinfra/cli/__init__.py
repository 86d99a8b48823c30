"""The `optiinfra` command line."""

from __future__ import annotations

import typer

from optiinfra.cli.alerts import alerts_app
from optiinfra.cli.db import db_app
from optiinfra.cli.quality import quality_app
from optiinfra.cli.serve import serve
from optiinfra.cli.worker import worker
from optiinfra.cli.workflows import agents_app, workflow_app

app = typer.Typer(
    name="optiinfra",
    help="OptiInfra: the control plane for LLM infrastructure optimization.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.command()(serve)
app.add_typer(quality_app, name="quality")
app.command()(worker)
app.add_typer(workflow_app, name="workflow")
app.add_typer(agents_app, name="agents")
app.add_typer(alerts_app, name="alerts")


def main() -> None:
    """Console-script entry point."""
    app()
