"""The small_step figure: distances between GD, the flow and the modified flow, and their
convergence orders, from the summary."""

import numpy as np

from .base import colors, figure, nanmedian, save


def plot(data, summary, config, file) -> None:
    import matplotlib.ticker

    fig, axes = figure(1, 3, figsize=(15, 5))
    lrs, ts, by_time = np.asarray(config.lrs), summary["by_time"]["time"], summary["by_time"]
    series = (
        ("gd_gf", "‖θ_GD − θ_GF‖", "tab:blue"),
        ("modified_gd", "‖θ_GD − θ_MF‖", "tab:orange"),
        ("drift", "‖Q_GD − Q(0)‖", "tab:green"),
    )

    # (a) distances at t1 against η: seeds faint, median bold, fitted slopes in the legend.
    ax = axes[0]
    for key, label, color in series:
        v = np.asarray(summary["at_t1"][key], np.float64)  # (lr, seed)
        ax.plot(lrs, v, color=color, alpha=0.25, lw=0.8)
        label = f"{label}: slope {summary['slope'][key]:.2f}"
        ax.plot(lrs, nanmedian(v, 1), "o-", color=color, lw=2, label=label)
    gf_drift = summary["at_t1"]["gf_drift_max"] * np.ones_like(lrs)
    ax.plot(lrs, gf_drift, "k:", label="‖Q_GF − Q(0)‖ (solver error)")
    ax.set(xscale="log", yscale="log", xticks=lrs, xticklabels=[f"{lr:g}" for lr in lrs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("step size η")
    ax.set_title(f"(a) distances at t = {config.t1} (seeds faint, median bold)")

    # (b) distances over time, one line per η.
    ax = axes[1]
    for i, (lr, color) in enumerate(zip(lrs, colors("viridis", len(lrs)))):
        ax.plot(ts, by_time["gd_gf"][i], "-", color=color, label=f"η = {lr}")
        ax.plot(ts, by_time["modified_gd"][i], "--", color=color)
    ax.set(yscale="log", xlabel="time t = step × η")
    ax.set_title("(b) median ‖θ_GD − θ_GF‖ (solid), ‖θ_GD − θ_MF‖ (dashed)")

    # (c) fitted slopes at each save time.
    ax = axes[2]
    for key, label, color in series:
        s = summary["slope_by_time"][key]
        ax.plot(ts, s["median"], "o-", color=color, label=label)
        ax.fill_between(ts, s["min"], s["max"], color=color, alpha=0.15)
    for ref in (1, 2):
        ax.axhline(ref, color="k", lw=0.8, ls=":")
    ax.set(ylim=(0, 3), xlabel="time t", ylabel="log-log slope against η")
    ax.set_title("(c) convergence order over time (median, min–max)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Small-step limit: {config.parameterization} d={config.state_dim}, teacher "
        f"{config.teacher}, k={config.train_len}, init scale {config.scale} (unbalanced), "
        f"{config.seeds} seeds"
    )
    save(fig, file)
