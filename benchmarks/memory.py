"""Peak memory against the number of seeds, with and without chunking.

Case: diagonal student d = 100, impulse loss with k = 10 (teacher 0.9^i + 0.5 (-0.5)^i),
float32, `GradientDescent(lr=0.01, num_steps=200)`, `Save(num=2)` (the default metrics),
init scale 0.1/√d. For S = 10^3, 10^4, 10^5 seeds, `train_seeds` runs in two modes:

- `chunked`: `lanes=1024, chunk_size=10_000` (10 240 seeds per chunk; finished chunks are
  moved to host memory);
- `all at once`: `lanes=S, chunk_size=None` (every seed vmapped side by side in one call).

Each (S, mode) runs in a fresh subprocess (this script with `--child`), so each peak is its
own. The child generates its parameters with `init_seeds` and reports:

- peak RSS (`getrusage` ru_maxrss) after imports and JAX start-up (the baseline) and at the
  end; "above baseline" is their difference;
- the exact bytes of the inputs (the initial parameters) and outputs (every leaf of the
  returned `Trajectory`), from the arrays' `nbytes`;
- "working" memory: above baseline minus inputs + outputs, i.e. what the run needed beyond
  holding its inputs and results once;
- on an accelerator, `memory_stats()["peak_bytes_in_use"]` of the first device.

The ratios printed are the peaks at the largest S over those at the S below it (10^5 / 10^4;
with `--quick`, 10^4 / 10^3), per mode. A run whose peak, extrapolated linearly from the S
below, would exceed 80% of the memory available is skipped and said so.

    python benchmarks/memory.py [--quick] [--seeds 1000 10000 100000] [--steps 200] [--json F]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MODES = {
    "chunked": dict(lanes=1024, chunk_size=10_000),
    "all at once": dict(lanes=None, chunk_size=None),  # lanes = S
}
D, K, LR = 100, 10, 0.01


def _maxrss_bytes():
    # KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child(seeds, mode, steps):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import rnnflow as rf

    device = jax.devices()[0]
    jax.block_until_ready(jnp.zeros(1) + 1)  # the backend is up
    baseline = _maxrss_bytes()

    model = rf.DiagonalRNN(D)
    loss = rf.ImpulseLoss(rf.modes_teacher([0.9, -0.5], [1.0, 0.5]), train_len=K)
    keys = jax.random.split(jax.random.key(0), seeds)
    params = rf.init_seeds(model, keys, scale=0.1 / np.sqrt(D), dtype=jnp.float32)
    jax.block_until_ready(params)
    inputs = sum(x.nbytes for x in jax.tree.leaves(params))
    kw = dict(MODES[mode])
    kw["lanes"] = kw["lanes"] or seeds
    start = time.perf_counter()
    traj = rf.train_seeds(
        loss.bind(model), params, rf.GradientDescent(LR, steps), save=rf.Save(num=2), **kw
    )
    jax.block_until_ready(traj)
    seconds = time.perf_counter() - start
    outputs = sum(x.nbytes for x in jax.tree.leaves(traj))
    peak = _maxrss_bytes()
    stats = device.memory_stats()
    finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(traj.metrics))
    return dict(
        seeds=seeds,
        mode=mode,
        steps=steps,
        baseline_rss=baseline,
        peak_rss=peak,
        above_baseline=peak - baseline,
        inputs=inputs,
        outputs=outputs,
        working=peak - baseline - inputs - outputs,
        device_peak=None if stats is None else stats.get("peak_bytes_in_use"),
        seconds=seconds,
        summary=traj.summary(),
        finite=finite,
        device=str(device),
        device_kind=device.device_kind,
    )


def _available():
    """MemAvailable from /proc/meminfo in bytes, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _estimate(rows, seeds, mode):
    """Peak RSS extrapolated linearly in S from the largest S already run in `mode`."""
    done = [r for r in rows if r["mode"] == mode and r["seeds"] < seeds]
    if not done:
        return None
    r = max(done, key=lambda r: r["seeds"])
    return r["baseline_rss"] + r["above_baseline"] * seeds / r["seeds"]


def _mib(b):
    return "-" if b is None else f"{b / 2**20:8.1f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="S = 10^3, 10^4 and 50 steps")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--steps", type=int)
    p.add_argument("--json", help="write results to this file")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # SEEDS MODE STEPS
    args = p.parse_args()
    if args.child:
        seeds, mode, steps = args.child
        print(json.dumps(child(int(seeds), mode, int(steps))))
        return

    seeds = args.seeds or ([1000, 10_000] if args.quick else [1000, 10_000, 100_000])
    steps = args.steps or (50 if args.quick else 200)
    rows, skipped = [], []
    for s in seeds:
        for mode in MODES:
            need = _estimate(rows, s, mode)
            available = _available()
            if need and available and need > 0.8 * available:
                skipped.append(dict(seeds=s, mode=mode, estimate=need, available=available))
                print(
                    f"{s:>7} {mode:<12} skipped: would need about {need / 2**30:.1f} GiB "
                    f"(extrapolated from the S below), {available / 2**30:.1f} GiB available",
                    flush=True,
                )
                continue
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", str(s), mode, str(steps)],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if len(rows) == 1:
                print(
                    f"device: {rows[0]['device_kind']} ({rows[0]['device']}), diagonal d={D}, "
                    f"k={K}, float32, GD {steps} steps, Save(num=2); MiB"
                )
                print(
                    f"{'S':>7} {'mode':<12} {'peak RSS':>9} {'baseline':>9} {'above':>9} "
                    f"{'in+out':>9} {'working':>9} {'device peak':>11} {'time':>7}  result"
                )
            r = rows[-1]
            print(
                f"{s:>7} {mode:<12} {_mib(r['peak_rss']):>9} {_mib(r['baseline_rss']):>9} "
                f"{_mib(r['above_baseline']):>9} {_mib(r['inputs'] + r['outputs']):>9} "
                f"{_mib(r['working']):>9} {_mib(r['device_peak']):>11} {r['seconds']:6.1f}s  "
                f"{r['summary']}{'' if r['finite'] else ' NON-FINITE'}",
                flush=True,
            )

    ratios = {}
    if len(seeds) >= 2:
        lo, hi = seeds[-2], seeds[-1]
        print(f"\nratio of peaks, S={hi} / S={lo}:")
        for mode in MODES:
            a = next((r for r in rows if r["seeds"] == lo and r["mode"] == mode), None)
            b = next((r for r in rows if r["seeds"] == hi and r["mode"] == mode), None)
            if a is None or b is None:
                print(f"  {mode:<12} not measured")
                continue
            ratios[mode] = {
                key: b[key] / a[key] if a[key] else None
                for key in ("peak_rss", "above_baseline", "working", "device_peak")
                if a[key] is not None
            }
            parts = [f"{k.replace('_', ' ')} {v:5.2f}x" for k, v in ratios[mode].items() if v]
            print(f"  {mode:<12} " + ", ".join(parts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(steps=steps, rows=rows, skipped=skipped, ratios=ratios), f, indent=1)


if __name__ == "__main__":
    main()
