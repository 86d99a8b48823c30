"""CLI start-up: wall time of `optiinfra --help` and light commands, against the interpreter's own start and against
importing every command module up front (what the command line did before commands were loaded lazily).

Each case runs as a fresh process, the cases interleaved round by round so that a busy machine slows them alike;
medians are reported, and the ratio to the bare interpreter's start.

    .venv/bin/python benchmarks/cli_startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _support import median, write_results

BIN = Path(sys.executable).parent
CASES: dict[str, list[str]] = {
    "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
    "optiinfra --help": [str(BIN / "optiinfra"), "--help"],
    "optiinfra db --help": [str(BIN / "optiinfra"), "db", "--help"],
    "optiinfra quality --help": [str(BIN / "optiinfra"), "quality", "--help"],
    "every command module imported up front (before)": [
        sys.executable,
        "-c",
        "import optiinfra.cli.db, optiinfra.cli.quality, optiinfra.cli.serve, optiinfra.cli.worker, "
        "optiinfra.cli.workflows",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    environment = {**os.environ, "COLUMNS": "100"}
    for _ in range(args.rounds):
        for name, command in CASES.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=environment)  # noqa: S603 (our own commands)
            times[name].append(time.perf_counter() - started)
    bare = median(times["python -c pass (the interpreter alone)"])
    rows = {
        name: {
            "median_s": round(median(values), 3),
            "max_s": round(max(values), 3),
            "x_interpreter": round(median(values) / bare, 1),
        }
        for name, values in times.items()
    }
    for name, row in rows.items():
        print(f"{name:52} median {row['median_s']:.3f} s  max {row['max_s']:.3f} s  ({row['x_interpreter']}x python)")
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}")
    print(
        "results in",
        write_results("cli_startup", {"rounds": args.rounds, "load_average": round(load, 1), "cases": rows}),
    )


if __name__ == "__main__":
    main()
