"""Starting workflows answers at once: the time of `POST /api/v1/workflows/spot-migration/rollout` (and of the
analysis) against a real `optiinfra serve` process, with its in-process worker busy running the runs it started.

Target (issue 10): starting a rollout answers in well under a second (it records the run and its job, nothing more).

    .venv/bin/python benchmarks/workflow_start.py [--rollouts 30] [--analyses 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import httpx
from _support import fresh_database, median, running_server, write_results

from optiinfra.client import OptiInfraClient
from optiinfra.enums import AgentType


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=30)
    parser.add_argument("--analyses", type=int, default=30)
    args = parser.parse_args()
    with fresh_database() as engine, running_server(engine) as (base_url, operator_key):
        operator = OptiInfraClient(base_url, api_key=operator_key)
        customer = operator.create_customer("Bench", f"bench-{uuid.uuid4().hex[:8]}@example.com")
        agent = operator.register_agent(AgentType.COST, f"cost-{uuid.uuid4().hex[:6]}")
        assign = httpx.post(
            f"{base_url}/api/v1/agents/{agent.id}/customers",
            json={"customer_id": str(customer.id)},
            headers={"Authorization": f"Bearer {operator_key}"},
        )
        assert assign.status_code in {200, 201, 404, 405}, assign.text  # 404/405: before agent assignments existed
        agent_client = OptiInfraClient(base_url, api_key=agent.api_key)
        customer_client = OptiInfraClient(base_url, api_key=customer.api_key)
        optimizations = []
        for n in range(args.rollouts):
            recommendation = agent_client.create_recommendation(
                customer.id,
                "spot_migration",
                f"Move fleet {n} to spot",
                confidence_score=0.9,
                estimated_savings=1000,
                data={"instances": [f"gpu-{n}-{i}" for i in range(4)]},
            )
            decision = customer_client.approve(recommendation.id, "bench")
            assert decision.optimization is not None
            optimizations.append(decision.optimization.id)
        rollout_ms: list[float] = []
        for optimization_id in optimizations:
            started = time.perf_counter()
            run = agent_client.roll_out_spot_migration(optimization_id)
            rollout_ms.append((time.perf_counter() - started) * 1000)
            assert run.status in {"pending", "running", "waiting"}, run.status
        analysis_ms: list[float] = []
        for _ in range(args.analyses):
            started = time.perf_counter()
            agent_client.analyze_spot_migration(customer.id, lookback_days=1)
            analysis_ms.append((time.perf_counter() - started) * 1000)
        # The runs were really taken by the worker meanwhile (they wait for evidence, or finish).
        deadline = time.monotonic() + 120
        while True:
            statuses = [w.status for w in operator.list_workflows(limit=200).items]
            if all(status != "pending" for status in statuses) or time.monotonic() > deadline:
                break
            time.sleep(1)
    result = {
        "rollout_start_ms": {
            "n": len(rollout_ms),
            "median": median(rollout_ms),
            "p95": _percentile(rollout_ms, 0.95),
            "max": max(rollout_ms),
        },
        "analysis_start_ms": {
            "n": len(analysis_ms),
            "median": median(analysis_ms),
            "p95": _percentile(analysis_ms, 0.95),
            "max": max(analysis_ms),
        },
        "runs_taken_by_worker": sum(status != "pending" for status in statuses),
        "runs": len(statuses),
        "target": "well under a second",
        "stdev_rollout_ms": statistics.pstdev(rollout_ms),
    }
    path = write_results("workflow_start", result)
    rollout = result["rollout_start_ms"]
    print(
        f"POST rollout: median {rollout['median']:.0f} ms, p95 {rollout['p95']:.0f} ms; "
        f"POST analysis: median {result['analysis_start_ms']['median']:.0f} ms; "
        f"{result['runs_taken_by_worker']}/{result['runs']} runs taken by the worker -> {path}"
    )


if __name__ == "__main__":
    main()
