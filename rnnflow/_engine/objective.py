"""What the engine asks of a loss: `loss_fn(params) -> scalar`, and what a loss may offer.

[`rnnflow.train`][] takes any callable `loss_fn` and any pytree `params` whose trainable
leaves are the floating-point arrays (other leaves, such as an equinox module's activation
functions, are held fixed). A loss may also offer, as methods, faster or richer forms of
itself; the engine looks for them by name and never by type:

- `value_and_grad(params) -> (loss, gradient)`: the gradient in closed form (or otherwise
  faster than autodiff). Used by `GradientDescent` (`kernel="auto"`) in its loop of steps.
- `descend(params, value, count, *, lr, running, kernel) -> (params, loss, steps)`: up
  to `count` fused steps of plain gradient descent from `params` (one seed; under `vmap`
  a batch), each taken while `running(loss)` holds, `value` the loss at `params`. Used by
  `GradientDescent` for plain gradient descent at a constant rate; reverse-mode
  derivatives go through the generic steps instead.
- `residuals(params) -> r`: the vector with loss $\\sum_i r_i^2$. Needed by
  `LeastSquaresRosenbrock`.
- `default_metrics() -> {name: fn(t, params)}`: what `Save()` records when it names no
  metrics (otherwise the loss alone).
- `check(params)`: raise a `TypeError`/`ValueError` naming what is wrong with `params`;
  `train` calls it before compiling.
- `direction(params) -> F`: makes it a rule (see `rule.py` and [`rnnflow.Rule`][]): the
  methods move along $F(θ)$ instead of $-\\nabla L$, and `loss_fn(params)` is only what the
  run is judged by.

An object that is callable but not a loss, and easily passed as one (a model), may say so:
`not_a_loss`, a string, is then the message of the `TypeError` that `train` raises.

The gradient flows differentiate `loss_fn` itself by autodiff (their vector fields also
need Hessian-vector products or residual Jacobians, which autodiff gives consistently).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PyTree

from .real_view import grad_to_real, to_complex, to_real

Metric = Callable[[Array, PyTree], Array]


def offered(loss_fn, name: str) -> Callable | None:
    """The method `name` that `loss_fn` offers, or `None`."""
    fn = getattr(loss_fn, name, None)
    return fn if callable(fn) else None


def split(params):
    """`(trainable, fixed)`: the floating-point arrays of `params`, and everything else."""
    return eqx.partition(params, eqx.is_inexact_array)


def split_real(params):
    """`split(params)`, with complex trainable leaves as their real and imaginary parts
    (see `real_view`): what the methods train."""
    trainable, fixed = split(params)
    return to_real(trainable), fixed


class Objective(eqx.Module):
    """`loss_fn` as a function of the trainable leaves alone, in the forms the methods use.

    Methods carry only the floating-point arrays through their loops (`trainable`, with
    `None` where `params` has a fixed leaf, and complex leaves as their real parts);
    `params(trainable)` puts the fixed leaves back and the complex leaves together.
    """

    loss_fn: Callable
    fixed: PyTree

    def params(self, trainable):
        return eqx.combine(to_complex(trainable), self.fixed)

    def value(self, trainable) -> Array:
        return self.loss_fn(self.params(trainable))

    def value_and_grad(self, trainable, *, fast: bool = True):
        """The loss and its gradient: the loss's own `value_and_grad` where it offers one
        (and `fast`), else reverse-mode autodiff. For a rule (it offers `direction`), the
        value it is judged by and minus its direction, $-F(θ)$: the "gradient" that every
        method steps against, so that a loss and the rule $F = -\\nabla L$ share one path."""
        rule = offered(self.loss_fn, "direction")
        if rule is not None:
            params = self.params(trainable)
            # A complex leaf moves along F's real and imaginary parts (no conjugate: F is
            # a velocity, not a gradient in JAX's convention).
            direction = to_real(split(rule(params))[0])
            return self.loss_fn(params), jax.tree.map(jnp.negative, direction)
        own = offered(self.loss_fn, "value_and_grad") if fast else None
        if own is None:
            return jax.value_and_grad(self.value)(trainable)
        value, grad = own(self.params(trainable))
        return value, grad_to_real(split(grad)[0])

    @property
    def residuals(self) -> Callable | None:
        own = offered(self.loss_fn, "residuals")
        return None if own is None else lambda trainable: own(self.params(trainable))


def default_metrics(loss_fn) -> dict[str, Metric]:
    """What `Save()` records when it names no metrics: the loss's own choice, else the loss."""
    own = offered(loss_fn, "default_metrics")
    if own is not None:
        return dict(own())
    return {"loss": lambda t, params: loss_fn(params)}


def metric_fn(metrics, loss_fn) -> Callable[[Array, PyTree], dict[str, Array]]:
    """`(t, params) -> {name: value}` for `Save.metrics` (`None`: the defaults)."""
    metrics = default_metrics(loss_fn) if metrics is None else dict(metrics)

    def fn(t, params):
        return {name: jnp.asarray(f(t, params)) for name, f in metrics.items()}

    return fn


def check_finite(name: str, tree) -> None:
    """Raise a `ValueError` naming the leaf if a floating-point array of `tree` known before
    tracing holds NaN or inf."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if not eqx.is_inexact_array(leaf) or isinstance(leaf, jax.core.Tracer):
            continue
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(
                f"`{name}{jax.tree_util.keystr(path)}` holds non-finite values (NaN or inf)."
            )


def check_leaves(params) -> None:
    """Raise a `TypeError` naming the first leaf of `params` that cannot be trained (an
    integer array), for one seed's params or a seed axis of them."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if eqx.is_array(leaf) and not jnp.issubdtype(leaf.dtype, jnp.inexact):
            raise TypeError(
                f"`params{jax.tree_util.keystr(path)}` is a {leaf.dtype} array: trained leaves "
                "must be floating point (integer updates would truncate). Keep fixed integers "
                "out of `params` (e.g. in the loss) or convert them."
            )


def eval_shape(fn, params, what: str):
    """The shapes and dtypes `fn(params)` returns (abstract evaluation: nothing compiles),
    or a `TypeError` saying what `fn`, the user's function `what`, was given and why it
    failed."""
    try:
        return eqx.filter_eval_shape(fn, params)
    except Exception as e:  # the user's function: say what it was given
        structure = jax.tree.structure(params)
        raise TypeError(
            f"{what} failed for params of structure {structure}: {type(e).__name__}: {e}"
        ) from e


def check_params(loss_fn, params) -> None:
    """Raise a `TypeError`/`ValueError` naming the leaf if `params` cannot be trained by
    `loss_fn` (no floating leaves, integer arrays, the loss's own check); then check, by
    abstract evaluation only, that the loss returns a real scalar."""
    if not callable(loss_fn):
        raise TypeError(
            "`loss_fn` must be callable as loss_fn(params) -> scalar; "
            f"got {type(loss_fn).__name__}."
        )
    check_leaves(params)
    if not jax.tree.leaves(split(params)[0]):
        raise ValueError("`params` must hold at least one floating-point array to train.")
    check_finite("params", params)
    own = offered(loss_fn, "check")
    if own is not None:
        own(params)
    out = eval_shape(loss_fn, params, "`loss_fn(params)`")
    if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        raise ValueError(
            f"`loss_fn(params)` must return a real scalar; got {getattr(out, 'shape', out)} "
            f"{getattr(out, 'dtype', '')}. (A function params -> direction is an update rule: "
            "train it as rnnflow.Rule(field).)"
        )
