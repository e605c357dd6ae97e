"""The learning_dynamics figure: losses and per-mode progress from the store `sweep`, each
mode's learning times and fitted line from the summary, and the learned measure at the end."""

import numpy as np

from .. import _stats
from .base import colors, figure, log_axes, nanmedian, save, seeds_over_time


def plot(data, summary, config, file) -> None:
    ds = data["sweep"]
    ok, ts, scales = _stats.ok(ds), ds.time.values, np.asarray(config.scales)
    lam, p, styles = config.eigenvalues, config.weights, ["-", "--", ":"]
    fig, axes = figure(2, 2, figsize=(12, 9))

    ax = axes[0, 0]
    seeds_over_time(ax, ts, ds.loss.where(ok).values, scales, colors("viridis", len(scales), 0.85))
    ax.set(xlabel="time t = step × lr", ylabel="training loss")
    ax.set_title("Loss: one plateau per mode (thin: seeds, thick: median)")

    ax = axes[0, 1]
    prog = ds.progress.where(ok).transpose("init_scale", "seed", "time", ...).values
    # Largest, middle and smallest scale only: fifteen curves would hide the staircase.
    shown = sorted({0, len(scales) // 2, len(scales) - 1})
    for i, j in enumerate(shown):
        for m, (lam_m, p_m) in enumerate(zip(lam, p)):
            label = f"λ={lam_m:g}, p={p_m:g}" if i == 0 else None
            ax.plot(ts[1:], nanmedian(prog[j], 0)[1:, m], f"C{m}", ls=styles[i], label=label)
        ax.plot([], [], "k", ls=styles[i], label=f"σ={scales[j]:g}")  # its legend entry
    ax.axhline(config.threshold, color="gray", lw=0.8, ls=":")
    log_axes(ax, np.where(np.isfinite(prog), 1.0, np.nan), y=False)
    # Headroom above the curves (1.5) for the legend; only transit spikes reach it.
    ax.set(ylim=(-0.3, 2.6), xlabel="time t", ylabel="weight nearest λ_m / p_m")
    ax.set_title("Per-mode progress, median over seeds (early spikes: transits)")
    ax.legend(fontsize=8, ncol=2, loc="upper left")

    # One panel per mode: their times differ by orders of magnitude, and each line is
    # straight only on its own linear axis.
    axes[1, 0].remove()
    cells = axes[1, 0].get_subplotspec().subgridspec(1, len(lam), wspace=0.45)
    x, rng = np.log10(1.0 / scales), np.random.default_rng(0)
    for m in range(len(lam)):
        mode, ax = summary["modes"][f"mode{m}"], fig.add_subplot(cells[0, m])
        jitter = 0.08 * (rng.random(config.seeds) - 0.5)  # the seeds side by side
        ax.plot(np.add.outer(x, jitter), mode["t_learn_by_scale"], ".", color=f"C{m}", alpha=0.6)
        sm, im, rm = (mode[key] for key in ("slope_per_decade", "intercept", "r2"))
        fit = f"{sm:.3g} per decade\nr²={rm:.3f}" if np.isfinite(sm) else "not learned"
        ax.plot(x, im + sm * x, color=f"C{m}")  # nothing where the mode was not learned (NaN)
        ax.set_title(f"λ={lam[m]:g}, p={p[m]:g}\n{fit}", fontsize=9)
        ax.set(xlabel="log10(1/σ)", ylabel="" if m else f"time to reach {config.threshold:g} × p_m")
        ax.tick_params(labelsize=8)

    ax = axes[1, 1]
    small = ds.sel(init_scale=min(config.scales)).isel(time=-1).where(_stats.ok)
    lam_s, w_s = (small[v].values.ravel() for v in ("measure_eigenvalues", "measure_weights"))
    ax.plot(lam_s, w_s, "o", color="C7", ms=4, alpha=0.6, label="students (all units)")
    ax.plot(lam, p, "x", color="k", ms=10, mew=2, label="teacher")
    ax.axhline(0.0, color="gray", lw=0.5)
    ax.set(xlabel="eigenvalue of A", ylabel="weight in h_i")
    ax.set_title(f"Learned measure at t = {ts[-1]:g}, σ={min(config.scales):g}")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Learning dynamics: {config.parameterization} student d={config.state_dim}, "
        f"k={config.train_len}, GD lr={config.lr:g}, {config.seeds} seeds per scale\n"
        f"modes learned in weight order in {100 * summary['in_order_fraction']:.0f}% of seeds "
        f"that learned all of them ({100 * summary['learned_fraction']:.0f}%)"
    )
    save(fig, file, dpi=100)
