"""`optiinfra quality backtest --json` on simulated traffic: a week of 30,000 records a day for one model version,
run as a real process against a fresh embedded PostgreSQL (or OPTIINFRA_BENCH_DATABASE_URL's server).

    .venv/bin/python benchmarks/backtest_speed.py [--days 7] [--per-day 30000]
"""

from __future__ import annotations

import argparse
import json
import os
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
    args = parser.parse_args()
    traffic = generate(TrafficModel(requests_per_day=args.per_day), start_of_day(int(args.days) + 2), args.days, 7)
    with tempfile.TemporaryDirectory(prefix="optiinfra-backtest-bench-") as directory, fresh_database() as engine:
        path = Path(directory) / "week.jsonl"
        with path.open("w") as handle:
            for record in traffic.records("bench-model", "v1"):
                handle.write(json.dumps(record) + "\n")
        url = engine.url.render_as_string(hide_password=False)
        env = {**os.environ, "OPTIINFRA_DATABASE_URL": url}
        started = time.perf_counter()
        done = subprocess.run(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "optiinfra", "quality", "backtest", str(path), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr or done.stdout)
    payload = json.loads(done.stdout)
    result = {
        "records": traffic.size,
        "days": payload["days"],
        "seconds": round(elapsed, 1),
        "regressions": len(payload["regressions"]),
        "cpus": os.cpu_count(),
    }
    print(
        f"{traffic.size:,} records over {payload['days']:.2f} days replayed in {elapsed:.0f} s; "
        f"{len(payload['regressions'])} regressions"
    )
    print(f"results in {write_results('backtest_speed', result)}")


if __name__ == "__main__":
    main()
