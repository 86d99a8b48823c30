"""The application agent at work: records that arrived with text and without scores are scored by workers.

1. The ingest (`quality.service.ingest`) stores such a record marked `metadata.scores_pending` (read as having no
   score by the judge, baselines and charts), queues its text in `scoring_texts` and defers a scoring job, all in
   the caller's transaction.
2. A worker's scoring job (`score_pending`) claims a batch of texts in a short transaction, scores it outside any
   transaction (CPU only; and the LLM judge's calls, for customers that use it: `optiinfra.scoring.judge`), then
   writes the scores back and deletes (or keeps, by setting) the text in one more.
   Writing is idempotent: only records still marked pending are written, so a batch scored twice (a worker that
   died after scoring, then its claim expired) changes nothing the second time.
3. Every worker's recovery round defers a job if texts wait and no job is queued, and deletes expired text.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from optiinfra.db.engine import unit_of_work
from optiinfra.models import Customer
from optiinfra.quality.scoring import overall_quality_score
from optiinfra.quality.settings import QualitySettings, settings_of
from optiinfra.scoring import judge, repository
from optiinfra.scoring.base import ScoreInput, Scorer, ScorerUnavailableError
from optiinfra.scoring.settings import JudgeSettings
from optiinfra.scoring.suite import SCORER_SET_KEY, SCORERS_KEY, RecordScores, default_scorers, score_batch

logger = logging.getLogger("optiinfra.scoring")

BATCH_SIZE = 64
JUDGE_USAGE_KEY = "scoring_judge_usage"  # customers.metadata: the judge's calls and tokens of the current UTC day
TIME_BUDGET_SECONDS = 60.0  # a job scores this long, then hands over (workflow jobs share the worker's slots)

_scorers: list[Scorer] | None = None


def shared_scorers() -> list[Scorer]:
    """The process's scorers (their models load on first use)."""
    global _scorers
    if _scorers is None:
        _scorers = default_scorers()
    return _scorers


@dataclass
class ScoringReport:
    scored: int = 0
    written: int = 0
    failed: int = 0
    batches: int = 0
    more_waiting: bool = False
    errors: list[str] = field(default_factory=list)


def queue_for_scoring(
    session: Session,
    customer_id: uuid.UUID,
    settings: QualitySettings,
    texts: Sequence[tuple[str, str, str, str | None]],
) -> int:
    """Queue the texts of just-stored records (request id, prompt, response, context) and defer a scoring job."""
    from optiinfra.workflows import queue  # the queue module pulls in procrastinate: imported when needed

    if not texts:
        return 0
    expires_at = datetime.now(UTC) + repository.retention(settings.scoring.text_retention_days)
    queued = repository.queue_texts(session, customer_id, texts, expires_at)
    if queued:
        queue.enqueue_scoring(session)
    return queued


def _overall(scores: RecordScores, settings: QualitySettings) -> float:
    return overall_quality_score(
        relevance=scores.relevance_score,
        coherence=scores.coherence_score,
        factuality=scores.factuality_score,
        toxicity=scores.toxicity_score,
        hallucination_detected=scores.hallucination_detected,
        weights=settings.weights,
    )


def _settings_by_customer(session: Session, customer_ids: set[uuid.UUID]) -> dict[uuid.UUID, QualitySettings]:
    out = {}
    for customer_id in customer_ids:
        customer = session.get(Customer, customer_id)
        if customer is not None:
            out[customer_id] = settings_of(customer)
    return out


def _reserve_judge_calls(
    factory: sessionmaker[Session], customer_id: uuid.UUID, wanted: int, settings: JudgeSettings
) -> int:
    """Reserve up to `wanted` judge calls within the customer's daily caps (customer row locked); how many."""
    with unit_of_work(factory) as session:
        customer = session.get(Customer, customer_id, with_for_update=True)
        if customer is None:
            return 0
        usage = dict((customer.metadata_ or {}).get(JUDGE_USAGE_KEY) or {})
        if usage.get("day") != judge.today():
            usage = {"day": judge.today(), "calls": 0, "tokens": 0}
        if int(usage["tokens"]) >= settings.max_tokens_per_day:
            return 0
        granted = max(0, min(wanted, settings.max_calls_per_day - int(usage["calls"])))
        usage["calls"] = int(usage["calls"]) + granted
        customer.metadata_ = {**(customer.metadata_ or {}), JUDGE_USAGE_KEY: usage}
    return granted


def _count_judge_tokens(factory: sessionmaker[Session], customer_id: uuid.UUID, tokens: int) -> None:
    with unit_of_work(factory) as session:
        customer = session.get(Customer, customer_id, with_for_update=True)
        if customer is None:
            return
        usage = dict((customer.metadata_ or {}).get(JUDGE_USAGE_KEY) or {})
        if usage.get("day") == judge.today():
            usage["tokens"] = int(usage.get("tokens", 0)) + tokens
            customer.metadata_ = {**(customer.metadata_ or {}), JUDGE_USAGE_KEY: usage}


