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

`--gpu` runs every GPU measurement (`benchmarks/gpu.sh`): the device's roofs, then each
target at its size (gradient descent at 10⁴ seeds, the scans at batch 64 and T = 10⁴, the
flow of 10⁴ seeds, memory at 10⁴ and 10⁵ seeds), each with a time limit of its own, all
within eight minutes. It prints `jax.devices()` first and writes, besides each script's
JSON and log, `OUT/gpu.json` (every step's status, time and results) and `OUT/gpu.md` (a
table with a row per step). `--gpu --tiny` runs the same steps at the smallest sizes on the
CPU, in about 90 s, so that the run and its report are checked without a GPU.

    python benchmarks/run.py [--quick | --targets | --gpu [--tiny]] [--timeout S] [--out DIR]
"""

import argparse
import datetime
import json
import math
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

# The GPU run: each step's arguments and its time limit in seconds. A step's limit is
# also cut to what is left of BUDGET_S, so that the whole run, the device check included,
# stays under eight minutes however long each step takes.
GPU = {
    "device_peaks": ([], 30),
    "gd_throughput": (["--seeds", "10000", "--steps", "2000", "--repeats", "3"], 120),
    "scan": (["--batch", "64", "--lengths", "10000"], 60),
    "gradient_flow": (["--pair", "--seeds", "10000"], 140),
    "memory": (["--seeds", "10000", "100000"], 100),
}
# The same steps at the smallest sizes, on the CPU.
GPU_TINY = {
    "device_peaks": [],
    "gd_throughput": ["--seeds", "10", "--steps", "20", "--repeats", "1"],
    "scan": ["--quick", "--batch", "2", "--lengths", "10"],
    "gradient_flow": ["--pair", "--seeds", "2", "--t1", "1"],
    "memory": ["--seeds", "10", "--steps", "5"],
}
DEVICE_CHECK_S = 30
BUDGET_S = 465
HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = """\
import importlib.util, jax
print("devices:", jax.devices())
print("backend:", jax.default_backend())
print("jax:", jax.__version__)
torch = importlib.util.find_spec("torch")
print("torch:", "installed" if torch else "not installed (no PyTorch baselines)")
"""


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


def _status(rc):
    """'ok', 'timed out' or 'failed (exit status N)' for `_run`'s result."""
    if rc == 0:
        return "ok"
    return "timed out" if rc is None else f"failed (exit status {rc})"


def run_script(name, extra, out, timeout):
    """Runs benchmarks/`name`.py with `extra` arguments, its JSON and log in `out`; returns
    its status and its wall time."""
    cmd = [sys.executable, os.path.join(HERE, f"{name}.py"), *extra]
    cmd += ["--json", os.path.join(out, f"{name}.json")]
    print(f"\n=== {name} ({' '.join(cmd[1:])})", flush=True)
    t0 = time.perf_counter()
    status = _status(_run(cmd, os.path.join(out, f"{name}.log"), timeout))
    seconds = time.perf_counter() - t0
    if status != "ok":
        print(f"=== {name} {status}", flush=True)
    return dict(status=status, seconds=seconds)


def run_suite(args):
    """The plain run: every script (or every target), in turn; exits non-zero if any
    failed."""
    scripts = dict(TARGETS) if args.targets else dict.fromkeys(SCRIPTS, [])
    start = time.perf_counter()
    results = {
        name: run_script(name, ["--quick"] * args.quick + extra, args.out, args.timeout)
        for name, extra in scripts.items()
    }
    print("\n=== times")
    for name, r in results.items():
        print(f"{name:<15} {r['seconds']:7.1f}s  {'' if r['status'] == 'ok' else r['status']}")
    print(f"{'total':<15} {time.perf_counter() - start:7.1f}s")
    print(f"results in {args.out}/")
    sys.exit(0 if all(r["status"] == "ok" for r in results.values()) else 1)


# The GPU run and its report.


