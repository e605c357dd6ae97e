r"""A loss over a data set, sampled in minibatches: stochastic gradient descent, per seed.

The loss is the mean of a per-example loss over $N$ examples,
$L(θ) = \frac1N \sum_i \ell(θ, x_i)$; [`rnnflow.GradientDescent`][] steps on the mean over
a minibatch of $B$ examples drawn, at every step, from each seed's own key (so a seed's run
is the same alone or among others). The minibatch gradient is unbiased; drawn with
replacement, its covariance is $Σ(θ)/B$ with
$Σ(θ) = \frac1N \sum_i (g_i - \bar g)(g_i - \bar g)^\top$, $g_i = \nabla_θ \ell(θ, x_i)$:
the noise whose small-step limit is the SDE of [`rnnflow.StochasticFlow`][] (Li, Tai and E,
2017).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree

from .checks import check_positive_int
from .objective import check_finite, offered, split
from .real_view import to_complex, to_real


class Minibatch(eqx.Module):
    """`loss(params)` = the mean of `example_loss(params, example)` over `data`, trained
    by gradient descent on minibatches of `batch_size` examples.

    **Arguments:**

    - `example_loss`: `(params, example) -> scalar`, the loss of one example.
    - `data`: a pytree of arrays with a leading axis of $N$ examples.
    - `batch_size`: $B$, examples per step.
    - `replace`: draw with replacement (default; the minibatch gradient's covariance is
      then $Σ/B$ exactly) or without (a random subset of $B$ distinct examples).
    - `full`: the full loss, if it is known in another form (e.g. an RNN loss with its
      default metrics): then `loss(params)` and the default `Save` metrics are its.

    What the engine reads: `__call__` (the full loss, for saves and stopping), `sample(key)`
    (a minibatch), `batch_loss(params, batch)`, and, for the stochastic flow,
    `noise_factor(params)`.

    ```python
    def example_loss(theta, z):
        return 0.5 * jnp.sum((theta - z) ** 2)

    loss_fn = Minibatch(example_loss, data=z, batch_size=8)
    traj = train(loss_fn, theta0, GradientDescent(0.1, 1000), key=jax.random.key(1))
    ```
    """

    example_loss: Callable
    data: PyTree
    batch_size: int = eqx.field(static=True)
    replace: bool = eqx.field(static=True, default=True)
    full: Callable | None = None

    def __check_init__(self):
        if not callable(self.example_loss):
            raise TypeError("`example_loss` must be callable as example_loss(params, example).")
        sizes = {getattr(x, "shape", (None,))[:1] for x in jax.tree.leaves(self.data)}
        if not jax.tree.leaves(self.data) or len(sizes) != 1 or None in next(iter(sizes)):
            raise ValueError(
                f"`data` must be arrays with one leading axis of examples; got sizes {sizes}."
            )
        check_positive_int("batch_size", self.batch_size)
        if not self.replace and self.batch_size > self.num_examples:
            raise ValueError(
                f"`batch_size` = {self.batch_size} exceeds the {self.num_examples} examples "
                "drawn without replacement."
            )
        check_finite("data", self.data)

    @property
    def num_examples(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]

    def __call__(self, params) -> Array:
        if self.full is not None:
            return self.full(params)
        return self.batch_loss(params, self.data)

    def batch_loss(self, params, batch) -> Array:
        """The mean per-example loss over `batch`."""
        return jnp.mean(jax.vmap(self.example_loss, in_axes=(None, 0))(params, batch))

    def sample(self, key) -> PyTree:
        """A minibatch of `batch_size` examples."""
        n = self.num_examples
        if self.replace:
            idx = jax.random.randint(key, (self.batch_size,), 0, n)
        else:
            idx = jax.random.permutation(key, n)[: self.batch_size]
        return jax.tree.map(lambda x: x[idx], self.data)

    def noise_factor(self, params) -> Array:
        """$G$, shape `(n, N)` over the trained leaves of `params` (floating-point arrays,
        flattened by `ravel_pytree`; fixed leaves, such as a Python float, are not
        trained and carry no noise; a complex array counts as its real and imaginary parts,
        as the methods train it), with $GG^\\top = Σ(θ)/B$: the minibatch gradient's
        covariance, from the $N$ per-example gradients. The stochastic flow drives it with
        an $N$-dimensional Brownian motion."""
        trainable, fixed = split(params)
        flat, unravel = ravel_pytree(to_real(trainable))

        def grad(example):
            def loss(x):
                return self.example_loss(eqx.combine(to_complex(unravel(x)), fixed), example)

            return jax.grad(loss)(flat)

        g = jax.vmap(grad)(self.data)  # (N, n)
        n = g.shape[0]
        return ((g - jnp.mean(g, axis=0, keepdims=True)) / jnp.sqrt(n * self.batch_size)).T

    def default_metrics(self) -> dict:
        own = offered(self.full, "default_metrics") if self.full is not None else None
        return own() if own is not None else {"loss": lambda t, params: self(params)}

    @property
    def check(self):
        """The full loss's check of the parameters, if it has one (else `None`)."""
        return offered(self.full, "check") if self.full is not None else None