def _run_judge(
    factory: sessionmaker[Session],
    claimed: Sequence[repository.QueuedText],
    settings: dict[uuid.UUID, QualitySettings],
) -> dict[uuid.UUID, judge.Verdict]:
    """The judge's verdicts on the sampled records of customers that use it, within their caps."""
    verdicts: dict[uuid.UUID, judge.Verdict] = {}
    by_customer: dict[uuid.UUID, list[repository.QueuedText]] = {}
    for item in claimed:
        customer_settings = settings.get(item.customer_id)
        if customer_settings is None or judge.fingerprint(customer_settings.scoring.judge) is None:
            continue
        if judge.sampled(item.quality_metric_id, customer_settings.scoring.judge.sample_rate):
            by_customer.setdefault(item.customer_id, []).append(item)
    for customer_id, items in by_customer.items():
        judge_settings = settings[customer_id].scoring.judge
        granted = _reserve_judge_calls(factory, customer_id, len(items), judge_settings)
        chosen = items[:granted]
        if not chosen:
            continue
        results = judge.judge_batch(
            judge_settings, [ScoreInput(item.prompt, item.response, item.context) for item in chosen]
        )
        _count_judge_tokens(factory, customer_id, sum(result.tokens for result in results))
        for item, result in zip(chosen, results, strict=True):
            verdicts[item.quality_metric_id] = result
    return verdicts


def _with_judge(scores: RecordScores, settings: JudgeSettings, verdict: judge.Verdict | None) -> RecordScores:
    """The record's scores with the judge's fingerprint, and its verdict where it gave one: the verdict replaces
    the offline factuality score and hallucination flag (the judge reads reasoning, the lexical check cannot)."""
    mark = judge.fingerprint(settings)
    if mark is None:
        return scores
    metadata = {
        **scores.metadata,
        SCORERS_KEY: {**scores.metadata[SCORERS_KEY], judge.NAME: judge.PROMPT_VERSION},
        SCORER_SET_KEY: f"{scores.metadata[SCORER_SET_KEY]},{mark}",
    }
    if verdict is None:
        return replace(scores, metadata=metadata)
    metadata[judge.NAME] = verdict.as_metadata(settings)
    if verdict.verdict is None:
        return replace(scores, metadata=metadata)
    return replace(
        scores,
        factuality_score=verdict.score,
        hallucination_detected=verdict.verdict != "supported",
        metadata=metadata,
    )


def score_once(
    factory: sessionmaker[Session], scorers: Sequence[Scorer], batch_size: int = BATCH_SIZE
) -> tuple[int, int] | None:
    """Claim, score (and judge a sample) and write back one batch; (scored, written), or None when nothing waits."""
    with unit_of_work(factory) as session:
        claimed = repository.claim(session, batch_size)
        settings = _settings_by_customer(session, {item.customer_id for item in claimed})
    if not claimed:
        return None
    try:
        results = score_batch(scorers, [ScoreInput(item.prompt, item.response, item.context) for item in claimed])
    except ScorerUnavailableError:
        with unit_of_work(factory) as session:
            repository.release_failed(session, [item.quality_metric_id for item in claimed], "scorers unavailable")
        raise
    except Exception as error:  # a failing batch goes back to the queue with its error; it is retried a few times
        logger.exception("scoring a batch of %d texts failed", len(claimed))
        with unit_of_work(factory) as session:
            repository.release_failed(session, [item.quality_metric_id for item in claimed], repr(error))
        return len(claimed), 0
    verdicts = _run_judge(factory, claimed, settings)
    with unit_of_work(factory) as session:
        updates: list[dict[str, Any]] = []
        finished: list[tuple[uuid.UUID, int | None]] = []
        for item, offline in zip(claimed, results, strict=True):
            customer_settings = settings.get(item.customer_id)
            if customer_settings is None:
                continue  # the customer was deleted meanwhile (its records and texts go with it)
            scores = _with_judge(offline, customer_settings.scoring.judge, verdicts.get(item.quality_metric_id))
            updates.append(
                {
                    "id": item.quality_metric_id,
                    "timestamp": item.quality_metric_timestamp,
                    "relevance_score": scores.relevance_score,
                    "coherence_score": scores.coherence_score,
                    "factuality_score": scores.factuality_score,
                    "toxicity_score": scores.toxicity_score,
                    "hallucination_detected": scores.hallucination_detected,
                    "overall_quality_score": _overall(scores, customer_settings),
                    "extra": scores.metadata,
                }
            )
            keep = customer_settings.scoring
            finished.append((item.quality_metric_id, keep.text_retention_days if keep.keep_text else None))
        written = repository.write_scores(session, updates)
        repository.finish_texts(session, finished)
    return len(claimed), written


def score_pending(
    factory: sessionmaker[Session],
    *,
    scorers: Sequence[Scorer] | None = None,
    batch_size: int = BATCH_SIZE,
    time_budget: float = TIME_BUDGET_SECONDS,
) -> ScoringReport:
    """Score waiting texts batch by batch until none waits or the time budget is spent."""
    active = list(scorers) if scorers is not None else shared_scorers()
    report = ScoringReport()
    deadline = time.monotonic() + time_budget
    while True:
        outcome = score_once(factory, active, batch_size)
        if outcome is None:
            break
        report.batches += 1
        report.scored += outcome[0]
        report.written += outcome[1]
        if time.monotonic() >= deadline:
            with unit_of_work(factory) as session:
                report.more_waiting = repository.texts_waiting(session)
            break
    return report


def housekeeping(factory: sessionmaker[Session]) -> bool:
    """Delete expired text; True if texts wait for scores (the caller makes sure a job is queued)."""
    with unit_of_work(factory) as session:
        deleted = repository.delete_expired(session)
        waiting = repository.texts_waiting(session)
    if deleted:
        logger.info("deleted %d expired scoring text(s)", deleted)
    return waiting
