"""Lazy and rich: a diagonal RNN student beside its linearization, at several init scales.

For each init scale σ, `seeds` diagonal students (d = 40) start from σ times the same
random directions and are trained by gradient flow on the impulse loss (k = 5, teacher
ĥ_i = 0.9^i), each in one run beside its own linearization at its initialization
(`rf.side_by_side`). Recorded per seed at log-spaced times: both training losses, the
relative kernel change ‖K_t − K₀‖_F/‖K₀‖_F, the relative parameter change ‖θ_t − θ₀‖/‖θ₀‖,
and the relative extrapolation error to lag 50 of the student and of its linearization
(whose impulse response beyond training is linearized too). The linearized loss is also
checked against its closed form, ‖e^{−2tK}r₀‖².

Run: python docs/examples/lazy_rich.py   (writes docs/figures/lazy_rich.png)
"""

import pathlib
import time

import diffrax
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import rnnflow as rf

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

jax.config.update("jax_enable_x64", True)  # the closed-form check is to 1e-6: float64

TEACHER = rf.modes_teacher([0.9], [1.0])
TRAIN_LEN, HORIZON = 5, 50
SCALES = (0.01, 0.03, 0.1, 0.2, 0.3, 0.45, 0.6)
FIGURE = pathlib.Path(__file__).parents[1] / "figures" / "lazy_rich.png"


def experiment(*, state_dim=40, seeds=16, t1=1000.0):
    """`run(scale)`: the side-by-side trajectories of every seed at one scale, and the
    closed form of the linearized loss at the save times. Built once, so that every scale
    reuses one compiled run (the metrics are part of what is compiled)."""
    model = rf.DiagonalRNN(state_dim)
    loss_fn = rf.ImpulseLoss(TEACHER, TRAIN_LEN).bind(model)
    target = TEACHER.impulse_response(HORIZON)[TRAIN_LEN:]

    def beyond(p):  # what the student predicts beyond training
        return model.impulse_response(p, HORIZON)[TRAIN_LEN:]

    beyond_linear = rf.linearize(beyond)  # ... and what its linearization predicts

    def relative(h):
        return jnp.sum((h - target) ** 2) / jnp.sum(target**2)

    pair = rf.side_by_side(loss_fn)
    save = rf.Save(
        num=41,
        spacing="log",
        decades=5,
        metrics={
            "loss": lambda t, p: loss_fn(p.real),
            "linear_loss": lambda t, p: jnp.sum(pair.linear_residuals(p) ** 2),
            "kernel_change": rf.kernel_change_metric(loss_fn),
            "parameter_change": rf.parameter_change_metric(),
            "extrapolation": lambda t, p: relative(beyond(p.real)),
            "linear_extrapolation": lambda t, p: relative(beyond_linear(p.linear)),
        },
    )
    # The flow turns stiff as it converges: the linearly implicit solver takes it to t1.
    method = rf.GradientFlow(
        t1,
        solver=rf.LeastSquaresRosenbrock(),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9),
    )
    keys = jax.random.split(jax.random.key(0), seeds)

    @jax.jit
    def closed_form(params0, ts):
        def one(p):
            return rf.ntk_residuals(rf.ntk(loss_fn, p), loss_fn.residuals(p), ts, method)

        return jnp.sum(jax.vmap(one)(params0) ** 2, axis=-1)

    def run(scale):
        params0 = rf.init_seeds(model, keys, scale=scale)
        traj = rf.train_seeds(pair, rf.SideBySide(params0), method, save=save)
        return traj, closed_form(params0, traj.ts[0])  # the save times are every seed's

    return run


def main(scales=SCALES, *, state_dim=40, seeds=16, t1=1000.0, figure=FIGURE):
    start = time.perf_counter()
    run = experiment(state_dim=state_dim, seeds=seeds, t1=t1)
    runs = {s: run(s) for s in scales}
    print(
        f"{'σ':>5} {'loss':>8} {'lin loss':>8} {'ΔK/K':>8} {'Δθ/θ':>8} "
        f"{'extrap':>8} {'lin extrap':>10}   (medians over {seeds} seeds at t = {t1:g})"
    )
    worst = 0.0
    for s, (traj, closed) in runs.items():
        assert traj.ok.all(), traj.summary()
        m = {k: float(np.median(v[:, -1])) for k, v in traj.metrics.items()}
        print(
            f"{s:5.2f} {m['loss']:8.1e} {m['linear_loss']:8.1e} {m['kernel_change']:8.1e} "
            f"{m['parameter_change']:8.1e} {m['extrapolation']:8.1e} "
            f"{m['linear_extrapolation']:10.1e}"
        )
        lin = traj.metrics["linear_loss"]
        worst = max(worst, float(jnp.max(jnp.abs(lin - closed) / lin[:, :1])))
    print(f"linearized loss against its closed form: largest error {worst:.1e} (of the initial)")
    plot(runs, figure)
    print(f"wrote {figure} in {time.perf_counter() - start:.0f} s")
    return runs, worst


def plot(runs, figure):
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(runs)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for (s, (traj, closed)), c in zip(runs.items(), colors, strict=True):
        ts = np.asarray(traj.ts[0])[1:]  # log axes: leave out t = 0
        loss = np.median(traj.metrics["loss"], axis=0)[1:]
        axes[0].loglog(ts, loss, color=c, label=f"σ = {s:g}")
        axes[0].loglog(ts, np.median(closed, axis=0)[1:], "--", color=c)
        change = np.asarray(traj.metrics["kernel_change"])[:, 1:]
        lo, mid, hi = np.percentile(change, [25, 50, 75], axis=0)
        axes[1].loglog(ts, mid, color=c, label=f"σ = {s:g}")
        axes[1].fill_between(ts, lo, hi, color=c, alpha=0.2)
    # The closed form decays on below what a float64 run resolves (its loss stops near 1e-30).
    axes[0].set_ylim(1e-12, 10)
    axes[0].set(
        xlabel="flow time t",
        ylabel="training loss (median)",
        title="real (solid) and linearized (dashed: closed form)",
    )
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set(
        xlabel="flow time t",
        ylabel=r"$\|K_t - K_0\|_F / \|K_0\|_F$",
        title="kernel change (median, quartiles)",
    )
    scales = np.asarray(list(runs))
    final = {
        k: np.asarray([np.median(t.metrics[k][:, -1]) for t, _ in runs.values()])
        for k in ("extrapolation", "linear_extrapolation", "kernel_change", "parameter_change")
    }
    ax = axes[2]
    ax.loglog(scales, final["extrapolation"], "o-", label="extrapolation error: real")
    ax.loglog(scales, final["linear_extrapolation"], "s--", label="extrapolation error: linearized")
    ax.loglog(scales, final["kernel_change"], "^-", label=r"kernel change $\|ΔK\|/\|K_0\|$")
    ax.loglog(scales, final["parameter_change"], "v-", label=r"parameter change $\|Δθ\|/\|θ_0\|$")
    ax.set(xlabel="init scale σ", title="at the end of training (medians)")
    for a in axes[:2]:
        a.legend(fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
