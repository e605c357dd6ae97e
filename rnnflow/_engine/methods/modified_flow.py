"""[`rnnflow.ModifiedFlow`][]: the gradient flow of the modified loss that gradient descent
follows to second order."""

import jax

from ..checks import check_real
from .gradient_flow import GradientFlow


class ModifiedFlow(GradientFlow):
    """The flow of the modified loss $\\tilde L = L + \\frac{η}{4}\\|\\nabla L\\|^2$; for a
    rule with field $F$ ([`rnnflow.Rule`][]), $\\dot θ = F - \\frac{η}{2} DF\\,F$.

    Backward error analysis: gradient descent with step η follows this flow to second order,
    $O(η^2)$ over a fixed time horizon, while the plain gradient flow is only $O(η)$ away.
    Euler's step $θ + ηF$ matches the flow's Taylor series $θ + ηF + \\frac{η^2}{2} DF\\,F$
    to second order once $\\frac{η}{2} DF\\,F$ is taken off the field; for
    $F = -\\nabla L$, $DF\\,F = H \\nabla L$ and this is the modified loss's flow.
    Each vector-field evaluation needs a Jacobian-vector product (for a loss, a
    Hessian-vector product).

    **Arguments:** `lr` (η: a positive number, or a traced array, to `jax.vmap` over step
    sizes or differentiate), then those of [`rnnflow.GradientFlow`][].

    ```python
    method = ModifiedFlow(lr=0.05, t1=10.0)
    ```
    """

    lr: float | jax.Array

    def __init__(self, lr, t1: float, **kwargs):
        check_real("lr", lr, positive=True)
        # A concrete rate is a Python float: static under jit, as for gradient descent.
        self.lr = lr if isinstance(lr, jax.core.Tracer) else float(lr)
        super().__init__(t1, **kwargs)

    def check(self, loss_fn, stop) -> None:
        check_real("lr", self.lr, positive=True)  # a rate made traced, now known
        super().check(loss_fn, stop)

    def vector_field(self, value_and_grad):
        """$-\\nabla \\tilde L = -(\\nabla L + \\frac{η}{2} H \\nabla L)$, with the
        Hessian-vector product $H \\nabla L$ by forward-mode differentiation of the gradient.
        A rule's "gradient" is $g = -F$, so the same lines give $F - \\frac{η}{2} DF\\,F$
        ($Dg\\,g = DF\\,F$): the general field's modified flow."""

        def grad(params):
            return value_and_grad(params)[1]

        def field(params):
            g, hg = jax.jvp(grad, (params,), (grad(params),))
            return jax.tree.map(lambda x, y: -(x + 0.5 * self.lr * y), g, hg)

        return field
