"""Sharpness: the cost of one saved point of `sharpness_metric` against one gradient step.

For S seeds of a student on the impulse loss (diagonal d = 40 and dense d = 20, k = 10,
float32), in the same process: the time of the top Hessian eigenvalue (k = 1, Lanczos
with the default iterations, min(n, 40)) for every seed at once, vmapped and compiled, and
the time per step of plain gradient descent on the same seeds (`train_seeds`, 500 steps,
divided by 500). Reported: both, and their ratio (gradient steps per saved point of
sharpness). Best of 5 after one compiling call.

    python benchmarks/sharpness.py [--quick] [--seeds 1000] [--json F]
"""

import argparse
import json
import time

import jax
import numpy as np

import rnnflow as rf


def best(fn, repeats=5):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int)
    p.add_argument("--json")
    args = p.parse_args()
    seeds = args.seeds or (100 if args.quick else 1000)
    steps = 100 if args.quick else 500
    teacher = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
    print(f"device: {jax.devices()[0].device_kind}; {seeds} seeds, float32")
    rows = []
    for model in (rf.DiagonalRNN(40), rf.DenseRNN(20)):
        loss_fn = rf.ImpulseLoss(teacher, 10).bind(model)
        keys = jax.random.split(jax.random.key(0), seeds)
        params = rf.init_seeds(model, keys, scale=0.1 / np.sqrt(model.state_dim))
        sharp = jax.jit(jax.vmap(lambda q: rf.hessian_eigenvalues(loss_fn, q, k=1)))
        t_sharp = best(lambda: sharp(params))
        method = rf.GradientDescent(0.01, steps)
        t_gd = best(lambda: rf.train_seeds(loss_fn, params, method, save=rf.Save(num=2))) / steps
        row = dict(
            model=f"{type(model).__name__} d={model.state_dim}",
            sharpness_s=t_sharp,
            gd_step_s=t_gd,
            steps_per_point=t_sharp / t_gd,
        )
        rows.append(row)
        print(
            f"  {row['model']:<16} sharpness {t_sharp * 1e3:8.2f} ms   GD step "
            f"{t_gd * 1e3:8.3f} ms   ratio {row['steps_per_point']:7.1f} steps",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(seeds=seeds, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
