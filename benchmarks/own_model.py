"""A user's own model: `rnnflow.train_seeds` against the hand-written JAX a user would write.

Models (any pytree; nothing of rnnflow's RNN client is used):

- `lru`: an LRU-style diagonal recurrence in real-split form, λ = r e^{iθ} with
  r = exp(-exp(ν)), complex input and output weights as (re, im) pairs, trained on the
  impulse response of a fixed teacher over `k` lags, scanned with `lax.scan`;
- `mlp`: an `eqx.nn.MLP` (1 → 16 → 16 → 1, tanh) fitting sin(2x) on 32 points;
- `mlp_1024`: the same fitting 1024 points, whose loss and gradient make 1.3 MB of values
  per seed: more than a CPU's cache holds for the seeds a device runs side by side, the
  case where `train_seeds` sizes its blocks of seeds to the cache (`rnnflow._engine.blocks`).

Methods: gradient descent (`GradientDescent(lr, steps)`) and the gradient flow by Tsit5
(`GradientFlow(t1)` at its baseline's PID rtol 1e-6, atol 1e-9), both saving the loss at
`--saves` times;
and `hyper`: the hypergradient of the seeds' mean final loss with respect to the rate,
through 100 descent steps (`jax.jit(jax.grad(...))` of `jax.vmap(rf.train)`, against the
same of a `lax.scan`).
Baselines, from the same initial parameters:

- `vmap`: `jax.jit(jax.vmap(...))` of a `lax.scan` over the steps (outer scan over the save
  points, inner over the steps between) / of `diffrax.diffeqsolve` with the same solver,
  controller and save times, on the default device, as a user would write it;
- `vmap-sharded`: the same program with the seed axis sharded over every device (XLA
  partitions it), when there is more than one.

rnnflow runs with its defaults (seeds spread over every device). Each is timed `--repeats`
times, taking turns; compile time is the first call's time minus the median of the rest.
The final losses are checked to agree (GD to 1e-4 relative, the flow to 1e-3) before any
time is printed.

    python benchmarks/own_model.py [--seeds 256 1024] [--models lru mlp mlp_1024]
        [--methods gd flow hyper] [--cpu-devices N] [--repeats 3] [--steps 2000]
"""

import argparse
import platform
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import rnnflow as rf

LR, T1 = 0.02, 40.0


# -- models -----------------------------------------------------------------------------


def lru_init(key, d=32):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    r = jax.random.uniform(k1, (d,), minval=0.5, maxval=0.95)
    return {
        "nu": jnp.log(-jnp.log(r)),
        "theta": jax.random.uniform(k2, (d,), maxval=jnp.pi),
        "b": jax.random.normal(k3, (2, d)) / jnp.sqrt(d),
        "c": jax.random.normal(k4, (2, d)) / jnp.sqrt(d),
    }


def lru_impulse(p, k=16):
    r = jnp.exp(-jnp.exp(p["nu"]))
    lam_re, lam_im = r * jnp.cos(p["theta"]), r * jnp.sin(p["theta"])

    def step(h, _):
        h_re, h_im = h
        y = jnp.sum(p["c"][0] * h_re - p["c"][1] * h_im)
        return (lam_re * h_re - lam_im * h_im, lam_re * h_im + lam_im * h_re), y

    _, ys = lax.scan(step, (p["b"][0], p["b"][1]), None, length=k)
    return ys


# NumPy constants: a JAX array at import would start JAX before use_cpu_cores.
LRU_TEACHER = (0.8 ** np.arange(16.0) * np.cos(0.7 * np.arange(16.0))).astype(np.float32)


def lru_loss(p):
    return jnp.sum((lru_impulse(p) - LRU_TEACHER) ** 2)


def mlp_init(key):
    return eqx.nn.MLP(1, 1, width_size=16, depth=2, activation=jnp.tanh, key=key)


def mlp_loss_on(points: int):
    """The MLP's mean squared error against sin(2x) on `points` points of [-2, 2]."""
    x = np.linspace(-2.0, 2.0, points, dtype=np.float32)[:, None]
    y = np.sin(2.0 * x)

    def loss(mlp):
        return jnp.mean((jax.vmap(mlp)(x) - y) ** 2)

    return loss


MODELS = {
    "lru": (lru_init, lru_loss),
    "mlp": (mlp_init, mlp_loss_on(32)),
    "mlp_1024": (mlp_init, mlp_loss_on(1024)),
}


# -- hand-written baselines ---------------------------------------------------------------


def gd_baseline(loss_fn, saves, steps):
    """Final params' loss and the loss at `saves` evenly spaced step counts (0 and `steps`
    included): an outer scan over save points, an inner one over the steps between."""
    every = steps // (saves - 1)

    def one(p):
        params, static = eqx.partition(p, eqx.is_array)

        def loss(q):
            return loss_fn(eqx.combine(q, static))

        def step(q, _):
            g = jax.grad(loss)(q)
            return jax.tree.map(lambda x, y: x - LR * y, q, g), None

        def segment(q, _):
            q, _ = lax.scan(step, q, None, length=every)
            return q, loss(q)

        q, losses = lax.scan(segment, params, None, length=saves - 1)
        return jnp.concatenate([loss(params)[None], losses])

    return eqx.filter_vmap(one)


