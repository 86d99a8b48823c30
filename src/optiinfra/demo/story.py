"""The demo's cast and pace: who the demo customers are, what their agents do, what traffic their applications send.

Acme Analytics runs Llama 3 70B on a fleet of four GPU instances (and GPT-4o through its API); its cost agent keeps
finding that the fleet's load is steady enough for spot capacity, the (simulated) customer approves, and the move is
rolled out in phases, each judged on the traffic of the moved instances against the others. Nimbus Chat runs
Mistral Large; every 7 hours a prompt-template change makes its hallucinations five times as frequent for two
hours, which the worker's monitoring opens as an incident and resolves once the rate is back.

Everything is written through the services live data goes through (optiinfra.demo.driver); the traffic comes from
the monitoring issue's realistic simulator (optiinfra.quality.traffic).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from optiinfra.errors import ConfigurationError
from optiinfra.models import AgentType, CustomerPlan, RecommendationPriority
from optiinfra.quality.traffic import DEFAULT_ROUTES, Effect, TrafficModel

PACE_ENV = "OPTIINFRA_DEMO_PACE"
KEY_FILE = "demo-customer-key"


@dataclass(frozen=True)
class DemoPace:
    """How much history the demo backfills and how fast its story moves (real: what users see)."""

    name: str
    history_hours: float  # quality traffic backfilled before the first start
    resource_history_hours: float  # GPU utilization backfilled (the spot analysis needs 24 hourly samples)
    tick_seconds: float  # how often the driver heartbeats, sends traffic and moves the story
    monitoring_seconds: float  # how often the server's worker judges the traffic
    replay_step_minutes: int  # monitoring passes replayed over backfilled history, this far apart
    volume_factor: float  # multiplies every stream's requests per day
    baseline_min_hours: float  # the demo customers' monitoring settings
    baseline_min_records: int
    bake_seconds: float  # the rollouts' phase gate
    min_samples: int
    deadline_seconds: float
    poll_seconds: float
    approve_after_seconds: float  # a spot recommendation waits this long for a human before the demo approves it
    cycle_pause_seconds: float  # after a rollout ends, the cost agent looks again this much later


REAL = DemoPace(
    name="real",
    history_hours=26,
    resource_history_hours=26,
    tick_seconds=5,
    monitoring_seconds=30,
    replay_step_minutes=20,
    volume_factor=1.0,
    baseline_min_hours=24,
    baseline_min_records=2000,
    bake_seconds=90,
    min_samples=40,
    deadline_seconds=3600,
    poll_seconds=20,
    approve_after_seconds=30,
    cycle_pause_seconds=300,
)
# For tests: a short history, a small gate, a fast tick; the same code paths.
QUICK = DemoPace(
    name="quick",
    history_hours=3,
    resource_history_hours=26,
    tick_seconds=2,
    monitoring_seconds=10,
    replay_step_minutes=10,
    volume_factor=2.0,
    baseline_min_hours=1.4,
    baseline_min_records=200,
    bake_seconds=2,
    min_samples=15,
    deadline_seconds=1800,
    poll_seconds=2,
    approve_after_seconds=0,
    cycle_pause_seconds=5,
)
PACES = {pace.name: pace for pace in (REAL, QUICK)}


def pace_from_env() -> DemoPace:
    """The pace `OPTIINFRA_DEMO_PACE` names (`real`, the default, or `quick` for tests)."""
    name = os.environ.get(PACE_ENV, "").strip() or REAL.name
    if name not in PACES:
        raise ConfigurationError(
            f"{PACE_ENV}={name!r} is not a demo pace.", fix=f"Use one of {', '.join(sorted(PACES))}, or unset it."
        )
    return PACES[name]


@dataclass(frozen=True)
class CustomerSpec:
    key: str
    name: str
    email: str
    plan: CustomerPlan


ACME = CustomerSpec("acme", "Acme Analytics", "ops@acme-analytics.example", CustomerPlan.ENTERPRISE)
NIMBUS = CustomerSpec("nimbus", "Nimbus Chat", "platform@nimbus-chat.example", CustomerPlan.STARTUP)
CUSTOMERS = (ACME, NIMBUS)


@dataclass(frozen=True)
class AgentSpec:
    type: AgentType
    name: str
    version: str
    capabilities: tuple[str, ...]


AGENTS = (
    AgentSpec(AgentType.COST, "demo-cost", "1.4.0", ("spot_analysis", "spot_rollout")),
    AgentSpec(AgentType.PERFORMANCE, "demo-performance", "1.2.1", ("vllm_tuning", "latency_profiling")),
    AgentSpec(AgentType.RESOURCE, "demo-resource", "1.1.0", ("gpu_metrics", "scaling_decision")),
    AgentSpec(AgentType.APPLICATION, "demo-application", "2.0.3", ("quality_metrics", "offline_scoring")),
    AgentSpec(AgentType.ORCHESTRATOR, "demo-orchestrator", "0.9.2", ("workflow_routing",)),
)
HEARTBEAT_INTERVAL_SECONDS = 30


@dataclass(frozen=True)
class Instance:
    instance_id: str
    instance_type: str
    utilization: float  # mean GPU utilization, percent
    variation: float  # relative spread of hourly utilization (steady < 0.25 < bursty)


# Acme's fleet: four steady Llama servers (spot candidates) and one bursty batch box (not a candidate).
LLAMA_FLEET = tuple(Instance(f"gpu-llama-{n}", "g5.12xlarge", 71.0 + 2 * n, 0.06) for n in range(1, 5))
FLEET = (*LLAMA_FLEET, Instance("gpu-batch-1", "g5.2xlarge", 35.0, 0.9))
RESOURCE_STEP = timedelta(minutes=10)

# Every 7 hours from the demo's epoch (when its customers were created), Nimbus's prompt-template change runs for two
# hours: from 90 minutes before each mark to 30 minutes after it, hallucinations five times as frequent. At first
# start one is 90 minutes in; none lies earlier, so the first baseline (a day of history) learns no incident as
# normal. 7 hours, not a divisor of a day: an hour-of-day matched reference never holds one at the same hours.
INCIDENT_PERIOD = timedelta(hours=7)
INCIDENT_LEAD = timedelta(minutes=90)
INCIDENT_TAIL = timedelta(minutes=30)
HALLUCINATION_FACTOR = 5.0


@dataclass(frozen=True)
class Stream:
    """One application's traffic for one model version."""

    customer: CustomerSpec
    model_name: str
    model_version: str
    requests_per_day: float
    seed: int
    instances: tuple[str, ...] = ()  # records name one of these serving instances (the rollout's arms)
    routes: tuple[str, ...] = field(default_factory=tuple)  # all the simulator's routes if empty
    incident_prone: bool = False

    @property
    def key(self) -> str:
        return f"{self.customer.key}:{self.model_name}@{self.model_version}"

    def model(self, pace: DemoPace) -> TrafficModel:
        routes = tuple(r for r in DEFAULT_ROUTES if not self.routes or r.name in self.routes)
        return TrafficModel(requests_per_day=self.requests_per_day * pace.volume_factor, routes=routes)

    def effects(self, epoch: datetime, start: datetime, end: datetime) -> tuple[Effect, ...]:
        """The incident windows that overlap [start, end)."""
        if not self.incident_prone:
            return ()
        first = max(0, int((start - INCIDENT_TAIL - epoch) // INCIDENT_PERIOD))
        last = int((end + INCIDENT_LEAD - epoch) // INCIDENT_PERIOD) + 1
        return tuple(
            Effect("hallucination_factor", HALLUCINATION_FACTOR, epoch + k * INCIDENT_PERIOD - INCIDENT_LEAD,
                   epoch + k * INCIDENT_PERIOD + INCIDENT_TAIL)
            for k in range(first, last + 1)
        )  # fmt: skip


STREAMS = (
    Stream(ACME, "llama-3-70b", "2024-07-23", 80_000, seed=101, instances=tuple(i.instance_id for i in LLAMA_FLEET)),
    Stream(ACME, "gpt-4o", "2024-11-20", 12_000, seed=102),
    Stream(NIMBUS, "mistral-large", "2411", 15_000, seed=103, routes=("chat", "summarize"), incident_prone=True),
)


@dataclass(frozen=True)
class PendingRecommendation:
    """A recommendation an agent makes when the demo starts, left for a human to decide on the dashboard."""

    customer: CustomerSpec
    agent_type: AgentType
    type: str
    title: str
    description: str
    estimated_savings: str | None
    estimated_improvement: str | None
    confidence: float
    priority: RecommendationPriority


FOR_A_HUMAN = (
    PendingRecommendation(
        ACME,
        AgentType.PERFORMANCE,
        "vllm_tuning",
        "Raise max_num_seqs from 128 to 192 on the Llama 3 70B fleet",
        "The fleet's KV cache stays under 60 % full at peak; more concurrent sequences per instance serve the same "
        "traffic with three instances instead of four at the 95th percentile.",
        "1840.00",
        "12.50",
        0.74,
        RecommendationPriority.MEDIUM,
    ),
    PendingRecommendation(
        NIMBUS,
        AgentType.COST,
        "prompt_caching",
        "Cache Nimbus's system prompt on Mistral Large",
        "Every chat request repeats the same 1,900-token system prompt; provider-side prompt caching bills it at a "
        "tenth after the first request of each 5-minute window.",
        "620.00",
        None,
        0.81,
        RecommendationPriority.LOW,
    ),
)
