"""The nonlinear figure: losses and errors over time, final errors by init scale, and the
hidden states' singular values, from the store `sweep` (effective dimensions from the
summary)."""

import numpy as np

from .. import _stats
from .._stats import final
from .base import figure, log_axes, nanmedian, save, seeds_over_time


def plot(data, summary, config, file) -> None:
    import matplotlib.pyplot as plt

    ds = data["sweep"]
    ok = _stats.ok(ds)
    ts, scales = ds.time.values, np.asarray(config.scales)
    colors = plt.cm.plasma(np.linspace(0.0, 0.85, len(scales)))
    fig, axes = figure(2, 2, figsize=(12, 9))
    for ax, name, label in (
        (axes[0, 0], "loss", "training loss"),
        (axes[0, 1], "extrapolation", f"relative error at q={config.horizon}"),
    ):
        values = ds[name].where(ok).transpose("init_scale", "seed", "time").values
        seeds_over_time(ax, ts, values, scales, colors)
        ax.set(xlabel="time t = step × lr", ylabel=label)
    axes[0, 0].set_title(f"Training loss (k={config.train_len}; thin: seeds, thick: median)")
    axes[0, 1].set_title(f"Error on fresh sequences of length q={config.horizon}")

    ax = axes[1, 0]
    finals = []
    for name, label, marker in (
        ("fit_error", f"at the training length k={config.train_len}", "s--"),
        ("extrapolation", f"at q={config.horizon}", "o-"),
    ):
        v = final(ds, name).transpose("init_scale", "seed").values
        finals.append(v)
        ax.plot(scales, nanmedian(v, 1), marker, label=label)
        for j, s in enumerate(scales):
            ax.plot(np.full(v.shape[1], s), v[j], ".", color="gray", alpha=0.5)
    log_axes(ax, finals)
    ax.set(xlabel="init scale σ", ylabel="relative error, last output")
    ax.set_title("Final error: fits k everywhere, extrapolates from small init")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    sv = final(ds, "singular_values").transpose("init_scale", "seed", ...).values
    idx = np.arange(1, sv.shape[-1] + 1)
    for j, s in enumerate(scales):
        med = np.exp(nanmedian(np.log(np.where(sv[j] > 0, sv[j], np.nan)), 0))
        ax.plot(
            idx,
            med,
            "o-",
            color=colors[j],
            ms=3,
            label=f"σ={s:g}: effective dim {summary['dim']['by_scale'][j]:g}",
        )
    ax.axhline(config.dim_rtol, color="gray", ls=":", lw=1, label=f"tolerance {config.dim_rtol:g}")
    log_axes(ax, sv, x=False)
    ax.set(xlabel="index", ylabel="singular value / largest")
    ax.set_title("Hidden states on test sequences: singular values (median)")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Non-linear (tanh) student d={config.state_dim}, teacher {config.teacher}, "
        f"{config.num_sequences} sequences × k={config.train_len}, input scale "
        f"{config.input_scale:g},\nsupervise {config.supervise}, GD lr={config.lr:g} to "
        f"t={config.t1:g}, {config.seeds} seeds per scale"
    )
    save(fig, file, dpi=100)
