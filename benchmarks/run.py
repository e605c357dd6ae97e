"""Run every benchmark in turn: one entry point for the whole suite.

Runs each script below as a subprocess, in this order, with `--quick` when given and
`--json OUT/<name>.json`, streaming its output and keeping a copy in `OUT/<name>.log`.
Prints each script's wall time and the total. A script that fails, or runs past
`--timeout` seconds, is reported and the others still run; the exit status is non-zero if
any failed.

`--targets` runs, instead, each measurement at the size its performance target is stated
at (`benchmarks/README.md`): gradient descent at 10³ and 10⁴ seeds, the scans at batch 64
and T = 10⁴, the flow of 10⁴ seeds (Tsit5 against ROS34PW2 only), and memory at 10⁴ and
10⁵ seeds. That is minutes on a GPU and hours on a CPU.

    python benchmarks/run.py [--quick | --targets] [--timeout S] [--out DIR]
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

SCRIPTS = ["gd_throughput", "scan", "gradient_flow", "memory", "long_runs"]
TARGETS = {
    "gd_throughput": ["--seeds", "1000", "10000", "--steps", "2000"],
    "scan": ["--batch", "64", "--lengths", "10000"],
    "gradient_flow": ["--pair", "--seeds", "10000"],
    "memory": ["--seeds", "10000", "100000"],
}


def _run(cmd, log, timeout):
    """Runs `cmd`, echoing its output and writing it to `log`; returns its exit status,
    or None if it ran past `timeout` seconds (and was killed, with its own subprocesses)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    expired = threading.Event()

    def kill():
        expired.set()
        os.killpg(proc.pid, signal.SIGKILL)  # with any process it started

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.start()
    with open(log, "w") as f:
        for line in proc.stdout:  # a line at a time, as it comes
            sys.stdout.write(line)
            sys.stdout.flush()
            f.write(line)
            f.flush()
    rc = proc.wait()
    if timer:
        timer.cancel()
    return None if expired.is_set() else rc


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="small sizes for every script")
    sizes.add_argument("--targets", action="store_true", help="the sizes of the targets")
    p.add_argument("--timeout", type=float, help="seconds each script may run")
    p.add_argument(
        "--out",
        default=os.path.join("rnnflow-results", "benchmarks"),
        help="folder for the JSON results and logs (default: %(default)s)",
    )
    args = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(args.out, exist_ok=True)
    scripts = dict(TARGETS) if args.targets else dict.fromkeys(SCRIPTS, [])
    times, failed = {}, {}
    start = time.perf_counter()
    for name, extra in scripts.items():
        cmd = [sys.executable, os.path.join(here, f"{name}.py"), *extra]
        cmd += ["--quick"] * args.quick + ["--json", os.path.join(args.out, f"{name}.json")]
        print(f"\n=== {name} ({' '.join(cmd[1:])})", flush=True)
        t0 = time.perf_counter()
        rc = _run(cmd, os.path.join(args.out, f"{name}.log"), args.timeout)
        times[name] = time.perf_counter() - t0
        if rc != 0:
            failed[name] = "TIMED OUT" if rc is None else f"FAILED (exit status {rc})"
            print(f"=== {name} {failed[name]}", flush=True)
    total = time.perf_counter() - start
    print("\n=== times")
    for name, secs in times.items():
        print(f"{name:<15} {secs:7.1f}s  {failed.get(name, '')}".rstrip())
    print(f"{'total':<15} {total:7.1f}s")
    print(f"results in {args.out}/")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
