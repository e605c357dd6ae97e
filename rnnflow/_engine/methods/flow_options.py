"""The options of a gradient flow's diffrax solve, checked before anything is traced: the
solver, the step-size controller's type, the adjoint, and what they allow together; and the
default controller (tolerances by precision) with its guard against stalled solves."""

import diffrax
import jax
import jax.numpy as jnp

from ..objective import offered
from .rosenbrock import LeastSquaresRosenbrock
from .stall import StallGuard


def check_solver(solver) -> None:
    """Raise a `TypeError` unless `solver` is a diffrax ODE solver."""
    if not isinstance(solver, diffrax.AbstractSolver) or solver.term_structure not in (
        diffrax.AbstractTerm,
        diffrax.ODETerm,
    ):
        raise TypeError(
            "`solver` must be a diffrax ODE solver (e.g. diffrax.Tsit5(), diffrax.Kvaerno5(),"
            f" diffrax.Euler()); got {type(solver).__name__}."
        )


def check_controller_type(stepsize_controller) -> None:
    """Raise a `TypeError` unless `stepsize_controller` is a diffrax step-size controller."""
    if not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
        raise TypeError(
            "`stepsize_controller` must be a diffrax step-size controller; "
            f"got {type(stepsize_controller).__name__}."
        )


def check_adjoint(adjoint) -> None:
    """Raise a `TypeError` unless `adjoint` is a diffrax adjoint that differentiates a
    trajectory."""
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(
            "`adjoint` must be a diffrax adjoint (e.g. diffrax.RecursiveCheckpointAdjoint(), "
            "diffrax.BacksolveAdjoint(), diffrax.ForwardMode()); "
            f"got {type(adjoint).__name__}."
        )
    if isinstance(adjoint, diffrax.ImplicitAdjoint):
        raise TypeError(
            "diffrax.ImplicitAdjoint differentiates a steady state, not a trajectory; use "
            "RecursiveCheckpointAdjoint, BacksolveAdjoint, ForwardMode or DirectAdjoint."
        )


def check_together(solver, adjoint, loss_fn, stop) -> None:
    """Raise a `TypeError`/`ValueError` if `solver` and `adjoint` cannot train `loss_fn`
    with `stop`: the Rosenbrock solver without residuals or under a backsolve of its own,
    a backsolve asked to stop early."""
    rosenbrock = isinstance(solver, LeastSquaresRosenbrock)
    if rosenbrock and offered(loss_fn, "direction") is not None:
        raise TypeError(
            "LeastSquaresRosenbrock solves the flow of a least-squares loss from its "
            "residuals' Jacobian, which a rule's field does not have: use another solver "
            "(e.g. diffrax.Tsit5(), or diffrax.Kvaerno5() where the field is stiff)."
        )
    if rosenbrock and offered(loss_fn, "residuals") is None:
        raise TypeError(
            "LeastSquaresRosenbrock needs a least-squares loss that offers `residuals` "
            "(e.g. ImpulseLoss(...).bind(model) or SequenceLoss(...).bind(model)); got "
            f"{type(loss_fn).__name__}."
        )
    if isinstance(adjoint, diffrax.BacksolveAdjoint) and rosenbrock:
        if "solver" not in adjoint.kwargs:
            raise ValueError(
                "BacksolveAdjoint solves the adjoint equations with the forward solver, "
                "which LeastSquaresRosenbrock cannot (they are not a least-squares flow): "
                "give it one, e.g. BacksolveAdjoint(solver=diffrax.Tsit5())."
            )
    if isinstance(adjoint, diffrax.BacksolveAdjoint) and stop.loss_below is not None:
        raise ValueError(
            "BacksolveAdjoint cannot stop a seed early (diffrax's backsolve takes no "
            "events): remove `Stop.loss_below`, or use RecursiveCheckpointAdjoint."
        )


# The default PID tolerances (rtol, atol) by the parameters' bytes per number: float64,
# float32, 16-bit floats. float64's are the library's accuracy; the others keep rtol about
# 1000 and atol about 10 rounding errors above the precision's resolution (float32: eps =
# 1.2e-7). At float32 with atol = 1e-7 ≈ eps, Kvaerno5's Newton iterations failed on half
# the steps of a complex LRU's flow (6 600 steps to t1); with atol = 1e-6, 136 (float64 at
# rtol = 1e-4, atol = 1e-7: 158).
DEFAULT_TOLERANCES = {8: (1e-6, 1e-9), 4: (1e-4, 1e-6), 2: (1e-2, 1e-3)}


def default_controller(params) -> diffrax.PIDController:
    """The default PID controller for `params`, its tolerances by their precision (a complex
    number's precision is its parts': the methods train them)."""
    itemsize = jnp.finfo(jnp.result_type(*jax.tree.leaves(params))).bits // 8
    return diffrax.PIDController(*DEFAULT_TOLERANCES[min(max(itemsize, 2), 8)])


def stall_guarded(controller, stall: float | None, max_steps: int):
    """`controller` wrapped to stop a solve that stalls (see `stall.py`), where it adapts."""
    adaptive = isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
    if stall is None or not adaptive:
        return controller
    return StallGuard(controller, max_steps, max(100, max_steps // 100), stall)
