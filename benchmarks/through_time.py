"""Gradient descent on a sequence loss: the gradient by backpropagation through time written
out (what `SequenceLoss.bind` offers a tanh or dense student) against autodiff of the model
(`kernel="generic"`), in one process, taking turns; and the same with 128 seeds side by
side on each device instead of the default's blocks sized to the cache.

The case is the nonlinear experiment's full configuration: a tanh student d = 20 on 256
sequences of 5 steps, every output supervised, float32, and the linear `DenseRNN` on the
same loss. Both run through `rnnflow.train_seeds` with one JAX CPU device per core; each
time is the median of `--repeats` runs of `--steps` steps after a first (compiling) run.
The final parameters of the two are compared (they agree to float32 rounding).

    python benchmarks/through_time.py [--seeds 256] [--steps 500] [--repeats 3]
"""

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import rnnflow as rf


def _median_time(fn, repeats):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return times, out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=256)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    n = rf.use_cpu_cores()
    from rnnflow.experiments import _common
    from rnnflow.experiments.nonlinear import NonlinearConfig

    c = NonlinearConfig()
    print(f"{platform.machine()}, {n} JAX CPU devices, jax {jax.__version__}, float32")
    print(f"{args.seeds} seeds, {args.steps} steps, median of {args.repeats}")
    teacher = _common.teacher(c.teacher)
    xs = c.input_scale * jax.random.normal(jax.random.key(1), (c.num_sequences, c.train_len, 1))
    loss = rf.SequenceLoss(teacher, xs, supervise=c.supervise)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    save = rf.Save(num=2)
    for model in (rf.TanhRNN(c.state_dim), rf.DenseRNN(c.state_dim)):
        loss_fn = loss.bind(model)
        params = rf.init_seeds(model, keys, scale=1e-2)

        def train(kernel, lanes=None):
            method = rf.GradientDescent(c.lr, args.steps, kernel=kernel)
            return lambda: rf.train_seeds(loss_fn, params, method, save=save, lanes=lanes).final

        # The default lanes, and the 128 a device that the default chose before it sized
        # blocks by the gradient's values (`--seeds 256` on two devices).
        runs = {"auto": train("auto"), "generic": train("generic"), "wide": train("auto", 128)}
        times = {kernel: [] for kernel in runs}
        finals = {}
        for _ in range(2):  # taking turns
            for kernel, fn in runs.items():
                t, finals[kernel] = _median_time(fn, args.repeats)
                times[kernel] += t
        med = {kernel: statistics.median(t) for kernel, t in times.items()}
        rate = {kernel: args.seeds * args.steps / t for kernel, t in med.items()}
        diff = max(
            float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y)))
            for x, y in zip(jax.tree.leaves(finals["auto"]), jax.tree.leaves(finals["generic"]))
        )
        name = f"{type(model).__name__} d={c.state_dim}"
        print(
            f"{name}: through time {rate['auto']:.3g} seed-steps/s, autodiff "
            f"{rate['generic']:.3g}: {med['generic'] / med['auto']:.2f}×; final parameters "
            f"differ by {diff:.1e} (relative); 128 lanes a device: {rate['wide']:.3g} "
            f"({med['wide'] / med['auto']:.2f}× the default's time)",
            flush=True,
        )
        if isinstance(model, rf.TanhRNN):
            total = len(c.scales) * 1000 * round(c.t1 / c.lr)
            hours = {kernel: total / r / 3600 for kernel, r in rate.items()}
            print(
                f"  the nonlinear experiment at 1000 seeds per scale ({total:.3g} seed-steps): "
                f"{hours['auto']:.1f} h (autodiff {hours['generic']:.1f} h)"
            )


if __name__ == "__main__":
    main()
