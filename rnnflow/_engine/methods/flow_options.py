"""The options of a gradient flow's diffrax solve, checked before anything is traced: the
solver, the step-size controller's type, the adjoint, and what they allow together."""

import diffrax

from ..objective import offered
from .rosenbrock import LeastSquaresRosenbrock


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
