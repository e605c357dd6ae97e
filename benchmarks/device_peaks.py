"""The device's measured peaks, the roofs that the other scripts' times are read against.

- `bandwidth`: bytes per second read plus written by `2 * x` on a large float32 array (one
  elementwise pass: the speed at which a kernel streams its inputs and outputs).
- `elementwise_flops`: floating-point operations per second of fused elementwise work:
  eight independent chains of 128 multiply-adds `x = x * a + b` per element of a large
  array, compiled by XLA into one kernel. It is the roof for the fused gradient step,
  which is elementwise arithmetic; matrix units (tensor cores) do not apply to it.
- `matmul_flops`: floating-point operations per second of one large square matrix product
  (2n³ flops for n × n; n = 2048 on a CPU, 4096 on an accelerator) at full float32
  precision (`precision="highest"`: no TF32 or bfloat16 passes on a GPU): the machine's
  peak as matrix libraries reach it, which elementwise work can approach but not pass.

All are the best of several runs after compiling, on the default device, in the dtype
given. Run as a script, it prints all three.

    python benchmarks/device_peaks.py [--dtype float32] [--json F]
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp


def best_time(fn, *args, repeat=5):
    """The shortest of `repeat` runs of `fn(*args)`, after one run to compile it."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def bandwidth(nbytes=1 << 28):
    """Bytes per second read plus written by `2 * x` on a float32 array of `nbytes`."""
    x = jnp.ones(nbytes // 4, jnp.float32)
    return 2 * nbytes / best_time(jax.jit(lambda x: 2 * x), x)


# Eight chains: enough independent multiply-adds in flight to hide their latency on a CPU
# core (four measured 0.65x eight on AVX-512; sixteen spill registers).
_CHAINS, _DEPTH = 8, 128


def elementwise_flops(dtype=jnp.float32, size=None):
    """Flops per second of fused multiply-adds, `size` elements of `dtype` (default: 2^20
    on a CPU, 2^24 on an accelerator), each running `_CHAINS` independent chains."""
    size = size or (1 << 20 if jax.default_backend() == "cpu" else 1 << 24)
    x = jnp.linspace(0, 1, size, dtype=dtype)

    def chains(x, a, b):  # a and b are arguments, so nothing folds into constants
        xs = [x + i for i in range(_CHAINS)]
        for _ in range(_DEPTH):
            xs = [xi * a + b for xi in xs]
        return sum(xs)

    a, b = jnp.asarray(0.999, dtype), jnp.asarray(1e-3, dtype)
    return 2 * _CHAINS * _DEPTH * size / best_time(jax.jit(chains), x, a, b)


def matmul_flops(dtype=jnp.float32, n=None):
    """Flops per second of an `n` × `n` matrix product in `dtype` (default n: 2048 on a
    CPU, 4096 on an accelerator), at the highest precision."""
    n = n or (2048 if jax.default_backend() == "cpu" else 4096)
    x = jax.random.normal(jax.random.key(0), (n, n), dtype)
    matmul = jax.jit(lambda x, y: jnp.matmul(x, y, precision="highest"))
    return 2 * n**3 / best_time(matmul, x, x.T)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--json", help="write results to this file")
    args = p.parse_args()
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    bw = bandwidth()
    print(f"bandwidth (2 * x, read + write): {bw / 1e9:.1f} GB/s")
    flops = elementwise_flops(jnp.dtype(args.dtype))
    print(f"elementwise multiply-add ({args.dtype}): {flops / 1e9:.1f} GFLOP/s")
    mm = matmul_flops(jnp.dtype(args.dtype))
    print(f"matrix product ({args.dtype}): {mm / 1e9:.1f} GFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            out = dict(device=str(jax.devices()[0]), dtype=args.dtype, bandwidth=bw)
            json.dump(dict(out, elementwise_flops=flops, matmul_flops=mm), f, indent=1)


if __name__ == "__main__":
    main()
