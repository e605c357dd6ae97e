"""The small_step figure."""

import numpy as np

import rnnflow as rf

from .. import _common
from .base import figure, nanmedian, save


def plot(data, summary, config, file) -> None:
    import matplotlib.ticker
    from matplotlib import colormaps

    from ..small_step import distances, slopes, spectral_radius

    dist = distances(data, config)
    fitted = slopes(dist)
    dense = "dense" in data
    fig, axes = figure(2 if dense else 1, 3, figsize=(15, 9.5 if dense else 5), squeeze=False)
    lrs, ts = np.asarray(config.lrs), dist.time.values
    series = (
        ("gd_gf", "‖θ_GD − θ_GF‖", "tab:blue"),
        ("modified_gd", "‖θ_GD − θ_MF‖", "tab:orange"),
        ("drift", "‖Q_GD − Q(0)‖", "tab:green"),
    )

    # (a) distances at t1 against η: seeds faint, median bold, fitted slopes in the legend.
    ax = axes[0, 0]
    for key, label, color in series:
        v = dist[key].isel(time=-1).transpose("lr", "seed").values
        ax.plot(lrs, v, color=color, alpha=0.25, lw=0.8)
        slope = summary["slope"][key]
        ax.plot(lrs, nanmedian(v, 1), "o-", color=color, lw=2, label=f"{label}: slope {slope:.2f}")
    gf_drift = float(dist.gf_drift.isel(time=-1).max())
    ax.plot(lrs, gf_drift * np.ones_like(lrs), "k:", label="‖Q_GF − Q(0)‖ (solver error)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(lrs)
    ax.set_xticklabels([f"{lr:g}" for lr in lrs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("step size η")
    ax.set_title(f"(a) distances at t = {config.t1} (seeds faint, median bold)")
    ax.legend(fontsize=8)

    # (b) distances over time, one line per η.
    ax = axes[0, 1]
    cmap = colormaps["viridis"]
    for i, lr in enumerate(lrs):
        color = cmap(i / max(len(lrs) - 1, 1))
        ax.plot(ts, _common.seed_median(dist.gd_gf.sel(lr=lr)), "-", color=color, label=f"η = {lr}")
        ax.plot(ts, _common.seed_median(dist.modified_gd.sel(lr=lr)), "--", color=color)
    ax.set_yscale("log")
    ax.set_xlabel("time t = step × η")
    ax.set_title("(b) median ‖θ_GD − θ_GF‖ (solid), ‖θ_GD − θ_MF‖ (dashed)")
    ax.legend(fontsize=8)

    # (c) fitted slopes at each save time.
    ax = axes[0, 2]
    for key, label, color in series:
        s = fitted[key].transpose("seed", "time").values
        ax.plot(ts, nanmedian(s, 0), "o-", color=color, label=label)
        ax.fill_between(ts, np.nanmin(s, axis=0), np.nanmax(s, axis=0), color=color, alpha=0.15)
    for ref in (1, 2):
        ax.axhline(ref, color="k", lw=0.8, ls=":")
    ax.set_ylim(0, 3)
    ax.set(xlabel="time t", ylabel="log-log slope against η")
    ax.set_title("(c) convergence order over time (median, min–max)")
    ax.legend(fontsize=8)

    if dense:
        ds = data["dense"]
        dlrs = np.asarray(config.dense_lrs)
        panels = (
            ("extrapolation", "relative extrapolation error", True),
            ("sharpness", "sharpness (top Hessian eigenvalue) at the end", False),
            ("radius", "spectral radius of A at the end", False),
        )
        converged = (ds.result == int(rf.Result.converged)).values
        rng = np.random.default_rng(0)
        for c, (key, label, log) in enumerate(panels):
            ax = axes[1, c]
            if key == "radius":
                v = spectral_radius(ds.transition.isel(time=-1).values)
            else:
                v = ds[key].isel(time=-1).values
            v = np.where(_common.ok(ds).values, v, np.nan)
            for i, lr in enumerate(dlrs):
                x = lr * (1 + rng.uniform(-0.02, 0.02, v.shape[1]))
                for mask, face in ((converged[i], "tab:purple"), (~converged[i], "none")):
                    name = (
                        f"loss < {config.dense_loss_below:g}"
                        if face != "none"
                        else "not below it at t1"
                    )
                    ax.scatter(
                        x[mask],
                        v[i][mask],
                        s=18,
                        facecolors=face,
                        edgecolors="tab:purple",
                        label=None if i or c else name,
                    )
            ax.plot(dlrs, nanmedian(v, 1), "_:", color="tab:purple", ms=14, label="median")
            if key == "sharpness":
                grid = np.linspace(dlrs.min(), dlrs.max(), 50)
                ax.plot(grid, 2 / grid, "k--", label="2/η (GD stability limit)")
                ax.set_ylim(0, 1.4 * np.nanmax(v))
            ax.legend(fontsize=8)
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("step size η")
            ax.set_title(f"({'def'[c]}) dense d={config.dense_state_dim}: {label}", fontsize=10)
    fig.suptitle(
        f"Small-step limit: {config.parameterization} d={config.state_dim}, teacher "
        f"{config.teacher}, k={config.train_len}, init scale {config.scale} (unbalanced), "
        f"{config.seeds} seeds"
        + (
            f"\nbottom: dense student from scale {config.dense_scale}, teacher "
            f"{config.dense_teacher}, GD to loss < {config.dense_loss_below} or t = "
            f"{config.dense_t1}, {config.dense_seeds} seeds"
            if dense
            else ""
        )
    )
    save(fig, file)
