"""Gradient flow: wall time and vector-field evaluations to reach a given accuracy at t1.

For S seeds of a diagonal student (d = 40, k = 5, teacher 0.9^i, unbalanced init 1e-3), the
parameters at t1 are computed several ways, in the same process, in float64:

- `Tsit5`: `GradientFlow` with Tsit5 and a PID controller, the plain vmapped solve, at
  several tolerances; at rtol 1e-6 it is the baseline of every speed-up;
- `LeastSquaresRosenbrock` (linearly implicit, Gauss-Newton W), ROS2 (second order) and
  ROS34PW2 (third order), at several tolerances;
- `Kvaerno5`, diffrax's implicit ESDIRK solver (a Newton solve with the full Jacobian at
  each stage), at rtol 1e-6;
- Tsit5 at a constant step (a fixed-step solver);
- `GradientDescent` with several step sizes η (GD is Euler on the flow: error O(η)).

Each is compared with a reference flow solved by Tsit5 at rtol 1e-12 (atol 1e-15), computed
last and once (its time is not a result). The error is the largest relative parameter
distance over the seeds. Reported: error, wall time (compile excluded), vector-field
evaluations and steps (the most any seed needed), the speed-up over the baseline, and for
each method the cheapest setting that is as accurate as the baseline (an error at most
1.1× its error). For gradient descent, whose step sizes here are
all far less accurate, the step size and time it would need are extrapolated from its two
smallest step sizes, with the order measured between them.

`--stages` adds Tsit5 at rtol 1e-6 with its stages combined as unrolled sums
(`rnnflow.UnrolledTsit5`, no per-stage copy of the stage buffer;
see `benchmarks/tsit5_stages.py`), which takes the same steps as the baseline.

`--pair` runs only the two rows that the speed target compares, Tsit5 and ROS34PW2 at
rtol 1e-6 (with the reference), for a large batch of seeds on an accelerator.

    python benchmarks/gradient_flow.py [--quick] [--pair] [--stages] [--seeds 64] [--t1 2000]
        [--json F]
"""

import argparse
import json
import math
import time

import jax

jax.config.update("jax_enable_x64", True)  # a benchmark script, not library code

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import rnnflow as rf  # noqa: E402


def _flat(params):
    return jnp.concatenate([x.reshape(x.shape[0], -1) for x in jax.tree.leaves(params)], axis=1)


def _run(model, loss, method, params, timed=True):
    """The trajectory and the seconds of a second call (the first compiles), or with
    `timed=False` of the first and only call."""
    save = rf.Save(num=2, metrics={"loss": lambda t, p: loss(model, p)})
    run = lambda: rf.train_seeds(loss.bind(model), params, method, save=save)  # noqa: E731
    if timed:
        jax.block_until_ready(run())  # compile
    start = time.perf_counter()
    traj = jax.block_until_ready(run())
    return traj, time.perf_counter() - start


def _pid(rtol):
    return diffrax.PIDController(rtol=rtol, atol=rtol * 1e-3)


