"""Pieces the experiments share: named teachers, config checks, methods and init-scale
sweeps from configs, per-point metrics, the one slope fitter, and robust statistics over
the seeds of a labelled Dataset."""

import dataclasses
import warnings
from collections.abc import Callable

import equinox as eqx
import jax
import numpy as np

from .._engine.methods import GradientDescent, GradientFlow, LeastSquaresRosenbrock
from .._engine.trajectory import Result, Save, Stop
from .._rnn.teachers import Teacher, modes_teacher
from .._sweeps.sweep import Sweep

# Named teachers (eigenvalues, weights): short memory, long memory (eigenvalue 1),
# two modes of opposite sign (one oscillating), and three modes of distinct weights.
TEACHERS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "short": ((0.9,), (1.0,)),
    "long": ((1.0,), (1.0,)),
    "two_modes": ((0.9, -0.6), (1.0, 0.5)),
    "three_modes": ((0.95, 0.6, -0.5), (1.0, 0.4, 0.15)),
}


def teacher(name: str) -> Teacher:
    eigenvalues, weights = TEACHERS[name]
    return modes_teacher(eigenvalues, weights)


def check_teachers(config, *fields: str) -> None:
    """Raise a `ValueError` naming the first of the config's `fields` that is not a named
    teacher (for a list, not every entry one)."""
    for field in fields:
        check_among(config, field, TEACHERS)


def check_among(config, field: str, allowed) -> None:
    """Raise a `ValueError` naming the config's `field` if its value (for a list, any entry)
    is not among `allowed`."""
    value = getattr(config, field)
    if any(v not in allowed for v in (value if isinstance(value, tuple) else (value,))):
        raise ValueError(f"`{field}` must be one of {tuple(allowed)}; got {value!r}.")


def method(kind: str, *, lr: float, t1: float, rtol: float = 1e-6, max_steps: int = 200_000):
    """Gradient descent with step `lr`, or gradient flow, both to time `t1`. The flow runs
    to convergence over long horizons, where it is stiff: it is solved by the
    least-squares Rosenbrock solver, whose step follows accuracy rather than stability."""
    if kind == "gd":
        return GradientDescent(lr, int(round(t1 / lr)))
    return GradientFlow(
        t1, solver=LeastSquaresRosenbrock(), stepsize_controller=pid(rtol), max_steps=max_steps
    )


def pid(rtol: float):
    """The flows' step-size controller: PID at relative tolerance `rtol`, absolute
    tolerance `rtol` × 1e-3 (the losses are of order one at the start)."""
    import diffrax

    return diffrax.PIDController(rtol=rtol, atol=rtol * 1e-3)


def root_key(seed: int, part: int = 0):
    """The root PRNG key of a sweep: `seed`'s key, folded with `part` for the second and
    later sweeps of an experiment (seed s of part 0 is the same at every point of it)."""
    key = jax.random.key(seed)
    return key if part == 0 else jax.random.fold_in(key, part)


def check_steps(config) -> None:
    """Raise a `ValueError` if gradient descent at the config's `lr` takes no step before its
    `t1`, or (for a config with `num_saves`) fewer than two saves are asked for."""
    if config.lr > config.t1:
        raise ValueError("`lr` must not exceed `t1` (at least one step).")
    if getattr(config, "num_saves", 2) < 2:
        raise ValueError("`num_saves` must be at least 2.")


def scale_sweep(config, model, loss_fn, save: Save, *, scales=None, stop: Stop = Stop()) -> Sweep:
    """The sweep of an experiment that varies the initialization only: `config.seeds` seeds
    (root key of `config.seed`) from `model.init` at each entry scale σ of the axis
    `init_scale` (default `config.scales`), trained on `loss_fn` by gradient descent at
    `config.lr` to `config.t1`."""
    gd = method("gd", lr=config.lr, t1=config.t1)

    def setup(point, key):
        return loss_fn, model.init(key=key, scale=point["init_scale"]), gd

    axes = {"init_scale": config.scales if scales is None else scales}
    return Sweep(axes, config.seeds, setup, root_key(config.seed), save, stop)


# -- metrics that depend on the point --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricsOf:
    """`fn(loss_fn, config) -> {name: metric}` for a given config, equal whenever the
    config is: a static field of a compiled program, so equal values share the program."""

    fn: Callable
    config: object

    def __call__(self, loss_fn) -> dict:
        return self.fn(loss_fn, self.config)


