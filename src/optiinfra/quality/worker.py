"""Periodic detection: every model version with fresh data and an active baseline, judged on its recent window.

Several workers may run at once: detection of one (customer, model, version) holds a transaction-scoped advisory
lock, and a worker that finds it held skips that key, so no key is processed twice at the same time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from optiinfra.auth.principal import Principal
from optiinfra.db.engine import unit_of_work
from optiinfra.errors import ConflictError
from optiinfra.quality import detection, repository
from optiinfra.quality.schemas import BaselineWindow, DetectRequest

logger = logging.getLogger("optiinfra.worker")


@dataclass
class PassReport:
    judged: int = 0
    skipped_busy: int = 0
    regressions: int = 0
    resolved: int = 0
    rollbacks: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


def run_detection_pass(factory: sessionmaker[Session], window: timedelta, now: datetime | None = None) -> PassReport:
    """Judge every fresh model version once, each in its own transaction."""
    moment = now or datetime.now(UTC)
    since = moment - window
    with unit_of_work(factory) as session:
        keys = repository.fresh_model_versions(session, since)
    report = PassReport()
    for customer_id, model_name, model_version in keys:
        request = DetectRequest(
            customer_id=customer_id,
            model_name=model_name,
            model_version=model_version,
            window=BaselineWindow(start=since, end=moment + timedelta(minutes=5)),
        )
        try:
            with unit_of_work(factory) as session:
                result = detection.detect(session, Principal.system("worker"), request)
        except ConflictError:
            report.skipped_busy += 1
            continue
        report.judged += 1
        report.verdicts[result.verdict] = report.verdicts.get(result.verdict, 0) + 1
        report.regressions += len(result.regressions)
        report.resolved += len(result.resolved)
        report.rollbacks += result.rolled_back_optimization_id is not None
        logger.info("%s %s %s: %s", customer_id, model_name, model_version, result.verdict)
    return report