def _gd_extrapolated(rows, base, t1):
    """The step size gradient descent needs to be as accurate as `base`, and its time,
    from its two finished rows with the smallest step sizes: the order p is measured
    between them (error ∝ lr^p; 1 in theory), and the time grows as 1/lr. None without
    two such rows, or if the error did not fall with the step size."""
    gd = [r for r in rows if r["method"] == "gradient descent" and r["finished"]]
    if len(gd) < 2:
        return None
    r1, r2 = sorted(gd, key=lambda r: r["lr"])[1::-1]  # r2: the smaller step size
    if not r2["error"] < r1["error"]:
        return None
    order = math.log(r1["error"] / r2["error"]) / math.log(r1["lr"] / r2["lr"])
    lr = r2["lr"] * (base["error"] / r2["error"]) ** (1 / order)
    return dict(
        order=order,
        from_lr=(r1["lr"], r2["lr"]),
        lr=lr,
        steps=t1 / lr,
        seconds=r2["seconds"] * r2["lr"] / lr,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--pair", action="store_true", help="Tsit5 and ROS34PW2 at rtol 1e-6 only")
    p.add_argument("--stages", action="store_true", help="also Tsit5 with unrolled stages")
    p.add_argument("--seeds", type=int)
    p.add_argument("--t1", type=float)
    p.add_argument("--json", help="write results to this file")
    args = p.parse_args()
    seeds = args.seeds or (8 if args.quick else 64)
    t1 = args.t1 or (200.0 if args.quick else 2000.0)
    device = jax.devices()[0]
    print(f"device: {device.device_kind}, seeds {seeds}, t1 {t1}, float64")

    model = rf.DiagonalRNN(40)
    loss = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 5)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(0), seeds), scale=1e-3)
    big = 10**7
    rows, finals = [], []

    def row(name, setting, method):
        traj, secs = _run(model, loss, method, params)
        finals.append(_flat(traj.final))
        rows.append(
            dict(
                method=name,
                setting=setting,
                seconds=secs,
                evals=int(jnp.max(traj.num_grad_evals)),
                steps=int(jnp.max(traj.num_steps)),
                finished=bool(jnp.all(traj.ok)),
            )
        )
        # As each finishes, so that a run cut short still shows the times it took.
        print(f"  {name:<24} {setting:<11} {secs:8.3f}s {rows[-1]['steps']:8d} steps", flush=True)

    # Each setting compiles anew; --quick keeps one per method, and of the Rosenbrock
    # tableaus the default only.
    few = args.quick or args.pair
    for rtol in (1e-6,) if few else (1e-6, 1e-4, 1e-8):  # 1e-6 first: the baseline
        row(
            "Tsit5",
            f"rtol={rtol:g}",
            rf.GradientFlow(t1, stepsize_controller=_pid(rtol), max_steps=big),
        )
    if args.stages:
        method = rf.GradientFlow(
            t1, solver=rf.UnrolledTsit5(), stepsize_controller=_pid(1e-6), max_steps=big
        )
        row("Tsit5 unrolled stages", "rtol=1e-06", method)
    rosenbrock = {
        "ros2": () if few else (1e-5, 3e-6, 1e-6, 1e-7),
        "ros34pw2": (1e-6,) if few else (1e-5, 1e-6, 1e-7),
    }
    for tableau, rtols in rosenbrock.items():
        ros = rf.LeastSquaresRosenbrock(tableau)
        for rtol in rtols:
            method = rf.GradientFlow(t1, solver=ros, stepsize_controller=_pid(rtol), max_steps=big)
            row(f"Rosenbrock {tableau}", f"rtol={rtol:g}", method)
    if not few:
        kvaerno = diffrax.Kvaerno5()
        method = rf.GradientFlow(t1, solver=kvaerno, stepsize_controller=_pid(1e-6), max_steps=big)
        row("Kvaerno5 (implicit)", "rtol=1e-06", method)
    for dt in () if args.pair else (0.05,) if args.quick else (0.1, 0.05):
        constant = diffrax.ConstantStepSize()
        method = rf.GradientFlow(t1, stepsize_controller=constant, dt0=dt, max_steps=big)
        row("Tsit5 fixed step", f"dt={dt:g}", method)
    for lr in () if args.pair else (0.03,) if args.quick else (0.03, 0.01):
        row("gradient descent", f"lr={lr:g}", rf.GradientDescent(lr, int(round(t1 / lr))))
        rows[-1]["lr"] = lr

    # The reference last: its time is not reported, so it runs once, compile included.
    method = rf.GradientFlow(t1, stepsize_controller=_pid(1e-12), max_steps=big)
    ref, ref_s = _run(model, loss, method, params, timed=False)
    ref_flat = _flat(ref.final)
    base = rows[0]
    for r, final in zip(rows, finals, strict=True):
        d = jnp.linalg.norm(final - ref_flat, axis=1)
        r["error"] = float(jnp.max(d / jnp.linalg.norm(ref_flat, axis=1)))
        r["speedup"] = base["seconds"] / r["seconds"]
    print(
        f"{'method':<24} {'setting':<11} {'rel. error':>10} {'time':>9} {'speed-up':>8} "
        f"{'evals/seed':>11} {'steps':>8} {'ms/step':>8}"
    )
    for r in rows:
        err = f"{r['error']:10.2e}" if r["finished"] else "  diverged"
        print(
            f"{r['method']:<24} {r['setting']:<11} {err} {r['seconds']:8.3f}s "
            f"{r['speedup']:7.1f}x {r['evals']:11d} {r['steps']:8d} "
            f"{1e3 * r['seconds'] / r['steps']:8.3f}"
        )
    print(
        f"\ncheapest setting as accurate as Tsit5 at rtol 1e-6 (error ≤ 1.1 × {base['error']:.2e}):"
    )
    for name in dict.fromkeys(r["method"] for r in rows[1:]):
        ok = [
            r
            for r in rows
            if r["method"] == name and r["finished"] and r["error"] <= 1.1 * base["error"]
        ]
        if ok:
            best = min(ok, key=lambda r: r["seconds"])
            print(f"  {name:<24} {best['setting']:<11} {best['speedup']:7.1f}x faster")
        else:
            print(f"  {name:<24} none of the settings tried")
    e = _gd_extrapolated(rows, base, t1)
    if e:
        print(
            f"  gradient descent (extrapolated: order {e['order']:.2f} measured between "
            f"lr={e['from_lr'][0]:g} and {e['from_lr'][1]:g}) needs lr ≈ {e['lr']:.2g}, "
            f"{e['steps']:.2g} steps and ≈ {e['seconds']:.3g} s, "
            f"{e['seconds'] / base['seconds']:.3g} times the baseline's"
        )
    ref_steps = int(jnp.max(ref.num_steps))
    print(f"(the reference took {ref_steps} steps and {ref_s:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            out = dict(device=str(device), seeds=seeds, t1=t1, rows=rows)
            json.dump(dict(out, reference_steps=ref_steps, gd_extrapolated=e), f, indent=1)


if __name__ == "__main__":
    main()
