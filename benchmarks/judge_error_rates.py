"""The regression judge's error rates on simulated traffic (fixed seeds), with default settings.

- false alarms: windows drawn from the baseline's own distribution that raise any regression (spec: <= 1 %);
- detection: windows with a 10 % lower mean overall score flagged on overall_quality_score (spec: >= 95 %),
  200 records on each side; plus the power for each other regression type at a few effect sizes.

    .venv/bin/python benchmarks/judge_error_rates.py [--windows 1000]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from _support import write_results

from optiinfra.quality.simulation import Traffic, regression_rate

BASE = Traffic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=1000)
    args = parser.parse_args()
    n = args.windows
    results: dict[str, float] = {
        "false_alarm_any_metric_200v200": regression_rate(2026, n, BASE, BASE),
        "false_alarm_any_metric_50v50": regression_rate(2027, n, BASE, BASE, baseline_n=50, current_n=50),
        "false_alarm_any_metric_2000v2000": regression_rate(2028, n // 4, BASE, BASE, baseline_n=2000, current_n=2000),
        "detect_overall_drop_10pct_200v200": regression_rate(
            7, n, BASE, replace(BASE, overall_factor=0.9), metric="overall_quality_score"
        ),
        "detect_overall_drop_7pct_200v200": regression_rate(
            8, n, BASE, replace(BASE, overall_factor=0.93), metric="overall_quality_score"
        ),
    }
    cases = {
        "detect_p95_latency_+37pct_200v200": (replace(BASE, latency_median_ms=1100), "p95_latency_ms"),
        "detect_hallucination_4_to_12pct_200v200": (replace(BASE, hallucination_rate=0.12), "hallucination_rate"),
        "detect_hallucination_4_to_20pct_200v200": (replace(BASE, hallucination_rate=0.20), "hallucination_rate"),
        "detect_toxicity_0.02_to_0.08_200v200": (replace(BASE, toxicity_mean=0.08), "toxicity_mean"),
        "detect_factuality_0.82_to_0.72_200v200": (replace(BASE, factuality=0.72), "factuality_score"),
    }
    for name, (traffic, metric) in cases.items():
        results[name] = regression_rate(11, n // 2, BASE, traffic, metric=metric)
    for name, rate in results.items():
        print(f"{name:45s} {rate:7.2%}")
    path = write_results("judge_error_rates", {"windows": n, "rates": results})
    print(f"results in {path}")


if __name__ == "__main__":
    main()
