"""The `optiinfra` command line.

Commands are loaded when they run, not when the program starts: their modules import the database layer, the
server and the statistics (SQLAlchemy, FastAPI, SciPy), which takes seconds. `optiinfra --help` lists the commands
from the table below without importing any of them; `optiinfra quality ...` imports only the quality commands.
A test checks that each entry's help is the first line of its command's own help.

To add a command (or a group of them): write it in its own module under optiinfra.cli and add an entry to COMMANDS
(`app.add_typer` and `app.command` are not used here).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command


@dataclass(frozen=True)
class LazyCommand:
    target: str  # "module:attribute": a Typer app (a group of commands) or a command function
    help: str

    def load(self, name: str) -> Any:
        module_name, attribute = self.target.split(":")
        obj = getattr(importlib.import_module(module_name), attribute)
        if isinstance(obj, typer.Typer):
            command = get_command(obj)
        else:
            single = typer.Typer()
            single.command(name=name)(obj)
            command = get_command(single)
        command.name = name
        return command


COMMANDS: dict[str, LazyCommand] = {
    "db": LazyCommand("optiinfra.cli.db:db_app", "Create, migrate, check, seed and reset the OptiInfra database."),
    "serve": LazyCommand(
        "optiinfra.cli.serve:serve", "Run the OptiInfra server: the API under /api/v1, /healthz, /readyz and /metrics."
    ),
    "quality": LazyCommand(
        "optiinfra.cli.quality:quality_app",
        "Ingest quality metrics, establish baselines, detect regressions, run A/B tests.",
    ),
    "worker": LazyCommand(
        "optiinfra.cli.worker:worker",
        "Run workflow runs from the queue (any number of workers, on any machines) and continuous quality monitoring",
    ),
    "workflow": LazyCommand(
        "optiinfra.cli.workflows:workflow_app", "Run and inspect workflows (spot migration, scaling decision)."
    ),
    "agents": LazyCommand(
        "optiinfra.cli.workflows:agents_app", "Inspect agents and assign them to the customers they serve."
    ),
    "alerts": LazyCommand(
        "optiinfra.cli.alerts:alerts_app", "Alert routes (webhook, Slack, Teams, e-mail) and the alerts sent."
    ),
    "sources": LazyCommand(
        "optiinfra.cli.collectors:sources_app", "Prometheus sources the collector reads, per customer."
    ),
    "collect": LazyCommand(
        "optiinfra.cli.collectors:collect",
        "Collect from the Prometheus sources once, now (the worker does it on a schedule), then look for performance",
    ),
    "scorers": LazyCommand("optiinfra.cli.scorers:scorers_app", "The offline scorers: calibration on labeled data."),
}


class LazyGroup(TyperGroup):
    """A command group that imports a command's module only to run it (or to show that command's own help)."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        if self._listing:
            # Listing the commands in the group's help needs only their names and help lines.
            return TyperCommand(name=cmd_name, help=spec.help, short_help=spec.help)
        return spec.load(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="optiinfra",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """OptiInfra: the control plane for LLM infrastructure optimization."""


def main() -> None:
    """Console-script entry point."""
    app()
