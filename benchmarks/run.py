"""Run every benchmark in turn: one entry point for the whole suite.

Runs each script below as a subprocess, in this order, with `--quick` when given and
`--json OUT/<name>.json`, streaming its output. Prints each script's wall time and the
total. A script that fails is reported and the others still run; the exit status is
non-zero if any failed.

    python benchmarks/run.py [--quick] [--out DIR]
"""

import argparse
import os
import subprocess
import sys
import time

SCRIPTS = ["gd_throughput", "scan", "gradient_flow", "memory", "long_runs"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes for every script")
    p.add_argument(
        "--out",
        default=os.path.join("rnnflow-results", "benchmarks"),
        help="folder for the JSON results (default: %(default)s)",
    )
    args = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(args.out, exist_ok=True)
    times, failed = {}, []
    start = time.perf_counter()
    for name in SCRIPTS:
        cmd = [sys.executable, os.path.join(here, f"{name}.py")]
        cmd += ["--quick"] * args.quick + ["--json", os.path.join(args.out, f"{name}.json")]
        print(f"\n=== {name} ({' '.join(cmd[1:])})", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)  # inherits stdout/stderr: output streams as it comes
        times[name] = time.perf_counter() - t0
        if rc:
            failed.append(name)
            print(f"=== {name} FAILED (exit status {rc})", flush=True)
    total = time.perf_counter() - start
    print("\n=== times")
    for name, secs in times.items():
        print(f"{name:<15} {secs:7.1f}s{'  FAILED' if name in failed else ''}")
    print(f"{'total':<15} {total:7.1f}s")
    print(f"results in {args.out}/")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
