"""Long runs at full size complete without overflow, memory growth or recompilation.

A 10^6-step gradient-descent run and a gradient flow through a long plateau (init 1e-6).

Diagonal student d = 40, impulse loss k = 5, teacher 0.9^i + 0.5·0.5^i + 0.3·(-0.3)^i,
float32, init scale 1e-6 (unbalanced), 64 seeds:

- `gd`: `GradientDescent(lr=0.01, num_steps=10^6)` (t1 = 10^4), `Save(num=50, spacing="log")`;
- `flow`: `GradientFlow(t1=5000)` (Tsit5, `PIDController(rtol=1e-6, atol=1e-9)`,
  `max_steps=10^6`), `Save(num=50, spacing="log")`.

Each is run by `train_seeds` twice, with the same shapes and different seeds
(`jax.random.key(0)`, then `key(1)`). Reported per call: wall time (the first includes
compilation), backend compilations (counted with a `jax.monitoring` listener on
"/jax/core/compile/backend_compile_duration"; the second call must have none), and RSS before
and after (peak: `getrusage` ru_maxrss; current: /proc/self/statm), which should not grow
from the first call to the second. Per run: `traj.summary()`, whether every saved metric and
final parameter is finite, the median and largest number of steps (GD: exactly
`num_steps`, so no counter overflowed), the median final loss, and the plateau length: the
first save time at which a seed's loss is below 1e-2 of its initial value (median over seeds,
resolved only to the log-spaced save grid). From init 1e-6 the loss sits at its initial
value while the parameters grow through about six decades; here that takes t ≈ 4 to 5, then
the loss falls through a slower phase and converges by t ≈ 2000 to 4000. A final "checks"
line lists any failure: non-finite values, unfinished seeds, an early stop, a GD step count
other than `num_steps`, a compilation in the second call, or peak RSS growing by more than
16 MiB from the first call to the second.

`--quick`: 10^5 GD steps; the flow with 16 seeds to t1 = 500 (past the plateau, not converged).

    python benchmarks/long_runs.py [--quick] [--seeds 64] [--json F]
"""

import argparse
import json
import os
import resource
import sys
import time

import diffrax
import jax
import numpy as np

import rnnflow as rf

D, K, SCALE = 40, 5, 1e-6
TEACHER = ([0.9, 0.5, -0.3], [1.0, 0.5, 0.3])
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

_compiles = {"count": 0}


def _on_event(event, duration_secs, **kwargs):
    if event == COMPILE_EVENT:
        _compiles["count"] += 1


