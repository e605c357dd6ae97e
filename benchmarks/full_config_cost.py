"""Per-seed cost of the init_scale and nonlinear experiments' full configurations, by
gradient descent and by the gradient flow with the stiff solver (float64).

For one point of each (the slowest student: the largest state, a small init scale that
trains to the stopping loss), times `rnnflow.train_seeds` on a few seeds with one JAX CPU
device per core: gradient descent for `--gd-steps` steps, extrapolated to the config's
t1 / lr steps (a seed that reaches the stopping loss earlier stops earlier: an upper
bound), and the flow by `LeastSquaresRosenbrock` (rtol 1e-6, as the experiments'
`method="gf"`) to the config's t1 or the stopping loss (nonlinear's flow on four of the
seeds: each of its steps forms a 1280 × 440 Jacobian). Compile time is reported apart.

    python benchmarks/full_config_cost.py [--seeds 16] [--gd-steps 2000]
"""

import argparse
import platform
import time

import jax

import rnnflow as rf


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def cost(name, loss_fn, params, lr, t1, stop, gd_steps, seeds, flow_seeds=None):
    from rnnflow.experiments import _common

    save = rf.Save(num=3)
    gd = rf.GradientDescent(lr, gd_steps)
    first, _ = _timed(lambda: rf.train_seeds(loss_fn, params, gd, save=save, stop=stop))
    run, _ = _timed(lambda: rf.train_seeds(loss_fn, params, gd, save=save, stop=stop))
    full_steps = round(t1 / lr)
    per_seed_gd = run / seeds * full_steps / gd_steps
    if flow_seeds is not None:  # the flow on the first few seeds only
        seeds, params = flow_seeds, jax.tree.map(lambda x: x[:flow_seeds], params)
    flow = _common.method("gf", lr=lr, t1=t1)
    first_f, traj = _timed(lambda: rf.train_seeds(loss_fn, params, flow, save=save, stop=stop))
    run_f, traj = _timed(lambda: rf.train_seeds(loss_fn, params, flow, save=save, stop=stop))
    print(
        f"{name}: GD {full_steps} steps: {per_seed_gd:8.2f} s/seed (compile {first - run:.1f} s); "
        f"flow (LSR, float64): {run_f / seeds:8.3f} s/seed (compile {first_f - run_f:.1f} s, "
        f"{traj.summary()}, median steps {int(jax.numpy.median(traj.num_steps))}); "
        f"ratio GD / flow {per_seed_gd / (run_f / seeds):.0f}",
        flush=True,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--gd-steps", type=int, default=2000)
    args = p.parse_args()
    n = rf.use_cpu_cores()
    jax.config.update("jax_enable_x64", True)
    from rnnflow.experiments import _common
    from rnnflow.experiments.init_scale import InitScaleConfig
    from rnnflow.experiments.nonlinear import NonlinearConfig

    print(f"{platform.machine()}, {n} JAX CPU devices, jax {jax.__version__}, float64")
    keys = jax.random.split(jax.random.key(0), args.seeds)
    c = InitScaleConfig()
    stop = rf.Stop(loss_below=c.loss_below)
    for p_name in c.parameterizations:
        model = rf.make_model(p_name, c.state_dim)
        loss_fn = rf.ImpulseLoss(_common.teacher("two_modes"), c.train_len).bind(model)
        params = rf.init_seeds(model, keys, scale=1e-3)
        cost(f"init_scale {p_name} d={c.state_dim} σ=1e-3", loss_fn, params, c.lr, c.t1, stop,
             args.gd_steps, args.seeds)  # fmt: skip
    c = NonlinearConfig()
    teacher, model = _common.teacher(c.teacher), rf.TanhRNN(c.state_dim)
    xs = c.input_scale * jax.random.normal(jax.random.key(1), (c.num_sequences, c.train_len, 1))
    loss_fn = rf.SequenceLoss(teacher, xs, supervise=c.supervise).bind(model)
    params = rf.init_seeds(model, keys, scale=1e-2)
    # The flow's steps cost 440 forward-mode passes each here (82 s per seed): four seeds.
    cost(f"nonlinear tanh d={c.state_dim} σ=1e-2", loss_fn, params, c.lr, c.t1, rf.Stop(),
         args.gd_steps, args.seeds, flow_seeds=min(4, args.seeds))  # fmt: skip


if __name__ == "__main__":
    main()
