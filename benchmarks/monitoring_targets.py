"""Continuous monitoring's targets (issue 11) on the project's traffic simulator, with fixed seeds, default settings,
one model version at about 30,000 requests a day, replaying the worker's passes every 60 s
(`optiinfra.quality.replay`, the worker's procedure on numpy aggregates):

- false regressions per model version per week on stable traffic with a daily cycle (14 simulated days from the
  version's first request: the policy establishes the initial baseline after 24 h and moves it forward daily),
  with the default simulator and with perturbed simulators (every parameter moved at random);
- time from an effect's start to the first regression it opens, for each target effect, starting at different
  hours of the day, after 7 days of history.

    .venv/bin/python benchmarks/monitoring_targets.py [--seeds 4] [--stable-days 14] [--only stable|detection]
        [--jobs N]

`--jobs` runs the simulations in that many processes (the figures are the same: each run has its own seed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from typing import Any

from _support import write_results

from optiinfra.quality.replay import columns_of, replay
from optiinfra.quality.settings import QualitySettings
from optiinfra.quality.traffic import Effect, TrafficModel, generate, perturbed, start_of_day

TARGETS = {  # effect kind, value, target minutes
    "overall score -10 %": ("overall_factor", 0.9, 30),
    "5 % garbage answers": ("garbage_share", 0.05, 120),
    "hallucination rate x2": ("hallucination_factor", 2.0, 360),
    "toxic answers 0 -> 3 %": ("toxic_share", 0.03, 120),
    "latency p95 +30 %, median unchanged": ("latency_tail", 1.3, 60),
}


def models(seeds: int) -> list[tuple[str, int, TrafficModel]]:
    out = [("default", seed, TrafficModel()) for seed in range(1, seeds + 1)]
    out += [("perturbed", 100 + seed, perturbed(TrafficModel(), 100 + seed)) for seed in range(1, seeds + 1)]
    return out


def _stable_run(kind: str, seed: int, model: TrafficModel, days: int, settings: QualitySettings) -> dict[str, Any]:
    started = time.perf_counter()
    traffic = generate(model, start_of_day(days + 2), days, seed)
    incidents, baselines = replay(columns_of(traffic), settings)
    judged_days = days - 1  # nothing is judged before the initial baseline (24 h)
    return {
        "simulator": kind,
        "seed": seed,
        "records": traffic.size,
        "judged_days": judged_days,
        "baselines": len(baselines),
        "false_regressions": len(incidents),
        "reopened": sum(len(i.reopened_at) for i in incidents),
        "high_or_critical": sum(i.severity.value in {"high", "critical"} for i in incidents),
        "per_week": len(incidents) / judged_days * 7,
        "incidents": [
            {
                "metric": i.metric,
                "severity": i.severity.value,
                "detected_at": i.detected_at.isoformat(),
                "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None,
                "reopened_at": [moment.isoformat() for moment in i.reopened_at],
            }
            for i in incidents
        ],
        "seconds": round(time.perf_counter() - started, 1),
    }


def stable(seeds: int, days: int, settings: QualitySettings, jobs: int = 1) -> dict[str, Any]:
    runs = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_stable_run, kind, seed, model, days, settings) for kind, seed, model in models(seeds)]
        for future in futures:
            runs.append(future.result())
            print(
                f"stable {runs[-1]['simulator']:9s} seed {runs[-1]['seed']:3d}: {runs[-1]['records']:,} records, "
                f"{runs[-1]['false_regressions']} false regressions "
                f"({runs[-1]['per_week']:.2f}/week; reopened {runs[-1]['reopened']}), "
                f"{runs[-1]['high_or_critical']} high/critical "
                f"[{runs[-1]['seconds']} s]",
                flush=True,
            )
    total_weeks = sum(run["judged_days"] for run in runs) / 7
    return {
        "runs": runs,
        "false_regressions_per_week": sum(run["false_regressions"] for run in runs) / total_weeks,
        "worst_run_per_week": max(run["per_week"] for run in runs),
        "high_or_critical": sum(run["high_or_critical"] for run in runs),
    }


def detection(seeds: int, settings: QualitySettings) -> dict[str, Any]:
    results: dict[str, Any] = {}
    history_hours = 7 * 24
    for name, (kind, value, target) in TARGETS.items():
        delays: list[float | None] = []
        details = []
        for index, (simulator, seed, model) in enumerate(models(seeds)):
            hour = (5 * index + 3) % 24  # effects start at different hours of the day
            base = start_of_day(10)
            effect_start = base + timedelta(hours=history_hours + hour)
            traffic = generate(model, base, (history_hours + hour + 8) / 24, seed, (Effect(kind, value, effect_start),))
            incidents, _ = replay(columns_of(traffic), settings, start=effect_start - timedelta(minutes=30))
            before = [i for i in incidents if i.detected_at < effect_start]
            # The first flag after the start: a new incident, or one of before reopened (the recurrence rule).
            flags = sorted(
                (
                    (moment, incident)
                    for incident in incidents
                    for moment in (incident.detected_at, *incident.reopened_at)
                    if moment >= effect_start
                ),
                key=lambda pair: pair[0],
            )
            after = [incident for _, incident in flags]
            delay = (flags[0][0] - effect_start).total_seconds() / 60 if flags else None
            delays.append(delay)
            details.append(
                {
                    "simulator": simulator,
                    "seed": seed,
                    "start_hour_utc": effect_start.hour,
                    "minutes_to_detect": delay,
                    "first_metric": after[0].metric if after else None,
                    "severity": after[0].severity.value if after else None,
                    "false_before_start": len(before),
                }
            )
        found = [d for d in delays if d is not None]
        results[name] = {
            "target_minutes": target,
            "detected": f"{len(found)}/{len(delays)}",
            "median_minutes": statistics.median(found) if found else None,
            "max_minutes": max(found) if found else None,
            "met": len(found) == len(delays) and max(found) <= target,
            "runs": details,
        }
        print(
            f"{name:38s} detected {len(found)}/{len(delays)}, median {results[name]['median_minutes']} min, "
            f"max {results[name]['max_minutes']} min (target {target}): "
            f"{'met' if results[name]['met'] else 'NOT met'}",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=4, help="seeds per simulator (default and perturbed)")
    parser.add_argument("--stable-days", type=int, default=14)
    parser.add_argument("--only", choices=["stable", "detection"], help="run one half (results: <name>_<half>.json)")
    parser.add_argument("--jobs", type=int, default=1, help="processes for the stable runs (same figures)")
    args = parser.parse_args()
    settings = QualitySettings()
    started = time.perf_counter()
    payload: dict[str, Any] = {"settings": "defaults", "requests_per_day": TrafficModel().requests_per_day}
    if args.only != "detection":
        payload["stable"] = stable(args.seeds, args.stable_days, settings, args.jobs)
        stable_result = payload["stable"]
        print(
            f"false regressions per model version per week: {stable_result['false_regressions_per_week']:.2f} "
            f"overall, {stable_result['worst_run_per_week']:.2f} in the worst run; high or critical: "
            f"{stable_result['high_or_critical']}"
        )
    if args.only != "stable":
        payload["detection"] = detection(args.seeds, settings)
    payload["seconds"] = round(time.perf_counter() - started, 1)
    payload["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    name = "monitoring_targets" + (f"_{args.only}" if args.only else "")
    print(f"results in {write_results(name, payload)}")


if __name__ == "__main__":
    main()
