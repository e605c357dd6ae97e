"""The init_scale figure: per teacher (a column), against the init scale, the final
extrapolation error, effective state dimension and imbalance of each parameterization."""

import numpy as np

from .._stats import final
from .base import band, figure, save


def plot(data, summary, config, file) -> None:
    ds = data["sweep"]
    n_t = len(config.teachers)
    fig, axes = figure(3, n_t, figsize=(4.2 * n_t, 9), squeeze=False, sharex=True)
    scales = np.asarray(config.scales)
    rows = (
        ("extrapolation", "relative extrapolation error", True),
        ("dim", "effective state dimension", False),
        ("relative_imbalance", "relative imbalance ‖Q‖/‖θ‖²", True),
    )
    for j, tname in enumerate(config.teachers):
        for r, (name, label, log) in enumerate(rows):
            ax = axes[r, j]
            for pname in config.parameterizations:
                v = final(ds, name).sel(parameterization=pname, teacher=tname).values
                band(ax, scales, v, "o-", pname)
            ax.set_xscale("log")
            if log:
                ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel(label)
            if r == 0:
                ax.set_title(f"teacher: {tname}")
            if r == 2:
                ax.set_xlabel("init scale σ")
    axes[0, 0].legend()
    fig.suptitle(
        f"Init-scale sweep: d={config.state_dim}, k={config.train_len}, q={config.horizon},\n"
        f"{config.method.upper()}, median and IQR over {config.seeds} seeds"
    )
    save(fig, file)