def flow_baseline(loss_fn, saves):
    def one(p):
        params, static = eqx.partition(p, eqx.is_array)

        def loss(q):
            return loss_fn(eqx.combine(q, static))

        term = diffrax.ODETerm(lambda t, y, args: jax.tree.map(jnp.negative, jax.grad(loss)(y)))
        sol = diffrax.diffeqsolve(
            term,
            diffrax.Tsit5(),
            0.0,
            T1,
            None,
            params,
            saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, T1, saves)),
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9),
            max_steps=100_000,
        )
        return jax.vmap(loss)(sol.ys)

    return eqx.filter_vmap(one)


# -- timing -----------------------------------------------------------------------------


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


HYPER_STEPS = 100


def hyper_runs(loss_fn, params):
    """The hypergradient d(mean final loss)/d(rate) through `HYPER_STEPS` descent steps of
    every seed: `jax.grad` of `jax.vmap` of `rf.train`, against the same of a `lax.scan`."""

    def ours(lr):
        def one(p):
            method = rf.GradientDescent(lr, HYPER_STEPS)
            return rf.train(loss_fn, p, method, save=rf.Save(num=2)).metrics["loss"][-1]

        return jnp.mean(eqx.filter_vmap(one)(params))

    def hand(lr):
        def one(p):
            q, static = eqx.partition(p, eqx.is_array)

            def loss(q):
                return loss_fn(eqx.combine(q, static))

            def step(q, _):
                return jax.tree.map(lambda x, g: x - lr * g, q, jax.grad(loss)(q)), None

            return loss(lax.scan(step, q, None, length=HYPER_STEPS)[0])

        return jnp.mean(eqx.filter_vmap(one)(params))

    rate = jnp.asarray(LR)
    return {
        "rnnflow": lambda g=jax.jit(jax.grad(ours)): g(rate),
        "vmap": lambda g=jax.jit(jax.grad(hand)): g(rate),
    }


def bench(model, method, seeds, repeats, saves, steps):
    init, loss_fn = MODELS[model]
    params = eqx.filter_vmap(init)(jax.random.split(jax.random.key(0), seeds))
    save = rf.Save(num=saves)
    if method == "hyper":
        return _time(hyper_runs(loss_fn, params), repeats, tol=1e-4, final=lambda x: x)
    if method == "gd":
        rf_method = rf.GradientDescent(LR, steps)
        baseline = gd_baseline(loss_fn, saves, steps)
    else:
        # The baseline's tolerances (rnnflow's float32 default is looser: rtol 1e-4).
        rf_method = rf.GradientFlow(T1, stepsize_controller=diffrax.PIDController(1e-6, 1e-9))
        baseline = flow_baseline(loss_fn, saves)
    runs = {
        "rnnflow": lambda: rf.train_seeds(loss_fn, params, rf_method, save=save).metrics["loss"],
        "vmap": lambda b=eqx.filter_jit(baseline): b(params),
    }
    devices = jax.devices()
    if len(devices) > 1 and seeds % len(devices) == 0:
        sharding = NamedSharding(Mesh(np.asarray(devices), ("seeds",)), PartitionSpec("seeds"))
        sharded = jax.tree.map(
            lambda x: jax.device_put(x, sharding) if eqx.is_array(x) else x, params
        )
        runs["vmap-sharded"] = lambda b=eqx.filter_jit(baseline): b(sharded)
    return _time(runs, repeats, tol=1e-4 if method == "gd" else 1e-3, final=lambda x: x[:, -1])


def _time(runs, repeats, tol, final):
    times = {name: [] for name in runs}
    results = {}
    for _ in range(repeats + 1):  # taking turns: the first round includes compilation
        for name, fn in runs.items():
            dt, out = _timed(fn)
            times[name].append(dt)
            results[name] = np.asarray(out)
    for name, out in results.items():
        np.testing.assert_allclose(final(out), final(results["rnnflow"]), rtol=tol, atol=1e-7)
    rows = {}
    for name, ts in times.items():
        run = float(np.median(ts[1:]))
        rows[name] = (ts[0] - run, run)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--models", nargs="+", default=["lru", "mlp"], choices=list(MODELS))
    p.add_argument(
        "--methods", nargs="+", default=["gd", "flow", "hyper"], choices=["gd", "flow", "hyper"]
    )
    p.add_argument("--cpu-devices", type=int, default=None, help="default: one per core")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--saves", type=int, default=11)
    p.add_argument("--steps", type=int, default=2000, help="gradient descent's steps")
    args = p.parse_args()
    n = rf.use_cpu_cores(args.cpu_devices)  # before any JAX computation
    print(
        f"{platform.processor() or platform.machine()}, {n} JAX CPU devices, "
        f"jax {jax.__version__}; GD {args.steps} steps, Tsit5 flow to t = {T1}; "
        f"compile / run seconds; ratio = baseline / rnnflow (> 1: rnnflow faster)"
    )
    print(f"{'model':<8} {'method':<6} {'seeds':>5}  {'run':<13} {'compile':>8} {'run':>8}  ratios")
    for model in args.models:
        for method in args.methods:
            for seeds in args.seeds:
                rows = bench(model, method, seeds, args.repeats, args.saves, args.steps)
                c0, r0 = rows["rnnflow"]
                for name, (c, r) in rows.items():
                    ratio = "" if name == "rnnflow" else f"compile {c / c0:.2f}, run {r / r0:.2f}"
                    print(
                        f"{model:<8} {method:<6} {seeds:>5}  {name:<13} {c:8.2f} {r:8.2f}  {ratio}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
