r"""Learning rules beyond the gradient: any vector field $F(θ)$ over the parameter pytree.

A rule moves the parameters along a direction $F(θ)$, a pytree like $θ$: gradient descent
takes $θ \leftarrow θ + η F(θ)$, the flow solves $\dot θ = F(θ)$, the modified flow
$\dot θ = F - \frac{η}{2} DF\,F$. A loss is the rule $F = -\nabla L$ (and keeps its fast
paths); feedback alignment, Oja's and other Hebbian rules, preconditioned gradients are
rules that no loss is the gradient of. See the docs page "Learning rules beyond the
gradient" (docs/rules.md).

The engine reads a rule as it reads a loss, by what it offers: `direction(params)` (the
field), `__call__(params)` (the scalar it is judged by: saves, stopping) and, where it has
them, `check(params)` and `default_metrics()`. [`rnnflow.Rule`][] builds one from a
function; any object that offers these is a rule too.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from .objective import eval_shape, offered, split


def squared_norm(params) -> Array:
    """$\\|θ\\|^2$ over the floating-point leaves of `params`."""
    return sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(split(params)[0]))


class Rule(eqx.Module):
    """An update rule: the vector field `field(params) -> direction`, optionally judged by
    the loss `loss`.

    **Arguments:**

    - `field`: a function or equinox module `params -> direction`, the direction $F(θ)$ of
      the update, a pytree like `params` (same structure, shapes and dtypes on the
      floating-point leaves; what it returns at other leaves is ignored). For a loss $L$,
      $F = -\\nabla L$ recovers training that loss.
    - `loss`: `loss(params) -> scalar`, what the rule is judged by: `Save()`'s default
      metrics (the loss's own `default_metrics` where it offers them), stopping
      (`Stop.loss_below`, `Stop.loss_above`). It is not differentiated. `None` (default):
      no loss; the run then watches $\\|θ\\|^2$ for divergence (against `Stop.loss_above`,
      and non-finite values), saves $\\|θ\\|$ as `"norm"` by default, and refuses
      `Stop.loss_below`.

    Every method that needs only a field takes a rule: [`rnnflow.GradientDescent`][]
    ($θ \\leftarrow θ + η F(θ)$, or any optax transformation of the direction: it is fed
    $-F$ as the gradient), [`rnnflow.GradientFlow`][] ($\\dot θ = F(θ)$, any diffrax
    solver) and [`rnnflow.ModifiedFlow`][] ($\\dot θ = F - \\frac{η}{2} DF\\,F$). Methods
    that need more than a field (`LeastSquaresRosenbrock`'s residuals, `StochasticFlow`'s
    minibatch noise) raise a `TypeError` before compiling.

    **Returns:** calling the rule gives the loss (or $\\|θ\\|^2$), as a loss would.

    ```python
    a = jnp.array([[-1.0, 2.0], [-2.0, -1.0]])  # a rotation that decays: no loss has it
    rule = Rule(lambda theta: a @ theta)
    traj = train(rule, jnp.array([1.0, 0.0]), GradientFlow(t1=5.0))
    ```
    """

    field: Callable
    loss: Callable | None = None

    def __check_init__(self):
        if not callable(self.field):
            raise TypeError(
                "`field` must be callable as field(params) -> direction (a pytree like "
                f"params); got {type(self.field).__name__}."
            )
        if self.loss is not None and not callable(self.loss):
            raise TypeError(
                f"`loss` must be callable as loss(params) -> scalar, or None; "
                f"got {type(self.loss).__name__}."
            )

    def __call__(self, params) -> Array:
        return squared_norm(params) if self.loss is None else self.loss(params)

    def direction(self, params) -> PyTree:
        return self.field(params)

    def default_metrics(self) -> dict:
        if self.loss is None:
            return {"norm": lambda t, params: jnp.sqrt(squared_norm(params))}
        own = offered(self.loss, "default_metrics")
        if own is not None:
            return dict(own())
        return {"loss": lambda t, params: self.loss(params)}

    @property
    def check(self):
        """The loss's `check(params)`, where it offers one (else none: `train_seeds` reads a
        check that passes on a batch as a sign of one seed's parameters)."""
        return None if self.loss is None else offered(self.loss, "check")


def _is_inexact(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)


def judged(rule) -> bool:
    """Whether `rule` (a loss, or a rule) has a loss to judge convergence by: a rule whose
    `loss` attribute is `None` has none."""
    return offered(rule, "direction") is None or getattr(rule, "loss", True) is not None


def check_direction(rule, params) -> None:
    """Raise a `TypeError` naming the leaf if `rule.direction(params)` is not a pytree like
    `params` (checked by abstract evaluation only)."""
    own = offered(rule, "direction")
    if own is None:
        return
    out = eval_shape(own, params, "the rule's `direction(params)`")
    want = split(params)[0]
    got = eqx.filter(out, _is_inexact, replace=None)
    if jax.tree.structure(got) != jax.tree.structure(want):
        raise TypeError(
            "the rule's `direction(params)` must be a pytree like `params`, with a "
            f"floating-point array at each of its arrays: params {jax.tree.structure(want)}, "
            f"direction {jax.tree.structure(got)}."
        )
    for (path, w), g in zip(
        jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(got), strict=True
    ):
        if (w.shape, w.dtype) != (g.shape, g.dtype):
            raise TypeError(
                f"the rule's direction at `params{jax.tree_util.keystr(path)}` is "
                f"{g.dtype}{list(g.shape)}; the parameter is {w.dtype}{list(w.shape)}."
            )
