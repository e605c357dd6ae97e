"""What every figure shares: a matplotlib figure on the Agg backend, saved as PNG, and the
median and quartile bands over seeds that ignore diverged (NaN) seeds.

Each experiment's figure lives in `plots/<experiment>.py` as `plot(data, summary, config,
file)`: `data` maps each sweep's name to its `xarray.Dataset`, `file` is a path or a binary
file. A figure only reads the saved results, never computes them.
"""

from .._common import log_axes as log_axes
from .._common import nanmedian as nanmedian
from .._common import nanquartiles as nanquartiles


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
