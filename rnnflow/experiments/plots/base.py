"""What every figure shares: a matplotlib figure on the Agg backend, saved as PNG, and the
median and quartile bands over seeds that ignore diverged (NaN) seeds.

Each experiment's figure lives in `plots/<experiment>.py` as `plot(data, summary, config,
file)`: `data` maps each sweep's name to its `xarray.Dataset`, `file` is a path or a binary
file. A figure only reads the saved results, never computes them.
"""

import numpy as np

from .._stats import nanmedian as nanmedian
from .._stats import nanquartiles as nanquartiles


def figure(nrows, ncols, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, **kwargs)


def save(fig, file, dpi=110) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(file, format="png", dpi=dpi)
    plt.close(fig)


def colors(name: str, n: int, stop: float = 1.0):
    """`n` colours evenly spread over the matplotlib colormap `name`, from its start to
    `stop` (below 1 leaves out its palest end), as an (n, 4) RGBA array."""
    from matplotlib import colormaps

    return colormaps[name](np.linspace(0.0, stop, n))


def seeds_over_time(ax, ts, values, scales, colors) -> None:
    """Per init scale, one thin line per seed and their median, thick, over the save times
    `ts` after time 0 (which a log axis cannot show); log axes where the values allow.
    `values` is (init_scale, seed, time), NaN for failed seeds."""
    for j, s in enumerate(scales):
        ax.plot(ts[1:], values[j, :, 1:].T, color=colors[j], lw=0.5, alpha=0.4)
        ax.plot(ts[1:], nanmedian(values[j], 0)[1:], color=colors[j], lw=2, label=f"σ={s:g}")
    log_axes(ax, values)
    ax.legend(fontsize=8)


def band(ax, x, values, style="o-", label=None):
    """The median of `values` over its last axis (the seeds; NaN, failed seeds, ignored)
    against `x`, a line in `style`, and the quartiles, a band of its colour. Returns
    `values`."""
    lo, hi = nanquartiles(values, -1)
    line = ax.plot(x, nanmedian(values, -1), style, label=label)[0]
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
    return values


def log_axes(ax, values, *, x: bool = True, y: bool = True) -> None:
    """Log scales on `ax`, or a note where `values` hold nothing positive and finite (every
    seed failed): a log axis without data cannot be drawn."""
    values = np.asarray(values, dtype=np.float64)
    if np.any(np.isfinite(values) & (values > 0)):
        if x:
            ax.set_xscale("log")
        if y:
            ax.set_yscale("log")
    else:
        ax.text(
            0.5,
            0.5,
            "no finite values:\nevery seed failed",
            transform=ax.transAxes,
            ha="center",
            va="center",
        )
