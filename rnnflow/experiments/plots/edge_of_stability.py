"""The edge_of_stability figure: per case (a row) and η (a colour), the seed the summary
names as `shown`, its sharpness, loss and distance to the flows against time."""

import numpy as np

from .base import figure, save

TITLES = (
    ("sharpness λ_max", None, "sharpness rises to 2/η (dotted) and stays"),
    ("training loss", "log", "loss, gradient descent against the flow"),
    ("‖θ_GD − θ_flow‖", "log", "distance to the flows (dashed: λ_max first ≥ 2/η)"),
)


def plot(data, summary, config, file) -> None:
    import matplotlib.pyplot as plt

    names = [name for name, value in summary.items() if isinstance(value, dict)]
    fig, axes = figure(len(names), 3, figsize=(16, 4.8 * len(names)))
    for name, ax in zip(names, np.asarray(axes).reshape(len(names), 3), strict=True):
        rows = list(summary[name]["by_lr"].values())
        flow = data[f"{name}_flow"].sel(algorithm="gf")
        for row, color in zip(rows, plt.cm.viridis(np.linspace(0.0, 0.8, len(rows))), strict=True):
            lr, seed, crossed = row["lr"], row["shown"]["seed"], row["shown"]["crossing_time"]
            if seed < 0:  # no seed finished all three runs
                continue
            gd = data[f"{name}_lr{lr:g}"].sel(lr=lr, seed=seed)
            gf = flow.sel(seed=seed).sel(time=gd.time, method="nearest")
            mf = data[f"{name}_modified_lr{lr:g}"].sel(lr=lr, seed=seed)
            t, label = gd.time.values, f"η={lr:g}"
            ax[0].plot(t, gd.sharpness, color=color, lw=1, label=f"GD {label}")
            ax[0].axhline(2 / lr, color=color, ls=":", lw=1)
            ax[1].plot(t, gd.loss, color=color, lw=1, label=f"GD {label}")
            for other, ls, what in ((gf, "-", "flow"), (mf, "--", "modified flow")):
                dist = np.linalg.norm(gd.theta.values - other.theta.values, axis=-1)
                ax[2].plot(t, dist, color=color, ls=ls, lw=1, label=f"to the {what}, {label}")
            if np.isfinite(crossed):
                for a in ax:
                    a.axvline(crossed, color=color, ls="--", lw=0.7)
            if row is rows[0]:
                ax[1].plot(t, gf.loss, "k--", lw=1.5, label="gradient flow")
        final = summary[name]["gf_final_sharpness"]
        ax[0].axhline(final, color="k", ls="--", lw=1.5, label="gradient flow, at the end")
        for a, (ylabel, yscale, title) in zip(ax, TITLES, strict=True):
            a.set(xlabel="time t = step × η", ylabel=ylabel, yscale=yscale or "linear")
            a.set_title(f"{name.replace('_', ' ')}: {title}")
            a.legend(fontsize=7)
    fig.suptitle(
        f"Edge of stability: deep linear network (depth {config.depth}, width {config.width}, "
        f"target diag{tuple(config.strengths)}) and dense RNN (d = {config.rnn_state_dim}, "
        f"teacher {config.rnn_teacher}); seed shown: the first that finished"
    )
    save(fig, file)
