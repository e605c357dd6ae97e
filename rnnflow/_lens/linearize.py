r"""The linearized (neural tangent kernel) model, trained like any other, and its closed form.

The first-order Taylor model of a function $f$ of the parameters at $θ_0$ is

$$f_{\mathrm{lin}}(θ) = f(θ_0) + J(θ_0)\,(θ - θ_0), \qquad J = \partial f / \partial θ,$$

and its empirical neural tangent kernel is $K = J J^\top$ (outputs × outputs). For the
least-squares losses of rnnflow, $L = \sum_i r_i^2$ **without a factor ½**, the gradient
flow of the linearized model moves its residuals by $\dot r = J\dot θ = -2Kr$, so

$$r_t = e^{-2tK} r_0 \quad\text{(gradient flow)},\qquad
r_n = (I - 2ηK)^n r_0 \quad\text{(gradient descent, step η)},$$

and the modified flow of $L + \frac η4 \|\nabla L\|^2$ gives $r_t = e^{-2tK(I + ηK)} r_0$. For
$r = f - y$ this is $f_t = y + e^{-2tK}(f_0 - y)$: the lazy (kernel) dynamics in closed form
([`rnnflow.ntk_residuals`][]).

**Why the expansion point travels in the parameters.** [`rnnflow.train_seeds`][] maps over
a seed axis of the parameters only; arrays held by the loss are shared by every seed. So
that each seed is linearized at its own initialization, the linearized model's parameters
are a [`rnnflow.TaylorParams`][]: the expansion point $θ_0$ and the displacement
$δ = θ - θ_0$, both with the seed axis. The model holds $θ_0$ through `stop_gradient`, so
its gradient in $θ_0$ is zero and every method leaves $θ_0$ exactly where it started
(gradient descent subtracts zeros; a Runge–Kutta step adds zero stages): the linearized
dynamics are those of $δ$ alone. Two consequences:

- an adaptive solver's error norm (diffrax's root mean square) averages over every trained
  leaf, the still $θ_0$ included, so at a given `rtol` the error per component of $δ$ may
  be up to $\sqrt 2$ that of a solve over $δ$ alone (use a tolerance √2 tighter to match);
- a derivative of a whole run with respect to $θ_0$ (`jax.grad` through `train`) sees the
  expansion point as a constant: derivatives with respect to $δ_0$, a teacher or a step size
  are exact. Optimizers that change parameters without a gradient (weight decay) would move
  $θ_0$; plain gradient steps, momentum and Adam leave it (their updates of a zero
  gradient are zero).

[`rnnflow.side_by_side`][] runs a model and its linearization in one run, on one time axis,
so that Save metrics ([`rnnflow.kernel_change_metric`][], ...) see both at every save.
"""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._engine.objective import offered
from .laziness import parameter_change_metric
from .params import TaylorParams, _check_taylor_params
from .taylor import _check_callable, _taylor


class TaylorModel(eqx.Module):
    """$f_{\\mathrm{lin}}(θ_0, δ) = f(θ_0) + J(θ_0)δ$: the first-order Taylor model of `fn`,
    a function of [`rnnflow.TaylorParams`][] with outputs of `fn`'s structure. Made by
    [`rnnflow.linearize`][].

    To train it, square its errors: `lambda p: jnp.sum((f_lin(p) - y) ** 2)` is a loss
    like any other (or linearize a least-squares loss, which gives a
    [`rnnflow.LinearizedLoss`][]).
    """

    fn: Callable

    def __call__(self, params: TaylorParams) -> PyTree:
        return _taylor(self.fn, params)


class LinearizedLoss(eqx.Module):
    """A least-squares loss $\\sum_i r_i^2$ with its residuals linearized at $θ_0$:
    $L_{\\mathrm{lin}}(θ_0, δ) = \\sum_i (r_i(θ_0) + (J(θ_0)δ)_i)^2$, $J = \\partial r/\\partial θ$.
    Made by [`rnnflow.linearize`][] from a loss that offers `residuals`.

    It offers the engine its `residuals` (so [`rnnflow.LeastSquaresRosenbrock`][] solves its
    flow), the loss's parameter `check` (applied to $θ_0$), and `default_metrics`: the loss
    and the relative displacement $\\|δ\\|/\\|θ_0\\|$.

    **Fields:** `loss`, the loss linearized (e.g. `ImpulseLoss(...).bind(model)`).
    """

    loss: Callable

    def residuals(self, params: TaylorParams) -> Float[Array, " m"]:
        """$r(θ_0) + J(θ_0)δ$, flattened."""
        return jnp.ravel(_taylor(offered(self.loss, "residuals"), params))

    def __call__(self, params: TaylorParams) -> Float[Array, ""]:
        return jnp.sum(self.residuals(params) ** 2)

    @property
    def check(self):
        """The loss's own parameter check applied to $θ_0$ (`None` if the loss has none)."""
        own = offered(self.loss, "check")
        if own is None:
            return None

        def check(params):
            _check_taylor_params(params)
            own(params.theta0)

        return check

    def default_metrics(self) -> dict:
        return {"loss": lambda t, p: self(p), "parameter_change": parameter_change_metric()}


def linearize(f) -> TaylorModel | LinearizedLoss:
    """The first-order Taylor model of `f`, to train beside (or instead of) `f` itself.

    **Arguments:**

    - `f`: a function of the parameters (any pytree in, any pytree of arrays out), or a
      least-squares loss that offers `residuals` (an RNN loss bound to its student,
      `ImpulseLoss(teacher, k).bind(model)`, or a loss of yours).

    **Returns:**

    For a loss that offers `residuals`: a [`rnnflow.LinearizedLoss`][], the loss of the
    linearized residuals, which [`rnnflow.train`][] and [`rnnflow.train_seeds`][] train
    with every method. Otherwise: a [`rnnflow.TaylorModel`][],
    $f(θ_0) + J(θ_0)(θ - θ_0)$. Either is a function of [`rnnflow.TaylorParams`][]
    (the expansion point travels with the parameters, so each seed is linearized at its
    own initialization). Each evaluation is one Jacobian-vector product at $θ_0$: no
    Jacobian is formed.

    ```python
    model = DiagonalRNN(20)
    loss_fn = ImpulseLoss(modes_teacher([0.9], [1.0]), train_len=5).bind(model)
    params0 = init_seeds(model, jax.random.split(jax.random.key(0), 100), scale=0.3)
    lazy = train_seeds(linearize(loss_fn), TaylorParams(params0), GradientDescent(0.01, 1000))
    lazy.final.theta  # θ₀ + δ per seed
    ```
    """
    _check_callable("f", f)
    if offered(f, "residuals") is not None:
        return LinearizedLoss(f)
    return TaylorModel(f)
