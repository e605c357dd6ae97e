"""Gradient flow: wall time and gradient evaluations to reach a given accuracy at time t1.

For S seeds of a diagonal student (d = 40, k = 5, teacher 0.9^i, unbalanced init 1e-3), the
parameters at t1 are computed three ways, in the same process, in float64:

- `GradientFlow` (Tsit5, PID controller) at several tolerances;
- `GradientFlow` with Tsit5 at a constant step (a fixed-step solver);
- `GradientDescent` with several step sizes η (GD is Euler on the flow: error O(η)).

Each is compared with a reference flow solved at rtol = atol = 1e-12. The error is the
largest relative parameter distance over the seeds. Reported: error, wall time (compile
excluded), gradient evaluations per seed, and for each method the cheapest setting that
reaches the target accuracy.

    python benchmarks/gradient_flow.py [--quick] [--seeds 64] [--t1 200] [--target 1e-4]
"""

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)  # a benchmark script, not library code

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import rnnflow as rf  # noqa: E402


def _flat(params):
    return jnp.concatenate([x.reshape(x.shape[0], -1) for x in jax.tree.leaves(params)], axis=1)


def _run(model, loss, method, params):
    save = rf.Save(num=2, metrics={"loss": lambda t, p: loss(model, p)})
    run = lambda: rf.train_seeds(model, loss, method, params, save=save)  # noqa: E731
    jax.block_until_ready(run())  # compile
    start = time.perf_counter()
    traj = jax.block_until_ready(run())
    return traj, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int)
    p.add_argument("--t1", type=float)
    p.add_argument("--target", type=float, default=1e-4, help="relative accuracy to reach")
    args = p.parse_args()
    seeds = args.seeds or (16 if args.quick else 64)
    t1 = args.t1 or (50.0 if args.quick else 200.0)
    print(f"device: {jax.devices()[0].device_kind}, seeds {seeds}, t1 {t1}, float64")

    model = rf.DiagonalRNN(40)
    loss = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 5)
    params = rf.init_seeds(model, jax.random.split(jax.random.key(0), seeds), scale=1e-3)
    tight = diffrax.PIDController(rtol=1e-12, atol=1e-12)
    ref, _ = _run(model, loss, rf.GradientFlow(t1, stepsize_controller=tight), params)
    ref_flat = _flat(ref.final)

    def error(traj):
        d = jnp.linalg.norm(_flat(traj.final) - ref_flat, axis=1)
        return float(jnp.max(d / jnp.linalg.norm(ref_flat, axis=1)))

    rows = []
    for rtol in (1e-4, 1e-6, 1e-8):
        ctrl = diffrax.PIDController(rtol=rtol, atol=rtol * 1e-3)
        traj, secs = _run(model, loss, rf.GradientFlow(t1, stepsize_controller=ctrl), params)
        evals = int(jnp.max(traj.num_grad_evals))
        rows.append(("flow, Tsit5 + PID", f"rtol={rtol:g}", error(traj), secs, evals))
    for dt in (0.1, 0.05, 0.03):
        method = rf.GradientFlow(
            t1, stepsize_controller=diffrax.ConstantStepSize(), dt0=dt, max_steps=10**7
        )
        traj, secs = _run(model, loss, method, params)
        rows.append(
            (
                "flow, Tsit5 fixed",
                f"dt={dt:g}",
                error(traj),
                secs,
                int(jnp.max(traj.num_grad_evals)),
            )
        )
    for lr in (0.1, 0.03, 0.01, 0.003):
        traj, secs = _run(model, loss, rf.GradientDescent(lr, int(round(t1 / lr))), params)
        rows.append(
            ("gradient descent", f"lr={lr:g}", error(traj), secs, int(jnp.max(traj.num_grad_evals)))
        )

    print(f"{'method':<20} {'setting':<12} {'rel. error':>10} {'time':>9} {'grads/seed':>11}")
    for name, setting, err, secs, evals in rows:
        print(f"{name:<20} {setting:<12} {err:10.2e} {secs:8.3f}s {evals:11d}")
    print(f"\ncheapest setting reaching relative error {args.target:g}:")
    for name in dict.fromkeys(r[0] for r in rows):
        ok = [r for r in rows if r[0] == name and r[2] <= args.target]
        if ok:
            best = min(ok, key=lambda r: r[3])
            print(f"  {name:<20} {best[1]:<12} {best[3]:8.3f}s {best[4]:11d} grads/seed")
        else:
            print(f"  {name:<20} none of the settings tried")
    print(
        f"(max steps per seed of the adaptive solve vary: see num_steps; "
        f"reference took {int(jnp.max(ref.num_steps))} steps)"
    )


if __name__ == "__main__":
    main()