def probe_devices(out):
    """Prints `jax.devices()`, the backend and versions; returns them as a dict of strings,
    with the check's status (only that if JAX could not start)."""
    print("=== devices", flush=True)
    log = os.path.join(out, "devices.log")
    rc = _run([sys.executable, "-c", PROBE], log, DEVICE_CHECK_S)
    with open(log) as f:
        found = dict(line.rstrip("\n").split(": ", 1) for line in f if ": " in line)
    found = {k: v for k, v in found.items() if k in ("devices", "backend", "jax", "torch")}
    return dict(found, status=_status(rc))


def _log_tail(out, name, lines=5):
    try:
        with open(os.path.join(out, f"{name}.log")) as f:
            return [line.rstrip("\n") for line in f.readlines()[-lines:]]
    except OSError:
        return []


def _results(out, name):
    """The script's JSON, or None if it wrote none (or an unreadable one)."""
    try:
        with open(os.path.join(out, f"{name}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_gpu_steps(out, tiny):
    """Runs every GPU step in turn, each within its limit and all within BUDGET_S; returns
    a list of one dict per step, with its status, time, results (the script's JSON) and,
    where it did not finish, the last lines of its log."""
    deadline = time.monotonic() + BUDGET_S
    steps = []
    for name, (extra, limit) in GPU.items():
        extra = GPU_TINY[name] if tiny else extra
        stale = os.path.join(out, f"{name}.json")
        if os.path.exists(stale):
            os.remove(stale)  # only this run's results go into the report
        left = deadline - time.monotonic()
        if left < 5:
            step = dict(status="skipped (no time left)", seconds=0.0)
        else:
            step = run_script(name, extra, out, min(limit, left))
        step = dict(name=name, arguments=extra, **step, limit_s=limit)
        step["results"] = _results(out, name)
        if step["status"] not in ("ok", "skipped (no time left)"):
            step["log_tail"] = _log_tail(out, name)
        steps.append(step)
    return steps


def _fmt_peaks(r):
    return (
        f"bandwidth {r['bandwidth'] / 1e9:.1f} GB/s (read + write); multiply-add "
        f"{r['elementwise_flops'] / 1e9:.1f} GFLOP/s ({r['dtype']})"
    )


def _fmt_gd(r):
    parts = []
    for row in r["rows"]:
        rate = row["rnnflow_seed_steps_per_s"]
        text = (
            f"{row['case']} d={row['d']} S={row['seeds']}: {rate:.3g} seed-steps/s "
            f"({rate / 1e9:.2g} of 1e9), "
            + (
                f"{row['vs_torch_batched']:.1f}× torch batched, "
                if math.isfinite(row["vs_torch_batched"])
                else ""
            )
            + f"{row['of_elementwise_peak']:.1%} of the flop peak"
        )
        if "vs_pallas" in row:
            text += f"; pallas {rate / row['vs_pallas']:.3g} seed-steps/s"
        parts.append(text)
    return "; ".join(parts)


def _fmt_scan(r):
    return "; ".join(
        f"{row['a']} T={row['T']}: associative {row['associative_s'] * 1e3:.3g} ms = "
        f"{row['associative_s'] / row['floor_s']:.1f}× the floor (target ≤ 2), "
        f"sequential/associative {row['sequential_s'] / row['associative_s']:.2f}, "
        f"auto picks {row['auto']}"
        for row in r["rows"]
    )


def _fmt_flow(r):
    rows = {row["method"]: row for row in r["rows"]}
    tsit, ros = rows["Tsit5"], rows["Rosenbrock ros34pw2"]
    return (
        f"{r['seeds']} seeds, t1 {r['t1']:g}: Tsit5 {tsit['seconds']:.3g} s (error "
        f"{tsit['error']:.1e}), ROS34PW2 {ros['seconds']:.3g} s (error {ros['error']:.1e}), "
        f"{ros['speedup']:.1f}× faster"
    )


def _fmt_memory(r):
    parts = [
        f"S={row['seeds']} {row['mode']}: working {row['working'] / 2**20:.0f} MiB"
        + (f", device peak {row['device_peak'] / 2**20:.0f} MiB" if row["device_peak"] else "")
        for row in r["rows"]
    ]
    parts += [
        f"{mode} working ×{ratios['working']:.2f} (target ≤ 1.2 chunked)"
        for mode, ratios in r["ratios"].items()
        if ratios.get("working")
    ]
    parts += [f"S={s['seeds']} {s['mode']} skipped (memory)" for s in r["skipped"]]
    return "; ".join(parts)


SUMMARIES = {
    "device_peaks": _fmt_peaks,
    "gd_throughput": _fmt_gd,
    "scan": _fmt_scan,
    "gradient_flow": _fmt_flow,
    "memory": _fmt_memory,
}


def summarize(step):
    """One line of what a step measured, or of why it did not."""
    if step["results"] is None:
        return (step.get("log_tail") or ["not run"])[-1]
    try:
        return SUMMARIES[step["name"]](step["results"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        return f"see {step['name']}.json ({type(e).__name__} reading it)"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


TINY_TITLE = " (tiny: the smallest sizes, on the CPU; not a measurement)"


def markdown(report):
    """The report as a markdown table with a row per step."""
    env = report["environment"]
    lines = [
        "# GPU benchmarks" + TINY_TITLE * report["tiny"],
        "",
        f"{report['date']}; devices `{env.get('devices', 'unknown')}` "
        f"({env.get('backend', 'unknown')}), jax {env.get('jax', 'unknown')}; "
        f"{report['total_s']:.0f} s in all (budget {report['budget_s']} s).",
        "",
        "| step | command | status | time | limit | result |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for step in report["steps"]:
        command = " ".join([f"{step['name']}.py", *step["arguments"]])
        lines.append(
            f"| {step['name']} | `{_cell(command)}` | {step['status']} "
            f"| {step['seconds']:.1f} s | {step['limit_s']} s | {_cell(summarize(step))} |"
        )
    return "\n".join(lines) + "\n"


def run_gpu(args):
    """The GPU run: every step, then OUT/gpu.json and OUT/gpu.md; exits non-zero if a step
    did not finish."""
    if args.tiny:
        os.environ["JAX_PLATFORMS"] = "cpu"  # for every step: the smallest sizes, on the CPU
    start = time.perf_counter()
    env = probe_devices(args.out)
    if not args.tiny and env.get("backend") != "gpu":
        print(f"=== warning: JAX's backend is {env.get('backend')}, not a GPU", flush=True)
    steps = run_gpu_steps(args.out, args.tiny)
    report = dict(
        tiny=args.tiny,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        environment=env,
        budget_s=BUDGET_S,
        total_s=time.perf_counter() - start,
        steps=steps,
    )
    with open(os.path.join(args.out, "gpu.json"), "w") as f:
        json.dump(report, f, indent=1)
    table = markdown(report)
    with open(os.path.join(args.out, "gpu.md"), "w") as f:
        f.write(table)
    print("\n" + table + f"\nresults in {args.out}/gpu.json and gpu.md")
    sys.exit(0 if all(s["status"] == "ok" for s in steps) else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="small sizes for every script")
    sizes.add_argument("--targets", action="store_true", help="the sizes of the targets")
    sizes.add_argument("--gpu", action="store_true", help="every GPU measurement, gpu.json/md")
    p.add_argument("--tiny", action="store_true", help="with --gpu: smallest sizes, on the CPU")
    p.add_argument("--timeout", type=float, help="seconds each script may run")
    p.add_argument(
        "--out",
        help="folder for the JSON results and logs (default: rnnflow-results/benchmarks, "
        "with --gpu rnnflow-results/gpu)",
    )
    args = p.parse_args()
    if args.tiny and not args.gpu:
        p.error("--tiny goes with --gpu")
    if args.gpu and args.timeout:
        p.error("--gpu sets each step's time limit itself")
    default = "gpu" if args.gpu else "benchmarks"
    args.out = args.out or os.path.join("rnnflow-results", default)
    os.makedirs(args.out, exist_ok=True)
    run_gpu(args) if args.gpu else run_suite(args)


if __name__ == "__main__":
    main()
