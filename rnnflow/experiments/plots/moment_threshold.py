"""The moment_threshold figure: (a) every seed's extrapolation error per cell, and in the cell the
summary names as `shown`: (b) the learned measures, (c) the impulse responses of the teacher, the
Lobatto counterexample and the median seeds, (d) the median loss and error over time."""

import numpy as np

from .. import _stats
from .base import figure, save


def plot(data, summary, config, file) -> None:
    ds, counter, shown = data["sweep"], summary["counterexample"], summary["shown"]
    k_below, k_at = config.train_lens
    colors = ("tab:red", "tab:blue")
    labels = (f"k = 2d̂ = {k_below}", f"k = 2d̂+1 = {k_at}")
    fig, axes = figure(2, 2, figsize=(11, 8.5))
    (a, b), (c, d) = axes

    ext = _stats.final(ds, "extrapolation")
    cells = [(dim, r) for dim in config.state_dims for r in config.init_radii]
    rng = np.random.default_rng(0)  # jitter, so that the seeds of a cell do not overlap
    for i, (dim, r) in enumerate(cells):
        for m, k in enumerate(config.train_lens):
            v = ext.sel(state_dim=dim, init_radius=r, train_len=k).values
            x = i + (m - 0.5) * 0.3 + rng.uniform(-0.06, 0.06, v.size)
            a.scatter(x, v, s=14, color=colors[m], alpha=0.7, label=labels[m] if i == 0 else None)
    a.axhline(counter["extrapolation"], color="k", ls="--", lw=1, label="Lobatto counterexample")
    a.set_xticks(range(len(cells)))
    a.set_xticklabels([f"d={dim}\nr={r}" for dim, r in cells], fontsize=8)
    a.set(yscale="log", ylabel=f"relative extrapolation error to q={config.horizon}")
    a.set_title("(a) extrapolation per seed")

    dim, r = shown["state_dim"], shown["init_radius"]
    cell = ds.sel(state_dim=dim, init_radius=r)
    end = cell.isel(time=-1)
    for m, k in enumerate(config.train_lens):
        lam = end.measure_eigenvalues.sel(train_len=k).values.ravel()
        w = end.measure_weights.sel(train_len=k).values.ravel()
        keep = np.isfinite(lam) & (w > 1e-8)
        b.scatter(lam[keep], w[keep], s=12, color=colors[m], alpha=0.6, label=labels[m])
    b.scatter(config.eigenvalues, config.weights, marker="*", s=200, color="k", label="teacher")
    hollow = dict(marker="D", s=50, facecolors="none", edgecolors="k")
    b.scatter(counter["nodes"], counter["weights"], **hollow, label="counterexample")
    b.set(yscale="log", xlabel="eigenvalue λ_j of A", ylabel="weight w_j = (v_jᵀ B)²")
    b.set_title(f"(b) learned measures, d={dim}, r={r}, all seeds")

    lags = np.arange(config.horizon)
    c.plot(lags, np.abs(counter["teacher_impulse"]), "k-", lw=2, label="teacher")
    c.plot(lags, np.abs(counter["impulse"]), "k--", label="counterexample")
    for m, (k, s) in enumerate(zip(config.train_lens, shown["seed"], strict=True)):
        if s >= 0:
            h = end.impulse.sel(train_len=k).values[s]
            c.plot(lags, np.abs(h), color=colors[m], label=f"student, {labels[m]} (median seed)")
    c.axvspan(0, k_at - 0.5, color="0.9")
    c.set(yscale="log", xlabel="lag i", ylabel="|h_i|")
    c.set_title(f"(c) impulse responses, r={r} (grey: lags < {k_at})")

    ts, medians = ds.time.values, _stats.seed_median(cell.where(_stats.ok(cell)))
    for m, k in enumerate(config.train_lens):
        for name, ls in (("loss", "-"), ("extrapolation", ":")):
            median = medians[name].sel(train_len=k).values[1:]
            d.plot(ts[1:], median, ls, color=colors[m], label=f"{name}, {labels[m]}")
    d.set(xscale="log", yscale="log", xlabel="time t = step × lr")
    d.set_title(f"(d) median loss and extrapolation error, r={r}")
    for ax in axes.ravel():
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Moment threshold: balanced SymmetricRNN students, teacher λ={list(config.eigenvalues)}"
        f" (d̂={len(config.eigenvalues)}), GD lr={config.lr}, t1={config.t1}, {config.seeds} seeds"
    )
    save(fig, file)
