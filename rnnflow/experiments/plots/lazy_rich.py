"""The lazy_rich figure: per student (a column), against the init scale, the final kernel change
with the crossing the summary reports, both extrapolation errors and the state dimension."""

import numpy as np

from .._stats import final
from .base import band, figure, log_axes, save


def plot(data, summary, config, file) -> None:
    ds = data["sweep"]
    n = len(config.parameterizations)
    fig, axes = figure(3, n, figsize=(4.2 * n, 9.5), squeeze=False, sharex=True)
    scales = np.asarray(config.scales)

    def seeds(name, p):  # (σ, seed)
        return final(ds, name).sel(parameterization=p).transpose("init_scale", "seed").values

    for j, p in enumerate(config.parameterizations):
        cross = summary[p]["crossing"]
        ax = axes[0, j]
        v = band(ax, scales, seeds("kernel_change", p), "o-", "median, quartiles")
        ax.axhline(config.threshold, color="gray", ls=":", lw=1)
        if np.isfinite(cross["median"]):
            ax.axvline(cross["median"], color="gray", ls="--", lw=1)
            ax.axvspan(cross["q25"], cross["q75"], color="gray", alpha=0.15)
        log_axes(ax, v)
        where = f"σ ≈ {cross['median']:.2g}" if cross["crossed"] else "no σ swept"
        ax.set_title(
            f"{p}: below {config.threshold:g} from {where} "
            f"({cross['crossed']}/{config.seeds} seeds)"
        )
        ax = axes[1, j]
        a = band(ax, scales, seeds("extrapolation", p), "o-", "real")
        b = band(ax, scales, seeds("linear_extrapolation", p), "s--", "linearized")
        log_axes(ax, [a, b])
        ax = axes[2, j]
        band(ax, scales, seeds("dim", p), "o-", "real")
        ax.set_xscale("log")
        ax.set_xlabel("init scale σ")
        if j == 0:
            axes[0, 0].set_ylabel(r"kernel change $\|K_t - K_0\|_F / \|K_0\|_F$")
            axes[1, 0].set_ylabel(
                f"relative extrapolation error, lags {config.train_len} ≤ i < {config.horizon}"
            )
            axes[2, 0].set_ylabel("effective state dimension")
            axes[0, 0].legend(fontsize=8)
            axes[1, 0].legend(fontsize=8)
    fig.suptitle(
        f"Lazy and rich: d={config.state_dim}, teacher {config.teacher}, k={config.train_len}, "
        f"q={config.horizon}, {config.method} to t={config.t1:g}, {config.seeds} seeds per scale;"
        "\nat the end of training, each student beside its linearization"
    )
    save(fig, file)
