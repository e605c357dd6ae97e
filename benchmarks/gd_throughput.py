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
- `wide`: for the dense student on a CPU, up to 1024 seeds side by side on each device
  (`lanes`: every seed in one block, unpadded), against the default's narrower blocks,
  whose matrices stay in cache.

rnnflow's default and `torch-batched` are timed `--repeats` times each (default 5), taking
turns so that drift in the machine's speed hits both alike, and compared by their median
times; so are, beside them, the same runs through optax (`optax.sgd`, `optax.sgd` with
momentum 0.9 at a tenth of the rate, `optax.adam`), reported as time per step over the
default's. The other baselines are timed once. Compile time (first call minus the median)
is reported apart from run time. Every baseline is checked to reach the same final loss as
rnnflow (momentum and adam, other algorithms, to reach a finite one) before its time is
reported. A kernel that fails to compile or run is reported and skipped; the other
measurements go on.

`--cpu-devices N` makes JAX split the CPU into N devices before anything else runs, and
rnnflow shards the seeds over all of them (`train_seeds(devices=jax.devices())`).

Roofline: each row also gives rnnflow's arithmetic rate against the device's measured peaks
of fused elementwise multiply-adds and of a large matrix product (`device_peaks.py`, same
process), from the flops of one seed-step (`flops_per_seed_step`, counted by XLA), with
the number of kernels (XLA fusions) that one step of all the seeds compiles to, and the
bound a step would meet if it read and wrote every parameter once per step at the measured
bandwidth (`roundtrip_bytes`): a step that keeps the parameters on chip across steps is
bound by flops only.

    python benchmarks/gd_throughput.py [--quick] [--seeds 10 100 1000] [--steps 2000]
        [--cases diagonal dense] [--repeats 5] [--cpu-devices N]
"""

import argparse
import functools
import json
import platform
import re
import time

import jax
import numpy as np
import optax
from device_peaks import bandwidth, elementwise_flops, matmul_flops

import rnnflow as rf
from rnnflow._rnn import fused as _fused

CASES = {"diagonal": dict(d=100, k=10), "dense": dict(d=32, k=10)}
LR = 0.01
SCALE = 0.1


# (rate, optax factory). Heavy-ball momentum β = 0.9 at rate (1 - β)·LR: the same long-run
# step as plain SGD (at LR itself, ten times that, most seeds diverge within 500 steps).
OPTAX = {
    "sgd": (LR, optax.sgd),
    "momentum": (LR * (1 - 0.9), functools.partial(optax.sgd, momentum=0.9)),
    "adam": (LR, optax.adam),
}


def gd_step(kind, model, loss):
    """One gradient-descent step of one seed, `params -> (loss, new params)`: the fused
    closed-form step for the diagonal student, the autodiff step for the dense one."""
    if kind == "diagonal":
        y = [float(x) for x in loss.target[:, 0, 0]]

        def step(p):
            value, grads = _fused.value_and_grad(p.a, p.b[:, 0], p.c[0], y)
            return value, [x - LR * g for x, g in zip((p.a, p.b[:, 0], p.c[0]), grads)]
    else:

        def step(p):
            value, grads = jax.value_and_grad(lambda p: loss(model, p))(p)
            return value, jax.tree.map(lambda x, g: x - LR * g, p, grads)

    return step


def flops_per_seed_step(kind, model, loss):
    """Flops of one gradient-descent step of one seed, as XLA's cost analysis counts them
    in the step as traced (before fusion, which may recompute some): for the diagonal
    student's fused step (6k + 7)d plus a few per-seed scalars (`rnnflow/_rnn/fused.py`), for
    the dense student's autodiff step about 7kd² (the running matrix-vector products
    forward, and backward two products for each and the sum of the transition matrix's
    gradient)."""
    params = model.init(key=jax.random.key(0), scale=SCALE)
    cost = jax.jit(gd_step(kind, model, loss)).lower(params).cost_analysis()
    return int((cost[0] if isinstance(cost, list) else cost)["flops"])


def kernels_per_step(model, loss, params):
    """The kernels (XLA fusions, copies, matrix products) in the body of the compiled loop of
    gradient-descent steps over the seeds of `params`, as rnnflow runs it by default: each
    a pass over the seeds' arrays and, on an accelerator, a launch."""
    method = rf.GradientDescent(LR, 2)
    run = jax.vmap(lambda p: rf.train(loss.bind(model), p, method, save=rf.Save(num=2)).final)
    hlo = jax.jit(run).lower(params).compile().as_text()
    comps = dict(re.findall(r"^%(\S+) .*? \{\n(.*?)\n\}", hlo, re.M | re.S))
    bodies = [comps[name] for name in re.findall(r"body=%([\w.-]+)", hlo)]
    kernel = r"^\s*(?:ROOT )?%\S+ = .*? (?:fusion|copy|dot|custom-call)\("
    # The step loop is the innermost: the loop over saves holds it.
    return max(len(re.findall(kernel, b, re.M)) for b in bodies if " while(" not in b)


