"""A model and its linearization in one run: the real and the lazy dynamics on one time axis,
so that `Save` metrics see both at every save (see `rnnflow._lens.linearize`)."""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._engine.objective import offered
from .laziness import kernel_change_metric, linearization_gap_metric, parameter_change_metric
from .params import SideBySide, _check_side_by_side
from .taylor import _centered, _taylor


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

    Centered (`centered=True`), both models output $f(θ) - f(θ_0)$ rather than $f(θ)$
    (Chizat, Oyallon & Bach 2019): $θ_0$, read from the linearization's expansion point
    and held like it, is each seed's own initialization, so both start from output zero and
    the linearization is $J(θ_0)δ$ (see [`rnnflow.side_by_side`][]).

    **Fields:** `loss`, the least-squares loss (e.g. `ImpulseLoss(...).bind(model)`), and
    `centered`.
    """

    loss: Callable
    centered: bool = eqx.field(static=True, default=False)

    def real_output(self, fn: Callable, params: SideBySide) -> PyTree:
        """`fn` (a function of the model's parameters) of the real model: $f(θ)$, or
        centered $f(θ) - f(θ_0) + f(0)$ ($f(0) = 0$ for an RNN's outputs)."""
        _check_side_by_side(params)
        if not self.centered:
            return fn(params.real)
        return _centered(fn, params.real, params.linear.theta0)

    def linear_output(self, fn: Callable, params: SideBySide) -> PyTree:
        """`fn` of the linearized model: $f(θ_0) + J(θ_0)δ$, or centered $f(0) + J(θ_0)δ$."""
        _check_side_by_side(params)
        return _taylor(fn, params.linear, centered=self.centered)

    def real_residuals(self, params: SideBySide) -> Float[Array, " m"]:
        """The real model's residuals $r(θ)$ (centered: $r(θ) - r(θ_0) + r(0)$), flattened."""
        return jnp.ravel(self.real_output(offered(self.loss, "residuals"), params))

    def linear_residuals(self, params: SideBySide) -> Float[Array, " m"]:
        """The linearized model's residuals $r(θ_0) + J(θ_0)δ$ (centered: $r(0) + J(θ_0)δ$),
        flattened."""
        return jnp.ravel(self.linear_output(offered(self.loss, "residuals"), params))

    def residuals(self, params: SideBySide) -> Float[Array, " n"]:
        """The real model's residuals, then the linearized model's, flattened."""
        return jnp.concatenate([self.real_residuals(params), self.linear_residuals(params)])

    def __call__(self, params: SideBySide) -> Float[Array, ""]:
        if self.centered:
            return jnp.sum(self.residuals(params) ** 2)
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
        return {
            "loss": lambda t, p: jnp.sum(self.real_residuals(p) ** 2),
            "linear_loss": lambda t, p: jnp.sum(self.linear_residuals(p) ** 2),
            "parameter_change": parameter_change_metric(),
            "kernel_change": kernel_change_metric(self.loss),
            "linearization_gap": linearization_gap_metric(self.loss),
        }


def side_by_side(loss_fn, *, centered: bool = False) -> SideBySideLoss:
    """A least-squares loss and its linearization at the initial parameters, trained in one
    run: the rich (real) and the lazy (kernel) dynamics on one time axis.

    **Arguments:**

    - `loss_fn`: a loss that offers `residuals` (`ImpulseLoss(teacher, k).bind(model)`, or
      a loss of yours with `residuals(params) -> r` and the loss $\\sum_i r_i^2$).
    - `centered`: train the centered model $f(θ) - f(θ_0)$ (Chizat, Oyallon & Bach 2019),
      $θ_0$ each seed's initialization, held: its residuals are $r(θ) - r(θ_0) + r(0)$,
      which is $f(θ) - f(θ_0) - y$ for a model with $f(0) = 0$ (every rnnflow RNN: its
      output is $C$ times its state). Both models then start from output zero, and the
      linearization is $J(θ_0)δ$. The kernel (and so `kernel_change_metric(loss_fn)`) and
      the linearization gap are those of the uncentered model. For a homogeneous model of
      degree $p$, init scale σ acts as Chizat's α = σᵖ: the relative change needed to fit
      falls like σ⁻ᵖ, and from large σ the run is lazy. Default: False.

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
    if not isinstance(centered, bool):
        raise TypeError(f"`centered` must be a bool; got {centered!r}.")
    return SideBySideLoss(loss_fn, centered)
