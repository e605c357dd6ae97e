"""The experiments' figures, each drawn from the labelled results and the summary.

Every function is `plot(data, summary, config, file)`: `data` maps each sweep's name to its
`xarray.Dataset`, `file` is a path or a binary file; the figure is written as PNG.
"""

import numpy as np

from .._engine.trajectory import Result
from . import _common
from ._common import final, log_axes, nanmedian, nanquartiles


def _figure(nrows, ncols, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, **kwargs)


def _save(fig, file, dpi=110) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(file, format="png", dpi=dpi)
    plt.close(fig)


def init_scale(data, summary, config, file) -> None:
    ds = data["sweep"]
    n_t = len(config.teachers)
    fig, axes = _figure(3, n_t, figsize=(4.2 * n_t, 9), squeeze=False, sharex=True)
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
                lo, hi = nanquartiles(v, -1)
                ax.plot(scales, nanmedian(v, -1), "o-", label=pname)
                ax.fill_between(scales, lo, hi, alpha=0.2)
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
    _save(fig, file)


def moment_threshold(data, summary, config, file) -> None:
    ds = data["sweep"]
    k_below, k_at = config.train_lens
    colors = ("tab:red", "tab:blue")
    labels = (f"k = 2d̂ = {k_below}", f"k = 2d̂+1 = {k_at}")
    counter = summary["counterexample"]
    fig, axes = _figure(2, 2, figsize=(11, 8.5))

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
    _save(fig, file)


def small_step(data, summary, config, file) -> None:
    import matplotlib.ticker
    from matplotlib import colormaps

    from .small_step import distances, slopes, spectral_radius

    dist = distances(data, config)
    fitted = slopes(dist)
    dense = "dense" in data
    fig, axes = _figure(2 if dense else 1, 3, figsize=(15, 9.5 if dense else 5), squeeze=False)
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
        converged = (ds.result == int(Result.converged)).values
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
    _save(fig, file)


def counterexample(data, summary, config, file) -> None:
    from .counterexample import FREE_PARTS, registers

    regs = registers(config)
    gd = data["gd"].isel(init_scale=0)
    k, d, q = config.train_len, config.state_dim, config.horizon
    lags = np.arange(q)
    colors = {"zeros": "tab:red", "random": "tab:orange", "teacher": "tab:purple"}
    fig, axes = _figure(1, 3, figsize=(16, 5.2), gridspec_kw={"width_ratios": [1.6, 1, 1]})

    ax = axes[0]
    ax.axvspan(-0.5, k - 0.5, color="0.9", label=f"training lags i < k = {k}")
    ax.axvline(d - 0.5, color="0.5", ls=":", lw=1)
    for s, h in enumerate(final(gd, "impulse").values):
        ax.plot(
            lags,
            h,
            color="tab:blue",
            lw=1,
            alpha=0.6,
            label="GD students, small init" if s == 0 else None,
        )
    for name in FREE_PARTS:
        ax.plot(
            lags,
            regs[name]["impulse"][0],
            ".-",
            color=colors[name],
            ms=4,
            lw=1,
            label=f"shift register, free part: {name}",
        )
    teacher = _common.teacher(config.teacher).impulse_response(q)[:, 0, 0]
    ax.plot(lags, np.asarray(teacher), "k--", lw=2, label="teacher")
    ax.text(d, ax.get_ylim()[1] * 0.95, f" i = d = {d}", va="top", fontsize=8, color="0.4")
    ax.set(xlabel="lag i", ylabel="h_i")
    ax.set_title(f"(a) impulse responses (dense d={d} students; register: seed 0)")
    ax.legend(fontsize=8)

    names = list(FREE_PARTS) + ["gd"]
    labels = [
        f"{'GD' if n == 'gd' else 'register'}\n{'small init' if n == 'gd' else n}\n"
        f"(dim {summary[n]['dim']:.0f})"
        for n in names
    ]
    floor = 1e-35
    for ax, field, title in (
        (axes[1], "loss", f"(b) training loss (lags < {k}); 0 drawn at {floor:.0e}"),
        (axes[2], "extrapolation", f"(c) relative extrapolation error to q={q}"),
    ):
        groups = [regs[n][field] for n in FREE_PARTS] + [final(gd, field).values]
        for x, (v, name) in enumerate(zip(groups, names, strict=True)):
            v = np.asarray(v, np.float64)
            jitter = np.linspace(-0.15, 0.15, v.size) if v.size > 1 else np.zeros(1)
            ax.scatter(
                x + jitter,
                np.maximum(v, floor),
                s=18,
                color=colors.get(name, "tab:blue"),
                alpha=0.8,
            )
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.suptitle(
        f"Shift registers vs gradient descent: teacher {config.teacher}, k={k}, d={d}, "
        f"GD lr={config.lr} from scale {config.scale}, {config.seeds} seeds "
        "(dim = Hankel rank of the learned response)"
    )
    _save(fig, file)