def roundtrip_bytes(kind, d, itemsize=4):
    """Bytes to read and write every parameter of one seed once (a, b, c)."""
    return 2 * itemsize * (3 * d if kind == "diagonal" else d * d + 2 * d)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


def rnnflow_runner(model, loss, params, steps, kernel="auto", lanes=None, optimizer=(LR, None)):
    """A function that trains the seeds of `params` (by `optimizer`, a rate and an optax
    factory), returning (trajectory, seconds)."""
    method = rf.GradientDescent(optimizer[0], steps, optimizer=optimizer[1], kernel=kernel)
    save = rf.Save(num=2, metrics={"loss": lambda t, p: loss(model, p)})
    bound = loss.bind(model)
    devices = jax.devices()
    return lambda: _timed(
        lambda: rf.train_seeds(bound, params, method, save=save, lanes=lanes, devices=devices)
    )


def rnnflow_run(*args, **kwargs):
    """Trained once to compile, then timed once: (trajectory, seconds)."""
    run = rnnflow_runner(*args, **kwargs)
    run()
    return run()


def alternate(runs, repeats):
    """Each of `runs` (name -> function returning (output, seconds)) called `repeats` times,
    taking turns: their median seconds, and their last outputs."""
    times, outs = {name: [] for name in runs}, {}
    for _ in range(repeats):
        for name, run in runs.items():
            outs[name], t = run()
            times[name].append(t)
    return {name: float(np.median(t)) for name, t in times.items()}, outs


