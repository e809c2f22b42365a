"""Median wall time of `fth --help` (and `fth list`) against a bare `python -c pass`.

Targets: `fth --help` under 150 ms and under 3× the bare interpreter.
Run: python benchmarks/cli_startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def median_ms(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    subprocess.run(cmd, capture_output=True, env=env, check=True)  # warm the page cache and .pyc files
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    fth = shutil.which("fth") or sys.exit("install the project first: pip install -e .")
    env = {**os.environ, "FTH_HOME": tempfile.mkdtemp(prefix="fth-bench-")}
    bare = median_ms([sys.executable, "-c", "pass"], args.runs, env)
    rows = [("python -c pass", bare)]
    for label, cmd in (("fth --help", [fth, "--help"]), ("fth list", [fth, "list"])):
        rows.append((label, median_ms(cmd, args.runs, env)))
    print(f"median of {args.runs} runs, Python {sys.version.split()[0]}")
    for label, ms in rows:
        print(f"  {label:16} {ms:7.1f} ms  ({ms / bare:4.2f}× bare)")
    help_ms = rows[1][1]
    ok = help_ms < 150 and help_ms < 3 * bare
    print(f"target fth --help < 150 ms and < 3× bare: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