def _rss():
    """(peak, current) resident set size in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        current = None
    return peak, current


def _call(model, loss, method, params, save):
    before = _rss()
    compiles = _compiles["count"]
    start = time.perf_counter()
    traj = jax.block_until_ready(rf.train_seeds(loss.bind(model), params, method, save=save))
    seconds = time.perf_counter() - start
    compiles = _compiles["count"] - compiles
    after = _rss()
    loss_ = np.asarray(traj.metrics["loss"])  # (seeds, saves)
    ts = np.asarray(traj.ts)[0]
    below = loss_ < 1e-2 * loss_[:, :1]
    plateau = np.where(below.any(axis=1), ts[np.argmax(below, axis=1)], np.inf)
    leaves = jax.tree.leaves((traj.metrics, traj.final))
    steps = np.asarray(traj.num_steps)
    return dict(
        seconds=seconds,
        compiles=compiles,
        rss_peak_before=before[0],
        rss_peak_after=after[0],
        rss_before=before[1],
        rss_after=after[1],
        summary=traj.summary(),
        finite=all(bool(np.all(np.isfinite(np.asarray(x)))) for x in leaves),
        t_stop=float(np.max(np.asarray(traj.t_stop))),
        min_steps=int(np.min(steps)),
        median_steps=float(np.median(steps)),
        max_steps=int(np.max(steps)),
        initial_loss=float(np.median(loss_[:, 0])),
        final_loss=float(np.median(loss_[:, -1])),
        max_final_loss=float(np.max(loss_[:, -1])),
        plateau=float(np.median(plateau)),
        left_plateau=int(np.sum(np.isfinite(plateau))),
    )


def _mib(b):
    return "-" if b is None else f"{b / 2**20:7.1f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10^5 GD steps; flow of 16 seeds to t=500")
    p.add_argument("--seeds", type=int)
    p.add_argument("--json", help="write results to this file")
    args = p.parse_args()
    seeds = args.seeds or 64
    gd_steps = 10**5 if args.quick else 10**6
    flow_seeds = args.seeds or (16 if args.quick else 64)
    t1 = 500.0 if args.quick else 5000.0
    jax.monitoring.register_event_duration_secs_listener(_on_event)

    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({device}), diagonal d={D}, k={K}, float32, "
        f"init {SCALE:g}; RSS in MiB"
    )
    model = rf.DiagonalRNN(D)
    loss = rf.ImpulseLoss(rf.modes_teacher(*TEACHER), train_len=K)
    save = rf.Save(num=50, spacing="log")
    runs = {
        "gd": (seeds, rf.GradientDescent(0.01, gd_steps), f"GD lr 0.01, {gd_steps:.0e} steps"),
        "flow": (
            flow_seeds,
            rf.GradientFlow(
                t1,
                stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9),
                max_steps=10**6,
            ),
            f"flow Tsit5 rtol 1e-6, t1 {t1:g}",
        ),
    }
    results = {}
    for name, (n, method, label) in runs.items():
        params = [
            rf.init_seeds(model, jax.random.split(jax.random.key(k), n), scale=SCALE)
            for k in (0, 1)
        ]
        jax.block_until_ready(params)
        calls = [_call(model, loss, method, p, save) for p in params]
        results[name] = dict(label=label, seeds=n, t1=method.t1, calls=calls)
        print(f"\n{name}: {label}, {n} seeds")
        print(
            f"{'call':>4} {'time':>8} {'compiles':>8} {'RSS before':>10} {'after':>7} "
            f"{'peak after':>10} {'finite':>6} {'t_stop':>7} {'steps med/max':>17} "
            f"{'loss init':>9} {'final med':>9} {'final max':>9} {'plateau':>8}  summary"
        )
        for i, c in enumerate(calls):
            print(
                f"{i + 1:>4} {c['seconds']:7.1f}s {c['compiles']:8d} {_mib(c['rss_before']):>10} "
                f"{_mib(c['rss_after']):>7} {_mib(c['rss_peak_after']):>10} "
                f"{str(c['finite']):>6} {c['t_stop']:7g} "
                f"{c['median_steps']:>8.0f}/{c['max_steps']:<8d} {c['initial_loss']:9.3g} "
                f"{c['final_loss']:9.2e} {c['max_final_loss']:9.2e} {c['plateau']:8.3g}  "
                f"{c['summary']}"
            )
        first, second = calls
        growth = (second["rss_peak_after"] - first["rss_peak_after"]) / 2**20
        current = (
            None
            if first["rss_after"] is None
            else (second["rss_after"] - first["rss_after"]) / 2**20
        )
        print(
            f"second call against the first: {second['compiles']} compilations, peak RSS "
            f"{growth:+.1f} MiB, current RSS " + ("-" if current is None else f"{current:+.1f} MiB")
        )
        failed = [
            what
            for what, bad in [
                ("non-finite values", not all(c["finite"] for c in calls)),
                ("seeds not finished", any(set(c["summary"]) != {"finished"} for c in calls)),
                (
                    "stopped before t1",
                    any(not np.isclose(c["t_stop"], method.t1, rtol=1e-6) for c in calls),
                ),
                (
                    "step count not num_steps",
                    name == "gd"
                    and any((c["min_steps"], c["max_steps"]) != (gd_steps,) * 2 for c in calls),
                ),
                ("recompiled", second["compiles"] != 0),
                ("peak RSS grew > 16 MiB", growth > 16),
            ]
            if bad
        ]
        results[name]["failed"] = failed
        print("checks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=str(device), runs=results), f, indent=1)


if __name__ == "__main__":
    main()
