"""`optiinfra scorers`: the offline scorers' calibration on labeled data (docs/scorers.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from optiinfra.cli.context import console, reports_errors

scorers_app = typer.Typer(no_args_is_help=True)


@scorers_app.callback()
def _group() -> None:
    """The offline scorers: calibration on labeled data."""


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@scorers_app.command("evaluate")
@reports_errors
def evaluate(
    file: Annotated[Path, typer.Argument(help="JSON Lines: prompt, answer, context, label (1 = bad answer).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Score a labeled file with every scorer: AUC, and TPR/FPR at each scorer's threshold, with answer length
    alone as the baseline to beat."""
    from optiinfra.scoring.evaluation import evaluate as run_evaluation
    from optiinfra.scoring.evaluation import read_labeled
    from optiinfra.scoring.suite import default_scorers

    items = read_labeled(file)
    scorers = default_scorers()
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task("scoring", total=len(items))
        evaluation = run_evaluation(scorers, items, progress=lambda done: progress.advance(task, done))
    if as_json:
        typer.echo(evaluation.model_dump_json(indent=2))
        return
    table = Table(title=f"{file.name}: {evaluation.items} answers, {evaluation.bad} labeled bad")
    for column in ("scorer", "version", "scored", "AUC", "flags at", "TPR", "FPR"):
        table.add_column(column)
    for result in [*evaluation.results, evaluation.length_baseline]:
        at = "-" if result.threshold is None else f"{'>=' if result.flags == 'high' else '<='} {result.threshold:g}"
        table.add_row(
            result.scorer,
            result.version,
            f"{result.scored}" + (f" ({result.silent} silent)" if result.silent else ""),
            _figure(result.auc),
            at,
            _figure(result.tpr),
            _figure(result.fpr),
        )
    console.print(table)
    console.print("AUC: chance is 0.5; compare each scorer with answer length alone (last row).")
