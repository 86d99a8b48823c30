"""Offline scoring throughput: chat-sized requests scored per second by a worker, on this machine's 2 cores.

Chat-sized: a prompt of about 30 word pieces, an answer of about 120 (eight sentences) and a context of about 90,
built from a fixed-seed bank of sentences. 600 records are ingested through the real ingest (text queued) into a
fresh database, then drained by the scoring job's own loop (`score_pending`: claim, score all five scorers, write
back, drop text), batches of 64. Reported: wall-clock requests/s, and CPU seconds per request of this process, with
the machine's load average (the machine is shared: wall-clock on a loaded machine understates what 2 free cores
do; 2 / CPU-seconds-per-request is the rate 2 cores sustain when this is all they do).

Run: .venv/bin/python benchmarks/scoring_throughput.py  (results to benchmarks/results/scoring_throughput.json)
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta

from _support import fresh_database, make_tenant, write_results
from sqlalchemy.orm import Session

from optiinfra.auth.principal import Principal
from optiinfra.db.engine import make_session_factory
from optiinfra.quality.service import ingest
from optiinfra.scoring import service as scoring
from optiinfra.scoring.base import ScoreInput
from optiinfra.scoring.models import shared_embedder
from optiinfra.scoring.suite import score_batch

RECORDS = int(os.environ.get("OPTIINFRA_BENCH_RECORDS", "600"))
SUBJECTS = ["the billing API", "our Kubernetes cluster", "the mobile app", "the data pipeline", "the search index"]
FACTS = [
    "{s} was upgraded to version {n} last week.",
    "Requests to {s} take about {n} milliseconds at the median.",
    "{s} runs on {n} nodes in two regions.",
    "The team behind {s} deploys every {n} hours.",
    "Errors in {s} fell by {n} percent after the last release.",
    "{s} stores its state in PostgreSQL with {n} replicas.",
]
QUESTIONS = [
    "Can you tell me how {s} is set up and whether it is healthy right now? I need a short summary for my manager.",
    "What changed in {s} recently, and should I expect any impact on latency for our customers this week?",
]


def chat_request(rng: random.Random) -> tuple[str, str, str]:
    subject = rng.choice(SUBJECTS)
    facts = [fact.format(s=subject.capitalize(), n=rng.randint(2, 400)) for fact in rng.sample(FACTS, 6)]
    prompt = rng.choice(QUESTIONS).format(s=subject)
    answer = " ".join(
        [
            *facts[:5],
            f"Overall, {subject} looks healthy and no customer impact is expected this week.",
            "If latency rises after the next deploy, the on-call engineer will roll it back and tell you.",
            "I can send the dashboards behind these numbers if your manager wants more detail.",
        ]
    )
    return prompt, answer, " ".join(facts)


def main() -> None:
    rng = random.Random(14)  # noqa: S311 (test data)
    requests = [chat_request(rng) for _ in range(RECORDS)]
    embedder = shared_embedder()
    # Warm-up (model load, first-batch allocations) outside the measurement.
    score_batch(scoring.shared_scorers(), [ScoreInput(*requests[0])] * 8)
    embedder_tokens = embedder._tokenizer
    prompt_tokens = sum(len(embedder_tokens.encode(r[0]).ids) for r in requests[:100]) / 100
    answer_tokens = sum(len(embedder_tokens.encode(r[1]).ids) for r in requests[:100]) / 100
    context_tokens = sum(len(embedder_tokens.encode(r[2]).ids) for r in requests[:100]) / 100
    now = datetime.now(UTC)
    with fresh_database() as engine:
        customer_id, _, _ = make_tenant(engine)
        records = [
            {
                "request_id": f"bench-{index}",
                "model_name": "bench",
                "model_version": "1",
                "timestamp": (now - timedelta(seconds=RECORDS - index)).isoformat(),
                "prompt": prompt,
                "response": answer,
                "context": context,
            }
            for index, (prompt, answer, context) in enumerate(requests)
        ]
        with Session(engine) as session, session.begin():
            ingest(session, Principal.operator(), records, customer_id=customer_id, agent_id=None)
        factory = make_session_factory(engine)
        load_before = os.getloadavg()
        wall, cpu = time.perf_counter(), time.process_time()
        report = scoring.score_pending(factory, time_budget=3600)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        load_after = os.getloadavg()
    assert report.written == RECORDS, report
    result = {
        "records": RECORDS,
        "batch_size": scoring.BATCH_SIZE,
        "word_pieces": {"prompt": prompt_tokens, "answer": answer_tokens, "context": context_tokens},
        "seconds": round(wall, 2),
        "requests_per_second_wall": round(RECORDS / wall, 1),
        "cpu_seconds_per_request": round(cpu / RECORDS, 4),
        "requests_per_second_on_2_free_cores": round(2 * RECORDS / cpu, 1),
        "load_average_before_after": [round(load_before[0], 1), round(load_after[0], 1)],
        "providers": embedder.providers,
    }
    path = write_results("scoring_throughput", result)
    print(result)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