class Measured(eqx.Module):
    """A bound RNN loss that records `metrics(loss_fn)` when `Save` names no metrics.

    A sweep has one `Save` for every point, while what is measured can depend on the
    point: the student of a looped `parameterization` or `state_dim` axis, the teacher of
    a `teacher` axis. The loss of each point knows them, so the metrics are made from it.
    Everything the engine may ask of the loss (`residuals`, `check`, the closed-form
    `value_and_grad` and fused `descend` of a diagonal student) is passed through.
    """

    loss_fn: Callable
    metrics: Callable = eqx.field(static=True)

    def __call__(self, params):
        return self.loss_fn(params)

    def default_metrics(self) -> dict:
        return self.metrics(self.loss_fn)

    def check(self, params) -> None:
        self.loss_fn.check(params)

    @property
    def residuals(self):
        return getattr(self.loss_fn, "residuals", None)

    @property
    def value_and_grad(self):
        return getattr(self.loss_fn, "value_and_grad", None)

    @property
    def descend(self):
        return getattr(self.loss_fn, "descend", None)


# -- statistics over seeds -------------------------------------------------------------------


def ok(ds):
    """Seeds that finished or converged (neither diverged nor failed), per point."""
    return ds.result <= int(Result.converged)


def final(ds, name: str):
    """Metric `name` at the last save (the end of the run, or where a seed stopped), NaN
    for failed seeds: they are counted from `result`, not averaged."""
    return ds[name].isel(time=-1).where(ok(ds))


def seed_median(values, dim="seed"):
    """The median of a DataArray over `dim` (default the seeds; `...` for all) ignoring NaN
    (failed seeds), NaN where nothing is finite."""
    with warnings.catch_warnings():  # all-NaN slices: every seed failed there
        warnings.simplefilter("ignore", RuntimeWarning)
        return values.median(dim, skipna=True)


def median(values) -> float:
    """The median over all entries of an array, ignoring NaN (failed seeds); NaN if no entry
    is finite."""
    values = np.asarray(values, dtype=np.float64)
    return float(nanmedian(values, axis=None)) if np.any(np.isfinite(values)) else float("nan")


def quartiles(values) -> dict:
    """Median and quartiles over the finite entries of an array (NaN where none)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values).any()
    q25, q75 = np.nanpercentile(values, [25, 75]) if finite else (np.nan, np.nan)
    return {"median": median(values), "q25": float(q25), "q75": float(q75)}


def number(x) -> float:
    """A 0-d DataArray or array as a Python float."""
    return float(np.asarray(x))


def numbers(x) -> list:
    """A 1-d DataArray or array as a list of Python floats."""
    return [float(v) for v in np.asarray(x, np.float64).ravel()]


def fit_line(x, y, dim: str):
    """Least-squares line `y ≈ intercept + slope · x` along `dim`, through the finite
    points only, for every other index at once: the one slope fitter of the experiments
    (convergence orders against log η, plateau lengths against log 1/σ).

    **Arguments:**

    - `x`, `y`: `xarray.DataArray`s that broadcast against each other (e.g. `x` the
      coordinate of `dim`, `y` over `dim` and seeds). Transform them first for a log-log
      slope: `fit_line(np.log(ds.lr), np.log(err), "lr")`.
    - `dim`: the dimension fitted along.

    **Returns:**

    `(slope, intercept, r2)`, DataArrays over the other dimensions; NaN where fewer than
    two finite points (or all at one `x`).

    ```python
    slope, _, _ = fit_line(np.log(ds.lr), np.log(distance), "lr")  # per seed and time
    ```
    """
    import xarray as xr

    x, y = xr.broadcast(x, y)
    valid = np.isfinite(x) & np.isfinite(y)
    w = valid.astype(float)
    x, y = x.where(valid, 0.0), y.where(valid, 0.0)
    n = w.sum(dim)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = (w * x).sum(dim) / n, (w * y).sum(dim) / n
        sxx = (w * (x - mx) ** 2).sum(dim)
        sxy = (w * (x - mx) * (y - my)).sum(dim)
        syy = (w * (y - my) ** 2).sum(dim)
        fits = (n >= 2) & (sxx > 0)
        slope = (sxy / sxx).where(fits)
        r2 = (sxy**2 / (sxx * syy)).where(fits & (syy > 0))
    return slope, (my - slope * mx).where(fits), r2


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


def nanmedian(values, axis):
    """`np.nanmedian` without the warning for all-NaN slices (failed seeds): NaN there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def nanquartiles(values, axis):
    """The first and third quartiles along `axis`, ignoring NaN, without the warnings for
    all-NaN slices (a scale where every seed failed) or infinite entries (an overflowed
    error): NaN there."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(values, [25, 75], axis=axis)
