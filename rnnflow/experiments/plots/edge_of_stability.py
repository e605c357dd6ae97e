"""The edge_of_stability figure."""

import numpy as np

from .. import _common
from .base import figure, save


def plot(data, summary, config, file) -> None:
    import matplotlib.pyplot as plt

    from ..edge_of_stability import cases, crossing

    rows = cases(config)
    fig, axes = figure(len(rows), 3, figsize=(16, 4.8 * len(rows)))
    axes = np.asarray(axes).reshape(len(rows), 3)
    for case, ax in zip(rows, axes, strict=True):
        colors = plt.cm.viridis(np.linspace(0.0, 0.8, len(case.lrs)))
        for lr, color in zip(case.lrs, colors, strict=True):
            gd = data[case.store("lr", lr)].sel(lr=lr)
            gf = data[case.store("flow")].sel(algorithm="gf").sel(time=gd.time, method="nearest")
            mf = data[case.store("modified_lr", lr)].sel(lr=lr)
            good = np.flatnonzero((_common.ok(gd) & _common.ok(gf) & _common.ok(mf)).values)
            if not len(good):
                continue
            s = int(good[0])  # one seed: a median would blur the oscillation
            gd, gf, mf = gd.sel(seed=s), gf.sel(seed=s), mf.sel(seed=s)
            t = gd.time.values
            idx = int(crossing(gd.sharpness.values * lr / 2))
            label = f"η={lr:g}"
            ax[0].plot(t, gd.sharpness, color=color, lw=1, label=f"GD {label}")
            ax[0].axhline(2 / lr, color=color, ls=":", lw=1)
            ax[1].plot(t, gd.loss, color=color, lw=1, label=f"GD {label}")
            for flow, ls, name in ((gf, "-", "flow"), (mf, "--", "modified flow")):
                dist = np.linalg.norm(gd.theta.values - flow.theta.values, axis=-1)
                ax[2].plot(t, dist, color=color, ls=ls, lw=1, label=f"to the {name}, {label}")
            if idx >= 0:
                for a in ax:
                    a.axvline(t[idx], color=color, ls="--", lw=0.7)
            if lr == case.lrs[0]:
                ax[1].plot(t, gf.loss, "k--", lw=1.5, label="gradient flow")
        final = summary[case.name]["gf_final_sharpness"]
        ax[0].axhline(final, color="k", ls="--", lw=1.5, label="gradient flow, at the end")
        title = case.name.replace("_", " ")
        ax[0].set(xlabel="time t = step × η", ylabel="sharpness λ_max")
        ax[0].set_title(f"{title}: sharpness rises to 2/η (dotted) and stays")
        ax[1].set(xlabel="time t = step × η", ylabel="training loss", yscale="log")
        ax[1].set_title(f"{title}: loss, gradient descent against the flow")
        ax[2].set(xlabel="time t = step × η", ylabel="‖θ_GD − θ_flow‖", yscale="log")
        ax[2].set_title(f"{title}: distance to the flows (dashed: λ_max first ≥ 2/η)")
        for a in ax:
            a.legend(fontsize=7)
    fig.suptitle(
        f"Edge of stability: deep linear network (depth {config.depth}, width {config.width}, "
        f"target diag{tuple(config.strengths)}) and dense RNN (d = {config.rnn_state_dim}, "
        f"teacher {config.rnn_teacher}); seed shown: the first that finished"
    )
    save(fig, file)
