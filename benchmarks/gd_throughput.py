"""Gradient-descent throughput (seed-steps per second) on the impulse loss.

Measures `rnnflow.train_seeds` with `GradientDescent` (plain SGD) against, in the same
process, on the same device and from the same initial parameters:

- `torch-batched`: the same maths in PyTorch with the seeds as a batch dimension (eager,
  `torch.optim.SGD`), which is what one would write by hand;
- `torch-loop`: a per-seed PyTorch training loop (timed on a few seeds, reported per seed);
- `jax-loop`: `rnnflow.train` called seed after seed (one compiled step loop, no vmap);
- `generic`: rnnflow's generic path (`kernel="generic"`: autodiff, vmapped seed by seed),
  for the diagonal student, where the default is the fused closed-form step; and on an
  accelerator `pallas`, the fused step as one Pallas kernel (`kernel="pallas"`);
- `wide`: for the dense student on a CPU, up to 1024 seeds side by side (`lanes`), against
  the default's narrower blocks, whose matrices stay in cache.

Compile time (first call minus second) is reported apart from run time. Every baseline is
checked to reach the same final loss as rnnflow before its time is reported. A kernel that
fails to compile or run is reported and skipped; the other measurements go on.

Roofline: each row also gives rnnflow's arithmetic rate against the device's measured peak
of fused elementwise multiply-adds (`device_peaks.py`, same process), from the flops of one
seed-step (`flops_per_seed_step`, counted by XLA), and the bound a step would meet if it
read and wrote every parameter once per step at the measured bandwidth
(`roundtrip_bytes`): a step that keeps the parameters on chip across steps is bound by
flops only.

    python benchmarks/gd_throughput.py [--quick] [--seeds 10 100 1000] [--steps 2000]
        [--cases diagonal dense]
"""

import argparse
import json
import platform
import time

import jax
import numpy as np
from device_peaks import bandwidth, elementwise_flops

import rnnflow as rf
from rnnflow import _fused

CASES = {"diagonal": dict(d=100, k=10), "dense": dict(d=32, k=10)}
LR = 0.01
SCALE = 0.1


def flops_per_seed_step(kind, model, loss):
    """Flops of one gradient-descent step of one seed, as XLA's cost analysis counts them
    in the step as traced (before fusion, which may recompute some): the fused closed-form
    step for the diagonal student, (6k + 7)d plus a few per-seed scalars
    (`rnnflow/_fused.py`), and the autodiff step for the dense one, about 7kd² (the
    running matrix-vector products forward, and backward two products for each and the
    sum of the transition matrix's gradient)."""
    params = model.init(key=jax.random.key(0), scale=SCALE)
    if kind == "diagonal":
        y = [float(x) for x in loss.target[:, 0, 0]]

        def step(p):
            value, grads = _fused.value_and_grad(p.a, p.b[:, 0], p.c[0], y)
            return value, [x - LR * g for x, g in zip((p.a, p.b[:, 0], p.c[0]), grads)]
    else:

        def step(p):
            value, grads = jax.value_and_grad(lambda p: loss(model, p))(p)
            return value, jax.tree.map(lambda x, g: x - LR * g, p, grads)

    cost = jax.jit(step).lower(params).cost_analysis()
    return int((cost[0] if isinstance(cost, list) else cost)["flops"])


def roundtrip_bytes(kind, d, itemsize=4):
    """Bytes to read and write every parameter of one seed once (a, b, c)."""
    return 2 * itemsize * (3 * d if kind == "diagonal" else d * d + 2 * d)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


def rnnflow_run(model, loss, params, steps, kernel="auto", lanes=None):
    method = rf.GradientDescent(LR, steps, kernel=kernel)
    save = rf.Save(num=2, metrics={"loss": lambda t, p: loss(model, p)})

    def run():
        return rf.train_seeds(loss.bind(model), params, method, save=save, lanes=lanes)

    _, first = _timed(run)
    traj, second = _timed(run)
    return traj, second, first - second


def torch_device(torch):
    """The device PyTorch runs on: the GPU when JAX runs on one too, so that both compete
    on the same hardware."""
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def torch_batched(kind, params, target, steps, torch):
    device = torch_device(torch)
    a, b, c = (torch.tensor(np.asarray(x), device=device).requires_grad_() for x in params)
    target = torch.tensor(np.asarray(target), device=device)
    opt = torch.optim.SGD([a, b, c], lr=LR)

    def loss_fn():
        # Running products A^i B: the same O(k) work as rnnflow's scan.
        m, total = b, 0.0
        for i in range(target.shape[0]):
            h = (c * m).sum(-1)
            total = total + ((h - target[i]) ** 2)
            m = a * m if kind == "diagonal" else torch.bmm(a, m[..., None])[..., 0]
        return total  # (seeds,)

    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().sum().backward()  # seeds are independent: the sum gives each its own gradient
        opt.step()
    sync()
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        return loss_fn().cpu().numpy(), elapsed


