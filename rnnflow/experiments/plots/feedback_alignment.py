"""The feedback_alignment figure: training error and alignment over time and final
alignment against width and weight decay, from the store `train`; descent's distance to
the flows against η, from the summary."""

import numpy as np

from .._stats import final, seed_median
from .base import figure, log_axes, nanmedian, save


def plot(data, summary, config, file) -> None:
    import matplotlib.pyplot as plt

    ds = data["train"]
    big, lo, hi = max(config.widths), min(config.regs), max(config.regs)
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(config.regs)))
    fig, axes = figure(2, 2, figsize=(12, 9))

    ax = axes[0, 0]
    for act, color in zip(config.activations, ("C0", "C3"), strict=False):
        for rule, style in (("fa", "-"), ("bp", "--")):
            err = ds.error.sel(activation=act, width=big, rule=rule, reg=lo)
            t = ds.t.sel(activation=act, width=big, rule=rule, reg=lo).values
            ax.plot(t, nanmedian(err.transpose("seed", "time").values, 0), style, color=color,
                    label=f"{act}, {rule.upper()}")  # fmt: skip
    log_axes(ax, ds.error.values, x=False)
    ax.set(xlabel="time t = steps × η", ylabel="training error (median over seeds)")
    ax.set_title(f"Training error at λ={lo:g}, p={big}: exponential under FA and BP")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    act = config.activations[-1]
    for reg, color in zip(config.regs, colors, strict=True):
        for rule, style in (("fa", "-"), ("bp", ":")):
            a = ds.alignment.sel(activation=act, width=big, rule=rule, reg=reg)
            t = ds.t.sel(activation=act, width=big, rule=rule, reg=reg).values
            label = f"λ={reg:g}" + (" (BP: dotted)" if rule == "fa" and reg == hi else "")
            ax.plot(t, nanmedian(a.transpose("seed", "time").values, 0), style, color=color,
                    label=label if rule == "fa" else None)  # fmt: skip
    ax.set(xlabel="time t", ylabel="cos∠(W₂ᵀ, B)", ylim=(-0.2, 1.0))
    ax.set_title(f"Alignment of forward and feedback weights ({act}, p={big})")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    align = seed_median(final(ds, "alignment")).sel(rule="fa")
    for act, marker in zip(config.activations, ("o-", "s--"), strict=False):
        for reg, color in zip(config.regs, colors, strict=True):
            ax.plot(config.widths, align.sel(activation=act, reg=reg).values, marker,
                    color=color, label=f"{act}, λ={reg:g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="width p", ylabel="final cos∠(W₂ᵀ, B), FA (median)")
    ax.set_title(f"Alignment at t={config.t1:g}: grows with λ, small at λ=0")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[1, 1]
    lrs, small = np.asarray(config.lrs), summary["small_step"]
    for act, color in zip(config.activations, ("C0", "C3"), strict=False):
        for key, style, what in (
            ("to_flow", "o-", "the"),
            ("to_modified", "s--", "the modified"),
        ):
            ax.plot(lrs, small[act][key], style, color=color, label=f"{act}: GD to {what} flow")
    ref = small[config.activations[0]]["to_flow"][0]
    ax.plot(lrs, 0.3 * ref * lrs / lrs.max(), "k:", lw=1, label="slope 1")
    ax.plot(lrs, ref * 0.1 * (lrs / lrs.max()) ** 2, "k-.", lw=1, label="slope 2")
    log_axes(ax, [small[a][k] for a in config.activations for k in ("to_flow", "to_modified")])
    ax.set(xlabel="step η", ylabel="max over t of ‖ŷ_GD − ŷ‖ (median)")
    ax.set_title(f"FA descent against its flows (p={config.step_width}, λ={config.step_reg:g})")
    ax.legend(fontsize=7)
    fig.suptitle(
        f"Feedback alignment vs backpropagation: n={config.num_examples} examples, "
        f"d={config.in_dim}, GD η={config.lr:g}, {config.seeds} seeds per point"
    )
    save(fig, file, dpi=100)
