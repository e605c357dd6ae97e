"""The finite_step figure: each dense student's end against its step size, from the store
`dense` (result, extrapolation error, sharpness) and the summary (spectral radius of A)."""

import numpy as np

import rnnflow as rf

from .. import _stats
from .base import figure, nanmedian, save


def plot(data, summary, config, file) -> None:
    ds, lrs, rng = data["dense"], np.asarray(config.lrs), np.random.default_rng(0)
    fig, axes = figure(1, 3, figsize=(15, 5))
    converged = (ds.result == int(rf.Result.converged)).values
    panels = (
        ("relative extrapolation error", _stats.final(ds, "extrapolation").values),
        ("sharpness (top Hessian eigenvalue) at the end", _stats.final(ds, "sharpness").values),
        ("spectral radius of A at the end", np.asarray(summary["radius_by_seed"], float)),
    )
    done = f"loss < {config.loss_below:g}"
    for c, (label, v) in enumerate(panels):
        ax = axes[c]
        for i, lr in enumerate(lrs):  # seeds jittered in η, filled where they converged
            x = lr * (1 + rng.uniform(-0.02, 0.02, v.shape[1]))
            for mask, face, name in (
                (converged[i], "tab:purple", done),
                (~converged[i], "none", "not below it at t1"),
            ):
                kw = dict(s=18, facecolors=face, edgecolors="tab:purple")
                ax.scatter(x[mask], v[i][mask], label=None if i or c else name, **kw)
        ax.plot(lrs, nanmedian(v, 1), "_:", color="tab:purple", ms=14, label="median")
        if c == 1:  # sharpness against the stability limit of gradient descent
            grid = np.linspace(lrs.min(), lrs.max(), 50)
            ax.plot(grid, 2 / grid, "k--", label="2/η (GD stability limit)")
            ax.set_ylim(0, 1.4 * np.nanmax(v))
        ax.set(yscale="log" if c == 0 else "linear", xlabel="step size η")
        ax.set_title(f"({'abc'[c]}) dense d={config.state_dim}: {label}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Finite step size: dense student d={config.state_dim} from scale {config.scale}, "
        f"teacher {config.teacher}, k={config.train_len}, GD to loss < {config.loss_below} "
        f"or t = {config.t1}, {config.seeds} seeds"
    )
    save(fig, file)