def learning_dynamics(data, summary, config, file) -> None:
    from matplotlib.lines import Line2D

    from .learning_dynamics import fits, times

    ds = data["sweep"]
    ok = _common.ok(ds)
    ts, scales = ds.time.values, np.asarray(config.scales)
    lam, p = config.eigenvalues, config.weights
    styles = ["-", "--", ":"]
    import matplotlib.pyplot as plt

    scale_colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(scales)))
    t = ts[1:]  # time 0 has no place on a log axis
    fig, axes = _figure(2, 2, figsize=(12, 9))

    ax = axes[0, 0]
    loss = ds.loss.where(ok).transpose("init_scale", "seed", "time").values
    for j, s in enumerate(scales):
        for curve in loss[j]:
            ax.plot(t, curve[1:], color=scale_colors[j], lw=0.5, alpha=0.4)
        ax.plot(t, nanmedian(loss[j], 0)[1:], color=scale_colors[j], lw=2, label=f"σ={s:g}")
    log_axes(ax, loss)
    ax.set(xlabel="time t = step × lr", ylabel="training loss")
    ax.set_title("Loss: one plateau per mode (thin: seeds, thick: median)")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    prog = ds.progress.where(ok).transpose("init_scale", "seed", "time", ...).values
    # Largest, middle and smallest scale only: fifteen curves would hide the staircase.
    shown = sorted({0, len(scales) // 2, len(scales) - 1})
    for i, j in enumerate(shown):
        med = nanmedian(prog[j], 0)
        for m in range(len(lam)):
            ax.plot(t, med[1:, m], color=f"C{m}", ls=styles[i], lw=1.5)
    ax.axhline(config.threshold, color="gray", lw=0.8, ls=":")
    log_axes(ax, np.where(np.isfinite(prog), 1.0, np.nan), y=False)
    # Headroom above the curves (1.5) for the legend; only transit spikes reach it.
    ax.set(ylim=(-0.3, 2.6), xlabel="time t", ylabel="weight nearest λ_m / p_m")
    ax.set_title("Per-mode progress, median over seeds (early spikes: transits)")
    handles = [
        Line2D([], [], color=f"C{m}", label=f"λ={e:g}, p={w:g}")
        for m, (e, w) in enumerate(zip(lam, p, strict=True))
    ]
    handles += [
        Line2D([], [], color="k", ls=styles[i], label=f"σ={scales[j]:g}")
        for i, j in enumerate(shown)
    ]
    ax.legend(handles=handles, fontsize=8, ncol=2, loc="upper left")

    # One panel per mode: their times differ by orders of magnitude, and each line is
    # straight only on its own linear axis.
    axes[1, 0].remove()
    cells = axes[1, 0].get_subplotspec().subgridspec(1, len(lam), wspace=0.45)
    x = np.log10(1.0 / scales)
    t_learn = times(ds, config).transpose("init_scale", "seed", "mode").values
    slope, intercept, r2, _ = fits(ds, config)
    rng = np.random.default_rng(0)
    for m in range(len(lam)):
        ax = fig.add_subplot(cells[0, m])
        jitter = 0.08 * (rng.random(t_learn.shape[1]) - 0.5)
        for j in range(len(scales)):
            ax.plot(x[j] + jitter, t_learn[j, :, m], ".", color=f"C{m}", alpha=0.6)
        sm, im, rm = (float(v[m]) for v in (slope, intercept, r2))
        fit = f"{sm:.3g} per decade\nr²={rm:.3f}" if np.isfinite(sm) else "not learned"
        if np.isfinite(sm):
            ax.plot(x, im + sm * x, color=f"C{m}")
        ax.set_title(f"λ={lam[m]:g}, p={p[m]:g}\n{fit}", fontsize=9)
        ax.set_xlabel("log10(1/σ)")
        ax.tick_params(labelsize=8)
        if m == 0:
            ax.set_ylabel(f"time to reach {config.threshold:g} × p_m")

    ax = axes[1, 1]
    small = ds.sel(init_scale=min(config.scales))
    keep = _common.ok(small).values
    ax.plot(
        small.measure_eigenvalues.isel(time=-1).values[keep].ravel(),
        small.measure_weights.isel(time=-1).values[keep].ravel(),
        "o",
        color="C7",
        ms=4,
        alpha=0.6,
        label="students (all units)",
    )
    ax.plot(lam, p, "x", color="k", ms=10, mew=2, label="teacher")
    ax.axhline(0.0, color="gray", lw=0.5)
    ax.set(xlabel="eigenvalue of A", ylabel="weight in h_i")
    ax.set_title(f"Learned measure at t = {ts[-1]:g}, σ={min(config.scales):g}")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"Learning dynamics: {config.parameterization} student d={config.state_dim}, "
        f"k={config.train_len}, GD lr={config.lr:g}, {config.seeds} seeds per scale\n"
        f"modes learned in weight order in {100 * summary['in_order_fraction']:.0f}% of seeds "
        f"that learned all of them ({100 * summary['learned_fraction']:.0f}%)"
    )
    _save(fig, file, dpi=100)


def nonlinear(data, summary, config, file) -> None:
    import matplotlib.pyplot as plt

    from .nonlinear import effective_dim

    ds = data["sweep"]
    ok = _common.ok(ds)
    ts, scales = ds.time.values, np.asarray(config.scales)
    colors = plt.cm.plasma(np.linspace(0.0, 0.85, len(scales)))
    t = ts[1:]
    fig, axes = _figure(2, 2, figsize=(12, 9))
    for ax, name, label in (
        (axes[0, 0], "loss", "training loss"),
        (axes[0, 1], "extrapolation", f"relative error at q={config.horizon}"),
    ):
        values = ds[name].where(ok).transpose("init_scale", "seed", "time").values
        for j, s in enumerate(scales):
            for curve in values[j]:
                ax.plot(t, curve[1:], color=colors[j], lw=0.5, alpha=0.4)
            ax.plot(t, nanmedian(values[j], 0)[1:], color=colors[j], lw=2, label=f"σ={s:g}")
        log_axes(ax, values)
        ax.set(xlabel="time t = step × lr", ylabel=label)
        ax.legend(fontsize=8)
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
    dims = effective_dim(ds, config).transpose("init_scale", "seed").values
    idx = np.arange(1, sv.shape[-1] + 1)
    for j, s in enumerate(scales):
        med = np.exp(nanmedian(np.log(np.where(sv[j] > 0, sv[j], np.nan)), 0))
        ax.plot(
            idx,
            med,
            "o-",
            color=colors[j],
            ms=3,
            label=f"σ={s:g}: effective dim {nanmedian(dims[j], 0):g}",
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
    _save(fig, file, dpi=100)


def lazy_rich(data, summary, config, file) -> None:
    ds = data["sweep"]
    n = len(config.parameterizations)
    fig, axes = _figure(3, n, figsize=(4.2 * n, 9.5), squeeze=False, sharex=True)
    scales = np.asarray(config.scales)

    def band(ax, name, p, style, label):
        v = final(ds, name).sel(parameterization=p).transpose("init_scale", "seed").values
        lo, hi = nanquartiles(v, 1)
        line = ax.plot(scales, nanmedian(v, 1), style, label=label)[0]
        ax.fill_between(scales, lo, hi, color=line.get_color(), alpha=0.2)
        return v

    for j, p in enumerate(config.parameterizations):
        cross = summary[p]["crossing"]
        ax = axes[0, j]
        v = band(ax, "kernel_change", p, "o-", "median, quartiles")
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
        a = band(ax, "extrapolation", p, "o-", "real")
        b = band(ax, "linear_extrapolation", p, "s--", "linearized")
        log_axes(ax, [a, b])
        ax = axes[2, j]
        band(ax, "dim", p, "o-", "real")
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
    _save(fig, file)


def edge_of_stability(data, summary, config, file) -> None:
    import matplotlib.pyplot as plt

    from .edge_of_stability import cases, crossing

    rows = cases(config)
    fig, axes = _figure(len(rows), 3, figsize=(16, 4.8 * len(rows)))
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
    _save(fig, file)
