"""Pieces the experiments share: named teachers, methods from configs, robust statistics."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._methods import GradientDescent, GradientFlow, LeastSquaresRosenbrock
from .._seeds import init_seeds
from .._teachers import Teacher, modes_teacher
from .._trajectory import Result

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


def method(kind: str, *, lr: float, t1: float, rtol: float = 1e-6, max_steps: int = 200_000):
    """Gradient descent with step `lr`, or gradient flow, both to time `t1`. The flow runs
    to convergence over long horizons, where it is stiff: it is solved by the
    least-squares Rosenbrock solver, whose step follows accuracy rather than stability."""
    if kind == "gd":
        return GradientDescent(lr, int(round(t1 / lr)))
    import diffrax

    controller = diffrax.PIDController(rtol=rtol, atol=rtol * 1e-3)
    return GradientFlow(
        t1,
        solver=LeastSquaresRosenbrock(),
        stepsize_controller=controller,
        max_steps=max_steps,
    )


def seed_keys(seed: int, num: int):
    """`num` independent keys from the root seed, and their raw data for the results file."""
    keys = jax.random.split(jax.random.key(seed), num)
    return keys, np.asarray(jax.random.key_data(keys))


def masked(values, result) -> np.ndarray:
    """`values` as float64 numpy with failed seeds (diverged, solver failures) set to NaN, so
    that summaries exclude them; they are counted separately from `result`."""
    values = np.asarray(values, dtype=np.float64)
    ok = np.asarray(result) <= Result.converged
    ok = ok.reshape(ok.shape + (1,) * (values.ndim - ok.ndim))
    return np.where(ok, values, np.nan)


def median(values) -> float:
    """The median over all entries, ignoring NaN (failed seeds); NaN if no entry is finite."""
    values = np.asarray(values, dtype=np.float64)
    return float(nanmedian(values, axis=None)) if np.any(np.isfinite(values)) else float("nan")


def init_scales(model, keys, scales: tuple[float, ...]):
    """Unbalanced starts for `len(keys) // len(scales)` seeds at each scale, in one batch:
    seed s of scale j is row j · seeds + s. `init` draws each entry as σ · N(0, 1), so
    unit draws rescaled row by row are `init_seeds(..., scale=σ)`, and the random kernels
    compile once, not once per scale."""
    n = keys.shape[0] // len(scales)
    unit = init_seeds(model, keys, scale=1.0)
    rows = jnp.repeat(jnp.asarray(scales, unit.b.dtype), n)
    return jax.tree.map(lambda x: x * rows.reshape((-1,) + (1,) * (x.ndim - 1)), unit)


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
