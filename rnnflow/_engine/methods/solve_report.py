"""A diffrax solve in rnnflow's terms: checks of its step-size controller, the result
codes and gradient evaluations it reports, and a warning for tolerances the precision
cannot meet."""

import math
import warnings

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ..trajectory import Result
from .rosenbrock import LeastSquaresRosenbrock
from .stall import STALLED


def result_code(sol):
    """The rnnflow result code of diffrax's outcome (events are read by the caller)."""
    result = jnp.asarray(Result.solver_failed)
    result = jnp.where(sol.result == diffrax.RESULTS.successful, Result.finished, result)
    result = jnp.where(sol.result == STALLED, Result.stalled, result)
    return jnp.where(
        sol.result == diffrax.RESULTS.max_steps_reached, Result.max_steps_reached, result
    )


def read_stopped_solve(sol, save_fn, conds):
    """The saves, final state, stop time and result code of a solve that saves at given
    times and at its end (`SubSaveAt`s `(ts, t1)`) and stops on the events `conds`
    (`diverged`, and `converged` if given). Save times after an early stop are not
    reached (diffrax fills them with inf): they hold the state the seed stopped in, as
    gradient descent does.

    Returns `(saved, saved_params, final_y, t_stop, result)`, `final_y` the flat state.
    """
    (saved, saved_params), final = sol.ys
    final_y = jax.tree.map(lambda x: x[0], final)
    t_stop = sol.ts[1][0]
    reached = sol.ts[0] <= t_stop
    last = save_fn(t_stop, final_y, None)

    def fill(s, f):
        return jnp.where(reached.reshape((-1,) + (1,) * f.ndim), s, f[None])

    saved, saved_params = jax.tree.map(fill, (saved, saved_params), last)
    result = result_code(sol)
    event = sol.result == diffrax.RESULTS.event_occurred
    result = jnp.where(event & sol.event_mask["diverged"], Result.diverged, result)
    if "converged" in conds:
        result = jnp.where(event & sol.event_mask["converged"], Result.converged, result)
    return saved, saved_params, final_y, t_stop, result


def gradient_evals(solver, num_steps):
    # Explicit Runge-Kutta solvers evaluate the vector field once per stage, on accepted and
    # rejected steps alike. FSAL tableaux reuse the last stage of a step as the first of the
    # next, saving one per step, except on the first step (if any), which has no previous one.
    # LeastSquaresRosenbrock takes one per stage and one at the start (the last, at the new
    # point, is the next step's first; its residual Jacobians, one per step, are not
    # counted). Implicit solvers depend on their Newton iterations, which diffrax does not
    # report: -1 then.
    if isinstance(solver, LeastSquaresRosenbrock):
        return solver.stages * num_steps + 1
    tableau = getattr(solver, "tableau", None)
    if isinstance(solver, diffrax.AbstractImplicitSolver) or tableau is None:
        return num_steps if isinstance(solver, diffrax.Euler) else jnp.asarray(-1)
    stages = len(tableau.c) + 1
    return num_steps * (stages - 1) + (num_steps > 0) if tableau.fsal else num_steps * stages


def warn_if_tolerance_below_precision(controller, params) -> None:
    # A relative tolerance within a few ulps of the dtype's resolution cannot be met: the
    # controller then shrinks the step until max_steps, or accepts noise. Warned at trace time.
    rtol = getattr(controller, "rtol", None)
    if rtol is None or isinstance(rtol, jax.core.Tracer):
        return
    eps = float(jnp.finfo(jnp.result_type(*jax.tree.leaves(params))).eps)
    if rtol < 4 * eps:
        warnings.warn(
            f"rtol={rtol:g} is below what {jnp.result_type(*jax.tree.leaves(params))} can "
            f"deliver (4 × eps = {4 * eps:.1e}); compute in float64 "
            "(jax.config.update('jax_enable_x64', True), or `rnnflow run --float64`) or "
            "loosen rtol.",
            stacklevel=2,
        )


def check_controller(controller, dt0, t1: float, max_steps: int) -> None:
    """Raise a `ValueError` naming the setting if `controller` cannot solve to `t1`:
    tolerances that are not finite and non-negative (where known before tracing), or a
    constant step without `dt0` or needing more than `max_steps` steps."""
    if isinstance(controller, diffrax.ConstantStepSize):
        if dt0 is None:
            raise ValueError("a constant step size needs `dt0`.")
        if math.ceil(t1 / dt0) > max_steps:
            raise ValueError(
                f"a constant step dt0 = {dt0:g} needs {math.ceil(t1 / dt0)} steps to t1 = "
                f"{t1:g}, more than max_steps = {max_steps}."
            )
    for name in ("rtol", "atol"):
        tol = getattr(controller, name, None)
        if tol is None or isinstance(tol, jax.core.Tracer):
            continue
        tol = np.asarray(tol, dtype=np.float64)
        if not np.all(np.isfinite(tol) & (tol >= 0)):
            raise ValueError(
                f"`stepsize_controller.{name}` must be finite and non-negative; got {tol}."
            )
