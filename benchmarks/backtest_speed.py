"""`optiinfra quality backtest --json` on simulated traffic: a week of 30,000 records a day for one model version,
run as a real process against a fresh embedded PostgreSQL (or OPTIINFRA_BENCH_DATABASE_URL's server).

    .venv/bin/python benchmarks/backtest_speed.py [--days 7] [--per-day 30000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _support import fresh_database, write_results

from optiinfra.quality.traffic import TrafficModel, generate, start_of_day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--per-day", type=float, default=30_000)
    parser.add_argument("--runs", type=int, default=3, help="runs, each against a fresh database; the median counts")
    args = parser.parse_args()
    traffic = generate(TrafficModel(requests_per_day=args.per_day), start_of_day(int(args.days) + 2), args.days, 7)
    runs = []
    with tempfile.TemporaryDirectory(prefix="optiinfra-backtest-bench-") as directory:
        path = Path(directory) / "week.jsonl"
        with path.open("w") as handle:
            for record in traffic.records("bench-model", "v1"):
                handle.write(json.dumps(record) + "\n")
        for _ in range(args.runs):
            with fresh_database() as engine:
                url = engine.url.render_as_string(hide_password=False)
                env = {**os.environ, "OPTIINFRA_DATABASE_URL": url}
                load_before = os.getloadavg()[0]
                cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                done = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
                    [sys.executable, "-m", "optiinfra", "quality", "backtest", str(path), "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                elapsed = time.perf_counter() - started
                cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                raise SystemExit(done.stderr or done.stdout)
            payload = json.loads(done.stdout)
            runs.append(
                {
                    "seconds": round(elapsed, 1),
                    # CPU time of the backtest process itself (PostgreSQL's own processes are not counted)
                    "process_cpu_seconds": round(
                        cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 1
                    ),
                    "regressions": len(payload["regressions"]),
                    "load_average_1min_before": round(load_before, 2),
                    "load_average_1min_after": round(os.getloadavg()[0], 2),
                }
            )
            print(
                f"{traffic.size:,} records over {payload['days']:.2f} days replayed in {elapsed:.0f} s; "
                f"{len(payload['regressions'])} regressions (load average {load_before:.1f} before; "
                f"{runs[-1]['process_cpu_seconds']} s of CPU in the backtest process)",
                flush=True,
            )
    result = {
        "records": traffic.size,
        "days": payload["days"],
        "seconds": statistics.median(run["seconds"] for run in runs),
        "process_cpu_seconds": statistics.median(run["process_cpu_seconds"] for run in runs),
        "runs": runs,
        "cpus": os.cpu_count(),
    }
    print(f"median {result['seconds']:.0f} s over {len(runs)} runs")
    print(f"results in {write_results('backtest_speed', result)}")


if __name__ == "__main__":
    main()
