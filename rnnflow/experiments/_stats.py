"""Statistics over the seeds of a labelled Dataset, robust to failed seeds (NaN): medians,
quartiles, the one slope fitter of the experiments, and plain numbers for a summary."""

import warnings

import numpy as np

import rnnflow as rf


def ok(ds):
    """Seeds that finished or converged (neither diverged nor failed), per point."""
    return ds.result <= int(rf.Result.converged)


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
