"""Sequential (`lax.scan`) against associative (`lax.associative_scan`) linear recurrences.

Forward + backward (the gradient of a sum of squared states) of s_t = A s_{t-1} + u_t for a
batch of sequences, diagonal A (d = 256) and dense A (d = 16), over sequence lengths T.
Both scans run in the same process on the same inputs; the ratio is sequential time over
associative time (> 1: the associative scan is faster). Also prints which one `scan="auto"`
picks, so the default can be checked against the measurement.

The memory-bandwidth floor is the time to read the inputs u and write their gradient once
(2 · batch · T · d floats) at the bandwidth the device reaches, in the same process, on a
large elementwise copy-and-scale (`device_peaks.bandwidth`). `assoc/floor` is the
associative scan's time over that floor; an implementation that stores the states and
reads them back in the backward pass moves at least twice as much.

    python benchmarks/scan.py [--quick] [--batch 16] [--lengths 100 1000 10000 100000] [--json F]
"""

import argparse
import json

import jax
import jax.numpy as jnp
from device_peaks import bandwidth, best_time

import rnnflow as rf
from rnnflow._rnn.scan import resolve_scan


def _loss_grad(scan):
    def loss(a, u):
        return jnp.sum(jax.vmap(scan, in_axes=(None, 0))(a, u) ** 2)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lengths", type=int, nargs="+")
    p.add_argument("--json", help="write results to this file")
    args = p.parse_args()
    lengths = args.lengths or ([100, 1000] if args.quick else [100, 1000, 10_000, 100_000])
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), batch {args.batch}")
    key = jax.random.key(0)
    bw = bandwidth(1 << 26 if args.quick else 1 << 28)
    print(f"bandwidth (2 * x, read + write): {bw / 1e9:.1f} GB/s")
    rows = []
    seq, assoc = _loss_grad(rf.sequential_scan), _loss_grad(rf.associative_scan)
    for name, a in {
        "diagonal d=256": 0.99 * jax.random.uniform(key, (256,)),
        "dense d=16": 0.9 * jnp.linalg.qr(jax.random.normal(key, (16, 16)))[0],
    }.items():
        for T in lengths:
            u = jax.random.normal(key, (args.batch, T, a.shape[0]))
            ts, ta = best_time(seq, a, u), best_time(assoc, a, u)
            auto = resolve_scan("auto", a, T)
            floor = 2 * u.size * u.dtype.itemsize / bw
            rows.append(
                dict(a=name, T=T, sequential_s=ts, associative_s=ta, floor_s=floor, auto=auto)
            )
            print(
                f"{name:<15} T={T:<7} sequential {ts * 1e3:9.2f} ms  associative {ta * 1e3:9.2f} ms"
                f"  ratio {ts / ta:6.2f}  assoc/floor {ta / floor:7.1f}  auto -> {auto}"
            )
    if args.json:
        with open(args.json, "w") as f:
            out = dict(device=str(jax.devices()[0]), batch=args.batch, bandwidth=bw, rows=rows)
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
