"""[`rnnflow.GradientFlow`][]: the gradient flow solved by `diffrax.diffeqsolve`, saving at
given times and stopping each seed on its own events."""

import copy

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..checks import check_positive_int, check_real
from ..objective import Objective
from ..trajectory import Result, Save, Trajectory
from .base import AbstractMethod
from .flow_options import (
    DEFAULT_TOLERANCES,
    check_adjoint,
    check_controller_type,
    check_solver,
    check_together,
    default_controller,
    stall_guarded,
)
from .rosenbrock import LeastSquaresRosenbrock, LeastSquaresTerm, residual_jacobian
from .solve_report import (
    check_controller,
    gradient_evals,
    read_stopped_solve,
    result_code,
    warn_if_tolerance_below_precision,
)


class GradientFlow(AbstractMethod):
    """Gradient flow $\\dot θ = -\\nabla L(θ)$, solved by `diffrax.diffeqsolve`; for a
    rule ([`rnnflow.Rule`][]) the flow of its field, $\\dot θ = F(θ)$.

    **Arguments:**

    - `t1`: the end time.
    - `solver`: any diffrax ODE solver. Default `diffrax.Tsit5()` (adaptive, explicit, fifth
      order). The flow turns stiff near convergence, where an explicit solver's step is
      bounded by stability rather than accuracy: for long horizons on a least-squares loss
      use [`rnnflow.LeastSquaresRosenbrock`][] (linearly implicit, third order, with
      solves of the size of the number of residuals; 54-64× faster than Tsit5 at equal
      accuracy in `benchmarks/gradient_flow.py`). Tsit5 stays the default because it
      takes any loss and wins at tight tolerances on short, non-stiff horizons.
      [`rnnflow.UnrolledTsit5`][] takes Tsit5's steps without the copies of its stage
      buffer that `vmap` adds (up to 1.7× per step over many seeds with a cheap gradient).
    - `stepsize_controller`: default a `diffrax.PIDController` with tolerances that follow
      the parameters' precision: `rtol=1e-6, atol=1e-9` in float64, `rtol=1e-4,
      atol=1e-6` in float32 (float64's are within a few rounding errors of float32's
      resolution, where a solver's error estimate is noise: an implicit solver's Newton
      iterations then fail, steps are rejected, and the solve crawls), `rtol=1e-2,
      atol=1e-3` in 16-bit floats. A `diffrax.ConstantStepSize()` needs `dt0`.
    - `dt0`: the initial step; `None` lets an adaptive controller choose it.
    - `max_steps`: the most solver steps per seed (default 100 000); a seed that needs more
      ends with `Result.max_steps_reached` and keeps what it had.
    - `stall`: with an adaptive controller, a seed whose progress has collapsed stops as
      `Result.stalled` (and leaves the batch to the others) instead of holding it until
      `max_steps`: after max(100, `max_steps`/100) steps, when even `stall` × `max_steps`
      steps at its recent mean advance per step (rejected steps advancing nothing, so
      that an implicit solver's failing Newton iterations count) would not reach `t1`
      (default 1000; `None`: never). A seed that is merely slow runs on, and ends with
      `max_steps_reached` if it must.
    - `progress_meter`: a diffrax progress meter, e.g. `diffrax.TqdmProgressMeter()` or
      `diffrax.TextProgressMeter()`: for long flows (under `vmap`, it shows the slowest
      seed). [`rnnflow.train_seeds`][]`(progress=True)` gives a flow without one a
      `TextProgressMeter`.
    - `adjoint`: how the solve is differentiated, a diffrax adjoint:
      `diffrax.RecursiveCheckpointAdjoint()` (default: `jax.grad` through the solver's
      steps, with checkpointing), `diffrax.BacksolveAdjoint()` (solves the adjoint ODE
      backwards: little memory, approximate gradients; it cannot stop early, so a seed
      runs to `t1` and one that diverged is marked from its final loss; not with
      `LeastSquaresRosenbrock` unless given another `solver=`), `diffrax.ForwardMode()`
      (`jax.jvp`, `jax.jacfwd`) or `diffrax.DirectAdjoint()` (both modes).

    Tolerances may be arrays: `jax.vmap` over `PIDController(rtol=...)` solves each
    tolerance as a separate run would.

    ```python
    method = GradientFlow(t1=2000.0)
    method = GradientFlow(t1=2000.0, solver=LeastSquaresRosenbrock())
    ```
    """

    t1: float = eqx.field(static=True)
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    progress_meter: diffrax.AbstractProgressMeter = eqx.field(static=True)
    adjoint: diffrax.AbstractAdjoint
    stall: float | None = eqx.field(static=True)
    default_tolerances: bool = eqx.field(static=True)

    def __init__(
        self,
        t1: float,
        *,
        solver: diffrax.AbstractSolver | None = None,
        stepsize_controller: diffrax.AbstractStepSizeController | None = None,
        dt0: float | None = None,
        max_steps: int = 100_000,
        progress_meter: diffrax.AbstractProgressMeter | None = None,
        adjoint: diffrax.AbstractAdjoint | None = None,
        stall: float | None = 1000.0,
    ):
        check_real("t1", t1, positive=True)
        self.t1 = float(t1)
        solver = diffrax.Tsit5() if solver is None else solver
        check_solver(solver)
        self.default_tolerances = stepsize_controller is None
        if stepsize_controller is None:
            stepsize_controller = diffrax.PIDController(*DEFAULT_TOLERANCES[8])
        check_controller_type(stepsize_controller)
        if dt0 is not None:
            check_real("dt0", dt0, positive=True)
            dt0 = float(dt0)
        self.max_steps = check_positive_int("max_steps", max_steps)
        check_controller(stepsize_controller, dt0, self.t1, self.max_steps)
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.dt0 = dt0
        if stall is not None:
            check_real("stall", stall, positive=True)
            stall = float(stall)
        self.stall = stall
        self.progress_meter = (
            diffrax.NoProgressMeter() if progress_meter is None else progress_meter
        )
        adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
        check_adjoint(adjoint)
        self.adjoint = adjoint

    def controller(self, params):
        """The step-size controller for `params`: the default's tolerances follow their
        precision (`DEFAULT_TOLERANCES`)."""
        return default_controller(params) if self.default_tolerances else self.stepsize_controller

    def _controller(self, params):
        return stall_guarded(self.controller(params), self.stall, self.max_steps)

    def _with_meter(self, meter) -> "GradientFlow":
        # A copy with another (static) meter: `dataclasses.replace` would call __init__,
        # whose arguments are not the fields.
        new = copy.copy(self)
        object.__setattr__(new, "progress_meter", meter)
        return new

    def quiet(self) -> "GradientFlow":
        return self._with_meter(diffrax.NoProgressMeter())

    def with_progress(self) -> "GradientFlow":
        if not isinstance(self.progress_meter, diffrax.NoProgressMeter):
            return self
        return self._with_meter(diffrax.TextProgressMeter())

    def save_times(self, save: Save) -> np.ndarray:
        if save.every is not None:
            raise ValueError(
                "`Save.every` counts optimizer steps; a gradient flow has none. "
                "Give `Save.ts` or `Save.num` instead."
            )
        return save.times(self.t1)

    def vector_field(self, value_and_grad):
        """The right-hand side as a function of the parameters: here $-\\nabla L$."""
        return lambda params: jax.tree.map(jnp.negative, value_and_grad(params)[1])

    def check(self, loss_fn, stop) -> None:
        # Tolerances made traced (a sweep's setup), now known.
        check_controller(self.stepsize_controller, self.dt0, self.t1, self.max_steps)
        check_together(self.solver, self.adjoint, loss_fn, stop)

    def run(self, objective: Objective, params, *, save, stop, metrics, key=None) -> Trajectory:
        ts = self.save_times(save)
        warn_if_tolerance_below_precision(self.controller(params), params)

        # The objective travels as diffrax's `args`, not in a closure, so that every adjoint
        # (backsolve too) differentiates with respect to what it holds (a teacher, say).
        def field(objective, y):
            return self.vector_field(lambda p: objective.value_and_grad(p, fast=False))(y)

        if isinstance(self.solver, LeastSquaresRosenbrock):
            # Its stages work on the flat parameter vector (the Jacobian's columns are in
            # its order), so it is given one: no unravelling and ravelling at every stage.
            y0, unravel = ravel_pytree(params)
            jacobian = residual_jacobian(objective.residuals)
            term = LeastSquaresTerm(
                lambda t, y, args: ravel_pytree(field(args, unravel(y)))[0],
                lambda y: jacobian(unravel(y)),
            )
        else:
            y0, unravel = params, lambda y: y
            term = diffrax.ODETerm(lambda t, y, args: field(args, y))
        solve = dict(
            t0=0.0,
            t1=self.t1,
            dt0=self.dt0,
            y0=y0,
            args=objective,
            stepsize_controller=self._controller(params),
            max_steps=self.max_steps,
            throw=False,
            progress_meter=self.progress_meter,
            adjoint=self.adjoint,
        )
        if isinstance(self.adjoint, diffrax.BacksolveAdjoint):
            return self._run_backsolve(term, solve, objective, unravel, ts, save, stop, metrics)

        def save_fn(t, y, args):
            y = unravel(y)
            return metrics(t, objective.params(y)), (y if save.params else None)

        saveat = diffrax.SaveAt(
            subs=[diffrax.SubSaveAt(ts=ts, fn=save_fn), diffrax.SubSaveAt(t1=True)]
        )
        conds = {
            "diverged": lambda t, y, args, **kw: (
                ~jnp.isfinite(v := args.value(unravel(y))) | (v > stop.loss_above)
            )
        }
        if stop.loss_below is not None:
            conds["converged"] = lambda t, y, args, **kw: args.value(unravel(y)) < stop.loss_below
        sol = diffrax.diffeqsolve(
            term, self.solver, saveat=saveat, event=diffrax.Event(conds), **solve
        )
        saved, saved_params, final_y, t_stop, result = read_stopped_solve(sol, save_fn, conds)
        return self._trajectory(sol, ts, saved, saved_params, unravel(final_y), t_stop, result)

    def _run_backsolve(self, term, solve, objective, unravel, ts, save, stop, metrics):
        """Without events or save functions, which diffrax's backsolve does not take: the
        states at `ts` and `t1` are saved, and the metrics evaluated from them."""
        sol = diffrax.diffeqsolve(term, self.solver, saveat=diffrax.SaveAt(ts=ts, t1=True), **solve)
        ys = jax.vmap(unravel)(sol.ys)
        final = jax.tree.map(lambda x: x[-1], ys)
        saved_params = jax.tree.map(lambda x: x[:-1], ys)
        saved = jax.vmap(lambda t, y: metrics(t, objective.params(y)))(sol.ts[:-1], saved_params)
        value = objective.value(final)
        diverged = ~jnp.isfinite(value) | (value > stop.loss_above)
        result = jnp.where(diverged, Result.diverged, result_code(sol))
        saved_params = saved_params if save.params else None
        return self._trajectory(sol, ts, saved, saved_params, final, sol.ts[-1], result)

    def _trajectory(self, sol, ts, saved, saved_params, final, t_stop, result):
        return Trajectory(
            ts=jnp.asarray(ts),
            metrics=saved,
            params=saved_params,
            final=final,
            t_stop=t_stop,
            result=result,
            num_steps=sol.stats["num_steps"],
            num_grad_evals=gradient_evals(self.solver, sol.stats["num_steps"]),
        )
