"""A model and its linearization in one run: the real and the lazy dynamics on one time axis,
so that `Save` metrics see both at every save (see `rnnflow._linearize`)."""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from ._linearize import LinearizedLoss, TaylorParams
from ._objective import offered


class SideBySide(eqx.Module):
    """A model's parameters $θ$ beside its linearization's [`rnnflow.TaylorParams`][], the
    parameters of [`rnnflow.side_by_side`][].

    **Arguments:**

    - `real`: $θ$, the model's parameters (one seed, or with a leading seed axis).
    - `linear`: the linearized model's parameters. Default: `TaylorParams(real)`, the
      linearization at `real` with $δ = 0$: both start together.
    """

    real: PyTree
    linear: TaylorParams

    def __init__(self, real: PyTree, linear: TaylorParams | None = None):
        if linear is None:
            linear = TaylorParams(real)
        elif not isinstance(linear, TaylorParams):
            raise TypeError(f"`linear` must be TaylorParams; got {type(linear).__name__}.")
        self.real = real
        self.linear = linear


def _check_side_by_side(params) -> None:
    if not isinstance(params, SideBySide):
        raise TypeError(
            "a side-by-side run takes SideBySide parameters: start it from "
            f"`SideBySide(params0)`; got {type(params).__name__}."
        )


class SideBySideLoss(eqx.Module):
    """$L(θ) + L_{\\mathrm{lin}}(θ_0, δ)$: a least-squares loss and its linearization, over
    [`rnnflow.SideBySide`][] parameters. Made by [`rnnflow.side_by_side`][].

    The two terms share no parameter, so every method runs both dynamics at once, exactly
    as two runs would: gradient descent takes the same steps (equal to rounding), a flow
    solves both to its tolerance on one adaptive grid (which the stiffer of the two sets),
    and the modified flow's $\\|\\nabla L\\|^2$ splits into the two gradients. A
    `Stop(loss_below=...)` applies to the sum.

    It offers the engine its `residuals` (both residual vectors, concatenated), the loss's
    parameter `check`, and `default_metrics`: the real and the linearized loss, the relative
    parameter change, the relative kernel change and the linearization gap of the residuals
    (see [`rnnflow.kernel_change_metric`][]).

    **Fields:** `loss`, the least-squares loss (e.g. `ImpulseLoss(...).bind(model)`).
    """

    loss: Callable

    def linear_residuals(self, params: SideBySide) -> Float[Array, " m"]:
        """The linearized model's residuals $r(θ_0) + J(θ_0)δ$, flattened."""
        return LinearizedLoss(self.loss).residuals(params.linear)

    def residuals(self, params: SideBySide) -> Float[Array, " n"]:
        """$r(θ)$, then $r(θ_0) + J(θ_0)δ$, flattened."""
        _check_side_by_side(params)
        real = jnp.ravel(offered(self.loss, "residuals")(params.real))
        return jnp.concatenate([real, self.linear_residuals(params)])

    def __call__(self, params: SideBySide) -> Float[Array, ""]:
        _check_side_by_side(params)
        return self.loss(params.real) + jnp.sum(self.linear_residuals(params) ** 2)

    @property
    def check(self):
        """The loss's own parameter check applied to $θ$ and $θ_0$ (`None` if it has none)."""
        own = offered(self.loss, "check")
        if own is None:
            return None

        def check(params):
            _check_side_by_side(params)
            own(params.real)
            own(params.linear.theta0)

        return check

    def default_metrics(self) -> dict:
        from ._laziness import (
            kernel_change_metric,
            linearization_gap_metric,
            parameter_change_metric,
        )

        return {
            "loss": lambda t, p: self.loss(p.real),
            "linear_loss": lambda t, p: jnp.sum(self.linear_residuals(p) ** 2),
            "parameter_change": parameter_change_metric(),
            "kernel_change": kernel_change_metric(self.loss),
            "linearization_gap": linearization_gap_metric(self.loss),
        }


def side_by_side(loss_fn) -> SideBySideLoss:
    """A least-squares loss and its linearization at the initial parameters, trained in one
    run: the rich (real) and the lazy (kernel) dynamics on one time axis.

    **Arguments:**

    - `loss_fn`: a loss that offers `residuals` (`ImpulseLoss(teacher, k).bind(model)`, or
      a loss of yours with `residuals(params) -> r` and the loss $\\sum_i r_i^2$).

    **Returns:**

    A [`rnnflow.SideBySideLoss`][], a function of [`rnnflow.SideBySide`][] parameters.
    Start it from `SideBySide(params0)` (one seed, or a seed axis for
    [`rnnflow.train_seeds`][]); its Save metrics see $θ_t$, $θ_0$ and $δ_t$ at every save,
    per seed ([`rnnflow.parameter_change_metric`][], [`rnnflow.kernel_change_metric`][],
    [`rnnflow.linearization_gap_metric`][]).

    ```python
    model = DiagonalRNN(20)
    loss_fn = ImpulseLoss(modes_teacher([0.9], [1.0]), train_len=5).bind(model)
    params0 = init_seeds(model, jax.random.split(jax.random.key(0), 100), scale=0.3)
    traj = train_seeds(side_by_side(loss_fn), SideBySide(params0), GradientFlow(100.0))
    traj.metrics["kernel_change"]  # (100 seeds, 101 saves)
    ```
    """
    if offered(loss_fn, "residuals") is None:
        raise TypeError(
            "`loss_fn` must be a least-squares loss that offers `residuals` (e.g. "
            "ImpulseLoss(...).bind(model), or a module with `residuals(params)` and "
            f"`__call__` = sum of their squares); got {type(loss_fn).__name__}."
        )
    return SideBySideLoss(loss_fn)


# -- the kernel and the closed form -------------------------------------------------------
