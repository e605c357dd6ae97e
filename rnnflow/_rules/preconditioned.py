r"""A preconditioned gradient: $F(θ) = -P(θ)\,\nabla L(θ)$ for a positive definite $P(θ)$.

Natural gradient ($P$ the inverse Fisher matrix), Gauss–Newton, diagonal rescalings
(Adagrad's and RMSProp's in their flow limit) and mirror descent in its dual coordinates
are of this form. For a constant $P$ it is the gradient flow of $L$ in the metric $P^{-1}$
(on a quadratic $L = \frac12 θ^\top A θ$: $θ(t) = e^{-tPA} θ_0$); for a $P$ that varies
with $θ$ it is, in general, no gradient of any function. It decreases $L$ along the flow,
$\dot L = -\nabla L^\top P \nabla L \le 0$, and shares $L$'s critical points.
"""

from collections.abc import Callable

import equinox as eqx
import jax

from .._engine.objective import offered


class Preconditioned(eqx.Module):
    """The rule $F(θ) = -P(θ)\\nabla L(θ)$, judged by the loss $L$.

    **Arguments:**

    - `loss`: `loss(params) -> scalar`, differentiated by autodiff (or through its own
      `value_and_grad` where it offers one).
    - `precondition`: `precondition(params, grad) -> P(θ) grad`, a pytree like `grad`: the
      preconditioner applied to the gradient (no matrix need be formed). It should be
      positive definite for $L$ to decrease.

    ```python
    def precondition(theta, g):  # a diagonal metric that varies with θ
        return g / (1.0 + theta**2)

    rule = Preconditioned(loss_fn, precondition)
    ```
    """

    loss: Callable
    precondition: Callable

    def __check_init__(self):
        if not callable(self.loss):
            raise TypeError(f"`loss` must be callable; got {type(self.loss).__name__}.")
        if not callable(self.precondition):
            raise TypeError(
                "`precondition` must be callable as precondition(params, grad) -> P grad; "
                f"got {type(self.precondition).__name__}."
            )

    def _grad(self, params):
        own = offered(self.loss, "value_and_grad")
        trainable, fixed = eqx.partition(params, eqx.is_inexact_array)
        if own is not None:
            return eqx.filter(own(params)[1], eqx.is_inexact_array)
        return jax.grad(lambda p: self.loss(eqx.combine(p, fixed)))(trainable)

    def direction(self, params):
        return jax.tree.map(lambda g: -g, self.precondition(params, self._grad(params)))

    def __call__(self, params):
        return self.loss(params)

    def default_metrics(self) -> dict:
        own = offered(self.loss, "default_metrics")
        return dict(own()) if own is not None else {"loss": lambda t, p: self.loss(p)}

    @property
    def check(self):
        return offered(self.loss, "check")  # the loss's, where it offers one
