"""The moment_threshold figure."""

import numpy as np

from .. import _common
from .._common import final
from .base import figure, save


def plot(data, summary, config, file) -> None:
    ds = data["sweep"]
    k_below, k_at = config.train_lens
    colors = ("tab:red", "tab:blue")
    labels = (f"k = 2d̂ = {k_below}", f"k = 2d̂+1 = {k_at}")
    counter = summary["counterexample"]
    fig, axes = figure(2, 2, figsize=(11, 8.5))

    # (a) per-seed extrapolation error for each (d, r) cell, both training lengths.
    ax = axes[0, 0]
    ext = final(ds, "extrapolation")
    cells = [(d, r) for d in config.state_dims for r in config.init_radii]
    rng = np.random.default_rng(0)
    for c, (d, r) in enumerate(cells):
        for m, k in enumerate(config.train_lens):
            v = ext.sel(state_dim=d, init_radius=r, train_len=k).values
            x = c + (m - 0.5) * 0.3 + rng.uniform(-0.06, 0.06, v.size)
            ax.scatter(x, v, s=14, color=colors[m], alpha=0.7, label=labels[m] if c == 0 else None)
    ax.axhline(counter["extrapolation"], color="k", ls="--", lw=1, label="Lobatto counterexample")
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f"d={d}\nr={r}" for d, r in cells], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(f"relative extrapolation error to q={config.horizon}")
    ax.set_title("(a) extrapolation per seed")
    ax.legend(fontsize=8)

    # (b)-(d): the widest start of the first student size, where k = 2d̂ fails most.
    d0, r_wide = config.state_dims[0], config.init_radii[-1]
    cell = ds.sel(state_dim=d0, init_radius=r_wide)

    ax = axes[0, 1]
    for m, k in enumerate(config.train_lens):
        lam = cell.measure_eigenvalues.isel(time=-1).sel(train_len=k).values.ravel()
        w = cell.measure_weights.isel(time=-1).sel(train_len=k).values.ravel()
        keep = np.isfinite(lam) & (w > 1e-8)
        ax.scatter(lam[keep], w[keep], s=12, color=colors[m], alpha=0.6, label=labels[m])
    ax.scatter(config.eigenvalues, config.weights, marker="*", s=200, color="k", label="teacher")
    ax.scatter(
        counter["nodes"],
        counter["weights"],
        marker="D",
        s=50,
        facecolors="none",
        edgecolors="k",
        label="counterexample",
    )
    ax.set_yscale("log")
    ax.set(xlabel="eigenvalue λ_j of A", ylabel="weight w_j = (v_jᵀ B)²")
    ax.set_title(f"(b) learned measures, d={d0}, r={r_wide}, all seeds")
    ax.legend(fontsize=8)

    # (c) impulse responses: teacher, counterexample, median-error seed at each k.
    ax = axes[1, 0]
    lags = np.arange(config.horizon)
    teacher = np.sum(
        np.asarray(config.weights)[:, None] * np.asarray(config.eigenvalues)[:, None] ** lags, 0
    )
    counter_h = np.sum(
        np.asarray(counter["weights"])[:, None] * np.asarray(counter["nodes"])[:, None] ** lags, 0
    )
    ax.plot(lags, np.abs(teacher), "k-", lw=2, label="teacher")
    ax.plot(lags, np.abs(counter_h), "k--", label="counterexample")
    for m, k in enumerate(config.train_lens):
        v = final(cell, "extrapolation").sel(train_len=k).values
        if np.any(np.isfinite(v)):
            s = int(np.nanargmin(np.abs(v - np.nanmedian(v))))
            h = cell.impulse.isel(time=-1).sel(train_len=k).values[s]
            ax.plot(lags, np.abs(h), color=colors[m], label=f"student, {labels[m]} (median seed)")
    ax.axvspan(0, k_at - 0.5, color="0.9")
    ax.set_yscale("log")
    ax.set(xlabel="lag i", ylabel="|h_i|")
    ax.set_title(f"(c) impulse responses, r={r_wide} (grey: lags < {k_at})")
    ax.legend(fontsize=8)

    # (d) training loss and extrapolation over time, median over the cell's seeds.
    ax = axes[1, 1]
    ts = ds.time.values
    for m, k in enumerate(config.train_lens):
        for name, ls in (("loss", "-"), ("extrapolation", ":")):
            curve = cell[name].sel(train_len=k).where(_common.ok(cell).sel(train_len=k))
            ax.plot(
                ts[1:],
                _common.seed_median(curve).values[1:],
                ls,
                color=colors[m],
                label=f"{name}, {labels[m]}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time t = step × lr")
    ax.set_title(f"(d) median loss and extrapolation error, r={r_wide}")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Moment threshold: balanced SymmetricRNN students, teacher λ={list(config.eigenvalues)}"
        f" (d̂={len(config.eigenvalues)}), GD lr={config.lr}, t1={config.t1}, {config.seeds} seeds"
    )
    save(fig, file)