def squeeze(kind, params):
    # (seeds, d[, d]), (seeds, d), (seeds, d) for single input and output.
    return params.a, params.b[..., 0], params.c[:, 0, :]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, under a minute on a CPU")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--steps", type=int)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--json", help="write results to this file")
    args = p.parse_args()
    seeds = args.seeds or ([100] if args.quick else [10, 100, 1000])
    steps = args.steps or (500 if args.quick else 2000)
    try:
        import torch
    except ImportError:  # the PyTorch baselines are skipped, the rest is measured
        torch = None
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({jax.default_backend()}), "
        f"{platform.processor() or platform.machine()}"
    )
    if torch is None:
        print(f"torch not installed: its baselines are skipped; jax {jax.__version__}")
    else:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        print(
            f"torch {torch.__version__} on {torch_device(torch)} "
            f"threads={torch.get_num_threads()}, jax {jax.__version__}, steps={steps}"
        )
    bw, peak = bandwidth(), elementwise_flops()
    print(
        f"measured: bandwidth {bw / 1e9:.1f} GB/s (read + write), elementwise multiply-add "
        f"{peak / 1e9:.1f} GFLOP/s (float32)"
    )
    teacher = rf.modes_teacher([0.9, -0.5], [1.0, 0.5])
    rows = []
    for kind in args.cases:
        case = CASES[kind]
        model = rf.make_model(kind, case["d"])
        loss = rf.ImpulseLoss(teacher, case["k"])
        target = np.asarray(loss.target[:, 0, 0], dtype=np.float32)
        flops, nbytes = flops_per_seed_step(kind, model, loss), roundtrip_bytes(kind, case["d"])
        for s in seeds:
            keys = jax.random.split(jax.random.key(0), s)
            params = rf.init_seeds(model, keys, scale=SCALE / np.sqrt(case["d"]))
            traj, run_s, compile_s = rnnflow_run(model, loss, params, steps)
            ours = np.asarray(traj.metrics["loss"][:, -1])
            kernels = {}
            if kind == "diagonal":  # where the fused step applies: the other kernels
                others = ["generic"] + (["pallas"] if jax.default_backend() != "cpu" else [])
                for kernel in others:
                    try:
                        t, s_k, _ = rnnflow_run(model, loss, params, steps, kernel)
                    except Exception as e:  # e.g. a kernel the device's compiler rejects
                        print(f"kernel={kernel!r} failed, skipped: {type(e).__name__}: {e}")
                        continue
                    np.testing.assert_allclose(t.metrics["loss"][:, -1], ours, rtol=2e-3)
                    kernels[kernel] = s_k
            elif jax.default_backend() == "cpu" and not args.quick:  # narrower by default
                t, s_k, _ = rnnflow_run(model, loss, params, steps, lanes=min(s, 1024))
                np.testing.assert_allclose(t.metrics["loss"][:, -1], ours, rtol=2e-3)
                kernels["wide"] = s_k
            n_loop = min(s, 3)
            tb_s = tl_s = np.nan
            if torch is not None:
                tb_loss, tb_s = torch_batched(kind, squeeze(kind, params), target, steps, torch)
                np.testing.assert_allclose(tb_loss, ours, rtol=2e-3, atol=1e-6)
                t0 = time.perf_counter()
                for i in range(n_loop):
                    one = squeeze(kind, jax.tree.map(lambda x: x[i : i + 1], params))
                    torch_batched(kind, one, target, steps, torch)
                tl_s = (time.perf_counter() - t0) / n_loop * s
            method = rf.GradientDescent(LR, steps)
            first = jax.tree.map(lambda x: x[0], params)
            rf.train(loss.bind(model), first, method, save=rf.Save(num=2))  # compile
            t0 = time.perf_counter()
            for i in range(n_loop):
                jax.block_until_ready(
                    rf.train(
                        loss.bind(model),
                        jax.tree.map(lambda x: x[i], params),
                        method,
                        save=rf.Save(num=2),
                    )
                )
            jl_s = (time.perf_counter() - t0) / n_loop * s
            rate = s * steps / run_s
            row = dict(
                case=kind,
                d=case["d"],
                k=case["k"],
                seeds=s,
                steps=steps,
                rnnflow_seed_steps_per_s=rate,
                rnnflow_compile_s=compile_s,
                vs_torch_batched=tb_s / run_s,
                vs_torch_loop=tl_s / run_s,
                vs_jax_loop=jl_s / run_s,
                **{f"vs_{k}": t / run_s for k, t in kernels.items()},
                flops_per_seed_step=flops,
                of_elementwise_peak=rate * flops / peak,
                compute_bound=peak / flops,
                roundtrip_bytes=nbytes,
                roundtrip_bound=bw / nbytes,
            )
            rows.append(row)
            print(
                f"{kind:>8} d={case['d']:<3} S={s:<6} rnnflow {rate:9.3g} seed-steps/s "
                f"(compile {compile_s:4.1f}s) | speed-up vs torch-batched "
                f"{row['vs_torch_batched']:6.1f}x"
                f", torch-loop {row['vs_torch_loop']:7.1f}x, jax-loop {row['vs_jax_loop']:6.1f}x"
                + "".join(f", {k} {t / run_s:5.2f}x" for k, t in kernels.items())
            )
            print(
                f"{'':>8} roofline: {flops} flops/seed-step, {rate * flops / 1e9:.1f} GFLOP/s = "
                f"{row['of_elementwise_peak']:.1%} of peak; bounds {row['compute_bound']:.3g} "
                f"seed-steps/s (flops), {row['roundtrip_bound']:.3g} (parameters read and "
                f"written every step, {nbytes} bytes)",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            out = dict(device=str(device), bandwidth=bw, elementwise_flops=peak, rows=rows)
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
