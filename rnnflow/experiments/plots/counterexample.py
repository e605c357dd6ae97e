"""The counterexample figure: the shift registers' and the GD students' impulse responses,
training losses and extrapolation errors, from the stores `registers` and `gd`."""

import numpy as np

from .. import _common
from .._stats import final
from .base import figure, save


def plot(data, summary, config, file) -> None:
    gd, registers = data["gd"].isel(init_scale=0), data["registers"].isel(time=0)
    free_parts = [str(name) for name in registers.free_part.values]
    k, d, q = config.train_len, config.state_dim, config.horizon
    lags = np.arange(q)
    colors = {"zeros": "tab:red", "random": "tab:orange", "teacher": "tab:purple"}
    fig, axes = figure(1, 3, figsize=(16, 5.2), gridspec_kw={"width_ratios": [1.6, 1, 1]})

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
    for name in free_parts:
        ax.plot(
            lags,
            registers.impulse.sel(free_part=name).isel(seed=0),
            ".-",
            color=colors[name],
            ms=4,
            lw=1,
            label=f"shift register, free part: {name}",
        )
    # The teacher is the config's input, not a result: drawn from its definition.
    teacher = _common.teacher(config.teacher).impulse_response(q)[:, 0, 0]
    ax.plot(lags, np.asarray(teacher), "k--", lw=2, label="teacher")
    ax.text(d, ax.get_ylim()[1] * 0.95, f" i = d = {d}", va="top", fontsize=8, color="0.4")
    ax.set(xlabel="lag i", ylabel="h_i")
    ax.set_title(f"(a) impulse responses (dense d={d} students; register: seed 0)")
    ax.legend(fontsize=8)

    names = free_parts + ["gd"]
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
        groups = [registers[field].sel(free_part=n).values for n in free_parts]
        for x, (v, name) in enumerate(zip(groups + [final(gd, field).values], names, strict=True)):
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
    save(fig, file)
