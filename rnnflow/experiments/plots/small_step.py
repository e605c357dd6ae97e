"""The small_step figure: distances between GD, the flow and the modified flow, and their
convergence orders, from the summary; the dense students' ends from the store `dense`."""

import numpy as np

import rnnflow as rf

from .. import _common
from .base import figure, nanmedian, save


def plot(data, summary, config, file) -> None:
    import matplotlib.ticker
    from matplotlib import colormaps

    dense = "dense" in data
    fig, axes = figure(2 if dense else 1, 3, figsize=(15, 9.5 if dense else 5), squeeze=False)
    lrs, ts, by_time = np.asarray(config.lrs), summary["by_time"]["time"], summary["by_time"]
    series = (
        ("gd_gf", "‖θ_GD − θ_GF‖", "tab:blue"),
        ("modified_gd", "‖θ_GD − θ_MF‖", "tab:orange"),
        ("drift", "‖Q_GD − Q(0)‖", "tab:green"),
    )

    # (a) distances at t1 against η: seeds faint, median bold, fitted slopes in the legend.
    ax = axes[0, 0]
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
    ax = axes[0, 1]
    for i, lr in enumerate(lrs):
        color = colormaps["viridis"](i / max(len(lrs) - 1, 1))
        ax.plot(ts, by_time["gd_gf"][i], "-", color=color, label=f"η = {lr}")
        ax.plot(ts, by_time["modified_gd"][i], "--", color=color)
    ax.set(yscale="log", xlabel="time t = step × η")
    ax.set_title("(b) median ‖θ_GD − θ_GF‖ (solid), ‖θ_GD − θ_MF‖ (dashed)")

    # (c) fitted slopes at each save time.
    ax = axes[0, 2]
    for key, label, color in series:
        s = summary["slope_by_time"][key]
        ax.plot(ts, s["median"], "o-", color=color, label=label)
        ax.fill_between(ts, s["min"], s["max"], color=color, alpha=0.15)
    for ref in (1, 2):
        ax.axhline(ref, color="k", lw=0.8, ls=":")
    ax.set(ylim=(0, 3), xlabel="time t", ylabel="log-log slope against η")
    ax.set_title("(c) convergence order over time (median, min–max)")

    if dense:
        ds, dlrs, rng = data["dense"], np.asarray(config.dense_lrs), np.random.default_rng(0)
        converged = (ds.result == int(rf.Result.converged)).values
        panels = (
            ("relative extrapolation error", _common.final(ds, "extrapolation").values),
            (
                "sharpness (top Hessian eigenvalue) at the end",
                _common.final(ds, "sharpness").values,
            ),
            (
                "spectral radius of A at the end",
                np.asarray(summary["dense"]["radius_by_seed"], float),
            ),
        )
        done = f"loss < {config.dense_loss_below:g}"
        for c, (label, v) in enumerate(panels):
            ax = axes[1, c]
            for i, lr in enumerate(dlrs):
                x = lr * (1 + rng.uniform(-0.02, 0.02, v.shape[1]))
                for mask, face, name in (
                    (converged[i], "tab:purple", done),
                    (~converged[i], "none", "not below it at t1"),
                ):
                    kw = dict(s=18, facecolors=face, edgecolors="tab:purple")
                    ax.scatter(x[mask], v[i][mask], label=None if i or c else name, **kw)
            ax.plot(dlrs, nanmedian(v, 1), "_:", color="tab:purple", ms=14, label="median")
            if c == 1:  # sharpness against the stability limit of gradient descent
                grid = np.linspace(dlrs.min(), dlrs.max(), 50)
                ax.plot(grid, 2 / grid, "k--", label="2/η (GD stability limit)")
                ax.set_ylim(0, 1.4 * np.nanmax(v))
            ax.set(yscale="log" if c == 0 else "linear", xlabel="step size η")
            ax.set_title(f"({'def'[c]}) dense d={config.dense_state_dim}: {label}", fontsize=10)
    for ax in axes.flat:
        ax.legend(fontsize=8)
    title = (
        f"Small-step limit: {config.parameterization} d={config.state_dim}, teacher "
        f"{config.teacher}, k={config.train_len}, init scale {config.scale} (unbalanced), "
        f"{config.seeds} seeds"
    )
    if dense:
        title += (
            f"\nbottom: dense student from scale {config.dense_scale}, teacher "
            f"{config.dense_teacher}, GD to loss < {config.dense_loss_below} or t = "
            f"{config.dense_t1}, {config.dense_seeds} seeds"
        )
    fig.suptitle(title)
    save(fig, file)
