"""Stalled seeds: how long a batch with hopeless seeds takes, with and without the stall rule.

Dense students d = 20 on the impulse loss (k = 5, teacher 0.9^i), gradient flow with Tsit5
(PID, rtol 1e-6) to t1 = 200, `max_steps` = 10^5, float32, in one batch: `--healthy`
seeds from the entry scale 0.9/√d (they converge) and, for each multiple m of that scale
(default 8, 15, 30), `--per-scale` seeds from m · 0.9/√d, where Tsit5's step size
collapses and, without the rule, every such seed runs to `max_steps`. The same batch is
run twice in this process, with `GradientFlow(stall=1000.0)` (the default) and with
`stall=None`; reported: wall time of each (compile excluded: each is run once to compile),
the ratio, the result codes and the steps the slowest seed took.

    python benchmarks/stalls.py [--quick] [--json F]
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import rnnflow as rf

D = 20


def batch(healthy: int, per_scale: int, multiples):
    scales = [1.0] * healthy + [m for m in multiples for _ in range(per_scale)]
    keys = jax.random.split(jax.random.key(0), len(scales))
    model = rf.DenseRNN(D)
    unit = rf.init_seeds(model, keys, scale=1.0)
    col = jnp.asarray(scales) * 0.9 / np.sqrt(D)
    params = jax.tree.map(lambda x: x * col.reshape((-1,) + (1,) * (x.ndim - 1)), unit)
    loss_fn = rf.ImpulseLoss(rf.modes_teacher([0.9], [1.0]), 5).bind(model)
    return loss_fn, params


def timed(loss_fn, params, method):
    def run():
        return rf.train_seeds(loss_fn, params, method, save=rf.Save(num=3))

    jax.block_until_ready(run())  # compile
    start = time.perf_counter()
    traj = jax.block_until_ready(run())
    return traj, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="max_steps 2·10^4, one multiple")
    p.add_argument("--healthy", type=int, default=4)
    p.add_argument("--per-scale", type=int, default=4)
    p.add_argument("--json")
    args = p.parse_args()
    max_steps = 20_000 if args.quick else 100_000
    multiples = (8.0,) if args.quick else (8.0, 15.0, 30.0)
    loss_fn, params = batch(args.healthy, args.per_scale, multiples)
    print(f"device: {jax.devices()[0].device_kind}; {len(params.a)} seeds, max_steps {max_steps}")
    rows = {}
    for name, stall in (("stall rule", 1000.0), ("no rule", None)):
        method = rf.GradientFlow(200.0, max_steps=max_steps, stall=stall)
        traj, secs = timed(loss_fn, params, method)
        rows[name] = dict(
            seconds=secs,
            summary=traj.summary(),
            most_steps=int(jnp.max(traj.num_steps)),
            healthy_steps=int(jnp.max(traj.num_steps[: args.healthy])),
        )
        print(f"  {name:<11} {secs:8.2f} s  {rows[name]}", flush=True)
    ratio = rows["stall rule"]["seconds"] / rows["no rule"]["seconds"]
    print(f"batch time with the rule: {ratio:.3f} of the time without it")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, ratio=ratio, max_steps=max_steps), f, indent=1)


if __name__ == "__main__":
    main()