def final_loss(traj):
    return np.asarray(traj.metrics["loss"][:, -1])


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
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each, for the median")
    p.add_argument("--cpu-devices", type=int, help="split the CPU into this many devices")
    p.add_argument("--json", help="write results to this file")
    args = p.parse_args()
    if args.cpu_devices:  # before any JAX operation
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    seeds = args.seeds or ([100] if args.quick else [10, 100, 1000])
    steps = args.steps or (500 if args.quick else 2000)
    try:
        import torch
    except ImportError:  # the PyTorch baselines are skipped, the rest is measured
        torch = None
    devices = jax.devices()
    device = devices[0]
    print(
        f"device: {device.device_kind} ({jax.default_backend()}) x{len(devices)}, "
        f"{platform.processor() or platform.machine()}"
    )
    if torch is None:
        print(f"torch not installed: its baselines are skipped; jax {jax.__version__}")
    else:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        print(
            f"torch {torch.__version__} on {torch_device(torch)} "
            f"threads={torch.get_num_threads()}, jax {jax.__version__}, steps={steps}, "
            f"repeats={args.repeats}"
        )
    bw, peak, mm_peak = bandwidth(), elementwise_flops(), matmul_flops()
    print(
        f"measured: bandwidth {bw / 1e9:.1f} GB/s (read + write), elementwise multiply-add "
        f"{peak / 1e9:.1f} GFLOP/s, matrix product {mm_peak / 1e9:.1f} GFLOP/s (float32)"
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
            runs = {"rnnflow": rnnflow_runner(model, loss, params, steps)}
            _, first = runs["rnnflow"]()
            for name, opt in OPTAX.items():
                runs[name] = rnnflow_runner(model, loss, params, steps, optimizer=opt)
                runs[name]()  # compile
            if torch is not None:
                runs["torch_batched"] = lambda: torch_batched(
                    kind, squeeze(kind, params), target, steps, torch
                )
            times, outs = alternate(runs, args.repeats)
            run_s = times["rnnflow"]
            ours = final_loss(outs["rnnflow"])
            np.testing.assert_allclose(final_loss(outs["sgd"]), ours, rtol=2e-3)
            for name in OPTAX:
                assert np.isfinite(final_loss(outs[name])).all(), name
            kernels = {}
            if kind == "diagonal":  # where the fused step applies: the other kernels
                others = ["generic"] + (["pallas"] if jax.default_backend() != "cpu" else [])
                for kernel in others:
                    try:
                        t, s_k = rnnflow_run(model, loss, params, steps, kernel)
                    except Exception as e:  # e.g. a kernel the device's compiler rejects
                        print(f"kernel={kernel!r} failed, skipped: {type(e).__name__}: {e}")
                        continue
                    np.testing.assert_allclose(final_loss(t), ours, rtol=2e-3)
                    kernels[kernel] = s_k
            elif jax.default_backend() == "cpu" and not args.quick:  # narrower by default
                per_device = -(-s // len(jax.devices()))  # `lanes` counts one device's
                t, s_k = rnnflow_run(model, loss, params, steps, lanes=min(per_device, 1024))
                np.testing.assert_allclose(final_loss(t), ours, rtol=2e-3)
                kernels["wide"] = s_k
            n_loop = min(s, 3)
            tl_s = np.nan
            if torch is not None:
                np.testing.assert_allclose(outs["torch_batched"], ours, rtol=2e-3, atol=1e-6)
                t0 = time.perf_counter()
                for i in range(n_loop):
                    one = squeeze(kind, jax.tree.map(lambda x: x[i : i + 1], params))
                    torch_batched(kind, one, target, steps, torch)
                tl_s = (time.perf_counter() - t0) / n_loop * s
            method = rf.GradientDescent(LR, steps)
            first_seed = jax.tree.map(lambda x: x[0], params)
            rf.train(loss.bind(model), first_seed, method, save=rf.Save(num=2))  # compile
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
                devices=len(devices),
                repeats=args.repeats,
                rnnflow_seed_steps_per_s=rate,
                rnnflow_compile_s=first - run_s,
                vs_torch_batched=times.get("torch_batched", np.nan) / run_s,
                vs_torch_loop=tl_s / run_s,
                vs_jax_loop=jl_s / run_s,
                **{f"vs_{k}": t / run_s for k, t in kernels.items()},
                **{f"optax_{name}_over_default": times[name] / run_s for name in OPTAX},
                flops_per_seed_step=flops,
                kernels_per_step=kernels_per_step(model, loss, params),
                gflops=rate * flops / 1e9,
                of_elementwise_peak=rate * flops / peak,
                of_matmul_peak=rate * flops / mm_peak,
                compute_bound=peak / flops,
                roundtrip_bytes=nbytes,
                roundtrip_bound=bw / nbytes,
            )
            rows.append(row)
            print(
                f"{kind:>8} d={case['d']:<3} S={s:<6} rnnflow {rate:9.3g} seed-steps/s "
                f"(compile {row['rnnflow_compile_s']:4.1f}s) | speed-up vs torch-batched "
                f"{row['vs_torch_batched']:6.2f}x (median of {args.repeats})"
                f", torch-loop {row['vs_torch_loop']:7.1f}x, jax-loop {row['vs_jax_loop']:6.1f}x"
                + "".join(f", {k} {t / run_s:5.2f}x" for k, t in kernels.items())
            )
            print(
                f"{'':>8} optax over the default, time per step: "
                + ", ".join(f"{name} {times[name] / run_s:.2f}x" for name in OPTAX)
            )
            print(
                f"{'':>8} roofline: {flops} flops/seed-step, {row['gflops']:.1f} GFLOP/s = "
                f"{row['of_elementwise_peak']:.1%} of the elementwise peak, "
                f"{row['of_matmul_peak']:.1%} of the matmul peak; {row['kernels_per_step']} "
                f"kernels/step; bounds {row['compute_bound']:.3g} seed-steps/s (flops), "
                f"{row['roundtrip_bound']:.3g} (parameters read and written every step, "
                f"{nbytes} bytes)",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            out = dict(
                device=str(device),
                devices=len(devices),
                bandwidth=bw,
                elementwise_flops=peak,
                matmul_flops=mm_peak,
                rows=rows,
            )
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
