"""Minibatch SGD against its SDE: stationary spread on a quadratic, for several step sizes.

Examples z_i (six, in 2-d), per-example loss ½‖θ − z_i‖², minibatches of B = 2 drawn with
replacement. SGD with step η is θ ← θ − η(θ − z̄_B); its stationary covariance is
ηC/(B(2 − η)) (C the examples' covariance). The SDE of SGD, dθ = −(θ − z̄)dt + √(η/B)
C^{1/2} dW (`rf.StochasticFlow`), has stationary covariance ηC/(2B): the two agree to first
order in η, and their ratio is 2/(2 − η). The gradient flow has no spread at all.

For each η, `seeds` runs of each from θ = 0 to t = 8, the SDE at time step 0.01, the
spread measured over the saves after t = 4 (the transient decays as e^{−2t}), as
tr Cov / (η tr C / 2B).

Run: python docs/examples/three_limits.py   (writes docs/figures/three_limits_sde.png)
"""

import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import rnnflow as rf

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Z = jax.random.normal(jax.random.key(0), (6, 2)) * jnp.asarray([[1.0, 2.0]])
B = 2
LRS = (0.1, 0.2, 0.4, 0.8)
DT = 0.01  # the SDE's time step: its own bias on the spread is 2/(2 − DT) − 1 = 0.25 %
FIGURE = pathlib.Path(__file__).parents[1] / "figures" / "three_limits_sde.png"


def example_loss(theta, z):
    return 0.5 * jnp.sum((theta - z) ** 2)


def spread(traj) -> float:
    """tr of the covariance of the saved parameters, over seeds and saves."""
    samples = np.asarray(traj.params).reshape(-1, 2)
    return float(np.trace(np.cov(samples.T)))


def main(seeds: int = 1000, t1: float = 8.0, figure=FIGURE):
    loss_fn = rf.Minibatch(example_loss, Z, batch_size=B)
    keys = jax.random.split(jax.random.key(1), seeds)
    theta0 = jnp.zeros((seeds, 2))
    trace_c = float(np.trace(np.cov(np.asarray(Z).T, bias=True)))
    rows = []
    for lr in LRS:
        ts = np.arange(round(4.0 / lr), round(t1 / lr) + 1) * lr  # whole steps after t = 4
        save = rf.Save(ts=ts[:: max(1, round(0.4 / lr))], params=True)
        sgd = rf.train_seeds(
            loss_fn, theta0, rf.GradientDescent(lr, round(t1 / lr)), save=save, keys=keys
        )
        sde = rf.train_seeds(
            loss_fn, theta0, rf.StochasticFlow(lr, save.ts[-1], dt0=DT), save=save, keys=keys
        )
        unit = lr * trace_c / (2 * B)
        rows.append((lr, spread(sgd) / unit, spread(sde) / unit))
        print(
            f"η = {lr:4.2f}: SGD {rows[-1][1]:.3f}, SDE {rows[-1][2]:.3f}, 2/(2-η) = "
            f"{2 / (2 - lr):.3f}",
            flush=True,
        )
    rows = np.asarray(rows)
    if figure is not None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        grid = np.linspace(0.0, max(LRS), 100)
        ax.plot(grid, 2 / (2 - grid), "C0-", lw=1, label="SGD, exact: 2/(2 − η)")
        ax.plot(rows[:, 0], rows[:, 1], "C0o", label="SGD (GradientDescent on a Minibatch)")
        ax.axhline(1.0, color="C1", lw=1, label="SDE, exact: 1")
        ax.plot(rows[:, 0], rows[:, 2], "C1s", label="SDE (StochasticFlow)")
        ax.axhline(0.0, color="k", ls="--", lw=1, label="gradient flow: no spread")
        ax.set(xlabel="step size η", ylabel="stationary spread / (η tr C / 2B)")
        ax.set_title(f"SGD against its SDE on a quadratic ({seeds} seeds)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figure, dpi=110)
        plt.close(fig)
    return rows


if __name__ == "__main__":
    main()
